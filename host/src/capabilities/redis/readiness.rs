//! The shared Redis connections seen from the admin side: the per-address readiness the
//! metrics listener's `GET /ready` shows (details the app's public `/health/ready` keeps
//! to itself).

use std::time::Instant;

use super::{redacted, RedisConnections, Retry};

impl RedisConnections {
    /// Every address the app has connected to, probed with `PING` within the command
    /// timeout: its redacted address and `up` with the latency or `down` with the error.
    /// Empty until a component first opened a connection.
    pub async fn readiness(&self) -> Vec<serde_json::Value> {
        let connections: Vec<_> = match self.connections.lock() {
            Ok(connections) => connections
                .iter()
                .filter_map(|(address, cell)| Some((address.clone(), cell.get()?.clone())))
                .collect(),
            Err(_) => Vec::new(),
        };
        let probes = connections
            .into_iter()
            .map(|(address, manager)| async move {
                let started = Instant::now();
                let pong = self
                    .run::<String>(&manager, Retry::Once, &redis::cmd("PING"))
                    .await;
                let mut check = serde_json::json!({ "address": redacted(&address) });
                match pong {
                    Ok(_) => {
                        check["status"] = "up".into();
                        check["latency_ms"] = (started.elapsed().as_secs_f64() * 1000.0).into();
                    }
                    Err(error) => {
                        check["status"] = "down".into();
                        check["error"] = error.to_string().into();
                    }
                }
                check
            });
        futures::future::join_all(probes).await
    }
}
