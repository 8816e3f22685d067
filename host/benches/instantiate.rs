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
use edge_host::engine::EngineLimits;
use edge_host::runtime_config::RuntimeConfig;
use edge_host::triggers::http::HttpTrigger;
use edge_host::variables::ResolvedVariables;
use http_body_util::{BodyExt, Empty};

const WARMUP: usize = 500;
const ITERATIONS: usize = 5_000;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = edge_host::manifest::load(&root.join("tests/fixtures/probe.toml"))?;
    let env = HashMap::from([("SPIN_VARIABLE_SECRET_TOKEN".to_owned(), "bench".to_owned())]);
    let variables = ResolvedVariables::resolve(&manifest.manifest, &[], &env)?;
    let cache = std::env::temp_dir().join("edge-host-bench-cache");
    let app = Arc::new(App::load(AppOptions {
        manifest,
        variables,
        runtime_config: RuntimeConfig::default(),
        limits: EngineLimits::default(),
        cache_dir: Some(cache),
        execution_timeout: Duration::from_secs(30),
    })?);
    let trigger = HttpTrigger::new(app.clone(), 10 << 20)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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

    let client: SocketAddr = "127.0.0.1:40000".parse()?;
    // Measure from inside a runtime task, as a connection task is in the server, so the
    // guest task and its caller share a worker instead of waking the bench thread.
    let trigger = Arc::new(trigger);
    let handle = runtime.block_on(runtime.spawn(async move {
        let trigger = trigger.clone();
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
    }))?;
    report("handle (route + instance + guest + body)", &handle);
    Ok(())
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
