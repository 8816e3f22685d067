//! The pools seen from the admin side: gauges sampled at scrape time and the
//! per-address readiness the metrics listener's `GET /ready` shows (details the app's
//! public `/health/ready` keeps to itself).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::PostgresPools;

/// How long one readiness probe may take (checkout and `SELECT 1`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Samples `pool`'s state into the pool gauges (run before every scrape).
pub(super) fn pool_sampler(pool: Pool, address: Arc<str>) -> impl Fn() + Send + Sync + 'static {
    move || {
        let status = pool.status();
        let in_use = status.size.saturating_sub(status.available);
        crate::metrics::pg_pool(
            &address,
            status.size,
            in_use,
            status.waiting,
            status.max_size,
        );
    }
}

impl PostgresPools {
    /// Every pool the app has opened, probed with `SELECT 1` through the pool: its
    /// redacted address, `up` with the latency or `down` with the error, and the pool's
    /// state. Empty until a component first opened a connection.
    pub async fn readiness(&self) -> Vec<serde_json::Value> {
        let pools: Vec<(String, Pool)> = match self.pools.read() {
            Ok(pools) => pools
                .iter()
                .map(|(address, pool)| (address.clone(), pool.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let probes = pools.into_iter().map(|(address, pool)| async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(PROBE_TIMEOUT, probe(&pool)).await;
            let status = pool.status();
            let mut check = serde_json::json!({
                "address": super::redacted(&address),
                "pool": {
                    "connections": status.size,
                    "in_use": status.size.saturating_sub(status.available),
                    "waiters": status.waiting,
                    "max_connections": status.max_size,
                },
            });
            match outcome {
                Ok(Ok(())) => {
                    check["status"] = "up".into();
                    check["latency_ms"] = (started.elapsed().as_secs_f64() * 1000.0).into();
                }
                Ok(Err(error)) => {
                    check["status"] = "down".into();
                    check["error"] = error.into();
                }
                Err(_) => {
                    check["status"] = "down".into();
                    check["error"] = format!("no answer within {PROBE_TIMEOUT:?}").into();
                }
            }
            check
        });
        futures::future::join_all(probes).await
    }
}

async fn probe(pool: &Pool) -> Result<(), String> {
    let client = pool
        .get()
        .await
        .map_err(|err| format!("cannot connect: {err}"))?;
    client
        .simple_query("SELECT 1")
        .await
        .map(drop)
        .map_err(|err| format!("SELECT 1 failed: {err}"))
}
