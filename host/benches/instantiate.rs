//! Micro-benchmark of the host's per-request cost, in process and without a socket:
//! a fresh store and instance of a trivial component (`instantiate`), and the whole
//! request path through the HTTP trigger (`handle`: routing, Spin headers, instance,
//! guest handler, response body).
//!
//! Run with `cargo bench -p edge-host --bench instantiate` (scripts/bench does). The
//! probe fixture must be built first:
//! `cargo build --target wasm32-wasip2 --release -p probe`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_host::app::{App, AppOptions};
use edge_host::engine::{EngineLimits, MemoryReset};
use edge_host::runtime_config::RuntimeConfig;
use edge_host::triggers::http::HttpTrigger;
use edge_host::triggers::reuse::{Range, ReuseConfig};
use edge_host::variables::ResolvedVariables;
use http_body_util::{BodyExt, Empty};

const WARMUP: usize = 500;
const ITERATIONS: usize = 5_000;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let app = load_app(MemoryReset::default())?;
    let component = app.components["probe"].clone();

    let store_only = runtime.block_on(async {
        measure(|| async {
            std::hint::black_box(component.new_store());
        })
        .await
    });
    report("new store only", &store_only);

    let instantiate = runtime.block_on(async {
        measure(|| async {
            let mut store = component.new_store();
            component
                .pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
        })
        .await
    });
    report("instantiate (new store + instance)", &instantiate);

    // The whole request path, side by side: how slots are reset between fresh
    // instances, and reuse.
    let reuse_on = ReuseConfig {
        max_instance_reuse_count: Range::Value(usize::MAX),
        idle_instance_timeout: Range::Value(Duration::from_secs(3600)),
        ..ReuseConfig::default()
    };
    for (name, reset, reuse) in [
        (
            "fresh instance, slots decommitted",
            MemoryReset::Decommit,
            ReuseConfig::default(),
        ),
        (
            "fresh instance, dirty pages reset",
            MemoryReset::ScanDirty,
            ReuseConfig::default(),
        ),
        ("reused instance", MemoryReset::default(), reuse_on),
    ] {
        let trigger = Arc::new(HttpTrigger::new(load_app(reset)?, 10 << 20, reuse)?);
        let samples = runtime.block_on(measure_handle(&runtime, trigger))?;
        report(
            &format!("handle, {name} (route + instance + guest + body)"),
            &samples,
        );
    }
    Ok(())
}

fn load_app(memory_reset: MemoryReset) -> anyhow::Result<Arc<App>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = edge_host::manifest::load(&root.join("tests/fixtures/probe.toml"))?;
    let env = HashMap::from([("SPIN_VARIABLE_SECRET_TOKEN".to_owned(), "bench".to_owned())]);
    let variables = ResolvedVariables::resolve(&manifest.manifest, &[], &env)?;
    let cache = std::env::temp_dir().join("edge-host-bench-cache");
    Ok(Arc::new(App::load(AppOptions {
        manifest,
        variables,
        runtime_config: RuntimeConfig::default(),
        limits: EngineLimits {
            memory_reset,
            ..EngineLimits::default()
        },
        cache_dir: Some(cache),
        execution_timeout: Duration::from_secs(30),
    })?))
}

/// Measures from inside a runtime task, as a connection task is in the server, so the
/// guest task and its caller share a worker instead of waking the bench thread.
async fn measure_handle(
    runtime: &tokio::runtime::Runtime,
    trigger: Arc<HttpTrigger>,
) -> anyhow::Result<Vec<Duration>> {
    let client: SocketAddr = "127.0.0.1:40000".parse()?;
    Ok(runtime
        .spawn(async move {
            measure(move || {
                let trigger = trigger.clone();
                async move {
                    let request = http::Request::get("http://localhost/probe/")
                        .body(Empty::<Bytes>::new().map_err(
                            |never: Infallible| -> wasmtime_wasi_http::Error { match never {} },
                        ))
                        .expect("request");
                    let response = trigger.handle(request, client).await;
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.expect("body");
                }
            })
            .await
        })
        .await?)
}

async fn measure<F, Fut>(mut run: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARMUP {
        run().await;
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        run().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples
}

fn report(name: &str, sorted: &[Duration]) {
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{name}: median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs ({} runs)",
        at(0.5),
        at(0.9),
        at(0.99),
        sorted.len()
    );
}
