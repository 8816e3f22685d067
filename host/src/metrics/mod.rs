//! Prometheus metrics (`--metrics-listen ADDR`), served on a listener of their own, never
//! on the app's port.
//!
//! Recording goes through the [`metrics`] facade: until [`install`] puts the Prometheus
//! recorder in place (only when `--metrics-listen` is given), every recording call is a
//! no-op (one atomic load), so a host without the flag pays nothing. Call sites elsewhere
//! in the host are one line each, naming a function of this module, so the names, labels
//! and units of every metric are in this one file (and in [`METRICS`], the list the
//! dashboard check in `scripts/validate-k8s` compares with).
//!
//! Labels are bounded: `route` is the manifest's route pattern (never the raw path),
//! `component` a manifest component id, `address` a redacted backing-service address (no
//! user or password; at most the capabilities' cap on distinct addresses), `channel` a
//! manifest Redis channel.
//!
//! The listener also answers `GET /ready` with the host's per-dependency readiness (what
//! the app's public `/health/ready` no longer shows anonymous callers): see
//! [`Readiness`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Every metric edge-host exports itself (the process collector's `process_*` come on
/// top), with its type and labels: the reference for host/README.md and for
/// `scripts/validate-k8s`, which checks that every dashboard query names one of these
/// (`edge-host metrics` prints them).
pub const METRICS: &[(&str, &str, &str)] = &[
    (HTTP_REQUESTS, "counter", "route, component, method, status"),
    (HTTP_DURATION, "histogram", "route, component, method"),
    (INSTANCES_CREATED, "counter", "component"),
    (INSTANCES_IN_FLIGHT, "gauge", "component"),
    (INSTANTIATION, "histogram", "component"),
    (TRAPS, "counter", "component"),
    (TIMEOUTS, "counter", "component"),
    (MEMORY_LIMIT_HITS, "counter", "component"),
    (PG_POOL_SIZE, "gauge", "address"),
    (PG_POOL_IN_USE, "gauge", "address"),
    (PG_POOL_WAITERS, "gauge", "address"),
    (PG_POOL_MAX, "gauge", "address"),
    (PG_ACQUIRE, "histogram", "address"),
    (PG_ACQUIRE_ERRORS, "counter", "address"),
    (PG_QUERY, "histogram", "address"),
    (PG_QUERY_ERRORS, "counter", "address"),
    (REDIS_COMMANDS, "counter", "address"),
    (REDIS_ERRORS, "counter", "address"),
    (TRIGGER_MESSAGES, "counter", "channel, component"),
    (TRIGGER_FAILURES, "counter", "channel, component"),
];

/// Process metrics from `metrics-process` (Linux `/proc/self`), collected at scrape time.
pub const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

const HTTP_REQUESTS: &str = "edge_host_http_requests_total";
const HTTP_DURATION: &str = "edge_host_http_request_duration_seconds";
const INSTANCES_CREATED: &str = "edge_host_instances_created_total";
const INSTANCES_IN_FLIGHT: &str = "edge_host_instances_in_flight";
const INSTANTIATION: &str = "edge_host_instantiation_duration_seconds";
const TRAPS: &str = "edge_host_traps_total";
const TIMEOUTS: &str = "edge_host_timeouts_total";
const MEMORY_LIMIT_HITS: &str = "edge_host_memory_limit_hits_total";
const PG_POOL_SIZE: &str = "edge_host_postgres_pool_connections";
const PG_POOL_IN_USE: &str = "edge_host_postgres_pool_in_use";
const PG_POOL_WAITERS: &str = "edge_host_postgres_pool_waiters";
const PG_POOL_MAX: &str = "edge_host_postgres_pool_max_connections";
const PG_ACQUIRE: &str = "edge_host_postgres_acquire_duration_seconds";
const PG_ACQUIRE_ERRORS: &str = "edge_host_postgres_acquire_errors_total";
const PG_QUERY: &str = "edge_host_postgres_query_duration_seconds";
const PG_QUERY_ERRORS: &str = "edge_host_postgres_query_errors_total";
const REDIS_COMMANDS: &str = "edge_host_redis_commands_total";
const REDIS_ERRORS: &str = "edge_host_redis_errors_total";
const TRIGGER_MESSAGES: &str = "edge_host_redis_trigger_messages_total";
const TRIGGER_FAILURES: &str = "edge_host_redis_trigger_failures_total";

/// Histogram buckets for every `_seconds` metric: 250 µs (a trivial request, a pooled
/// checkout) up to 60 s (the default execution timeout).
const BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// Why installing the recorder failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot set up the Prometheus recorder: {0}")]
    Recorder(String),
    #[error("binding the metrics listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Whether recording is on: false until [`install`], so that without `--metrics-listen`
/// each recording call is one relaxed load and a return (no label strings built).
static RECORDING: AtomicBool = AtomicBool::new(false);

fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// Installs the process-wide Prometheus recorder; from then on every recording call of
/// this module counts. Call once, before the app serves.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|err| MetricsError::Recorder(err.to_string()))?
        .install_recorder()
        .map_err(|err| MetricsError::Recorder(err.to_string()))?;
    describe();
    process_collector().describe();
    RECORDING.store(true, Ordering::Relaxed);
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by manifest route pattern, component, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its response head."
    );
    describe_counter!(INSTANCES_CREATED, "Component instances created.");
    describe_gauge!(INSTANCES_IN_FLIGHT, "Component instances alive now.");
    describe_histogram!(
        INSTANTIATION,
        Unit::Seconds,
        "Time to instantiate a component (from its InstancePre)."
    );
    describe_counter!(TRAPS, "Instances that ended in a trap or a host error.");
    describe_counter!(TIMEOUTS, "Instances cut off at the execution deadline.");
    describe_counter!(
        MEMORY_LIMIT_HITS,
        "Memory or table growths refused by the instance memory cap."
    );
    describe_gauge!(PG_POOL_SIZE, "PostgreSQL connections open in the pool.");
    describe_gauge!(PG_POOL_IN_USE, "PostgreSQL connections checked out.");
    describe_gauge!(
        PG_POOL_WAITERS,
        "Callers waiting for a PostgreSQL connection."
    );
    describe_gauge!(PG_POOL_MAX, "The pool's connection cap.");
    describe_histogram!(
        PG_ACQUIRE,
        Unit::Seconds,
        "Time to check a PostgreSQL connection out of the pool (connecting included)."
    );
    describe_counter!(PG_ACQUIRE_ERRORS, "Failed PostgreSQL checkouts.");
    describe_histogram!(PG_QUERY, Unit::Seconds, "PostgreSQL statement time.");
    describe_counter!(PG_QUERY_ERRORS, "PostgreSQL statements that failed.");
    describe_counter!(REDIS_COMMANDS, "Redis commands sent by components.");
    describe_counter!(REDIS_ERRORS, "Redis commands that failed or timed out.");
    describe_counter!(TRIGGER_MESSAGES, "Redis-trigger messages handled.");
    describe_counter!(
        TRIGGER_FAILURES,
        "Redis-trigger messages whose handler failed."
    );
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

// ---- recording: one call per call site -------------------------------------------------

/// The HTTP series of one route (`""` and `""` for requests that matched none), resolved
/// once per method and status and kept: without this every request built two label keys
/// (route, component, method, status: four string copies) and looked both up in the
/// registry.
pub struct RouteSeries {
    route: String,
    component: String,
    resolved: RwLock<Vec<ResolvedHttp>>,
}

/// (method label, status, duration histogram, request counter)
type ResolvedHttp = (&'static str, u16, metrics::Histogram, metrics::Counter);

/// Method and status pairs a route keeps resolved; more are recorded through the registry
/// (a client cannot mint methods, only the component's statuses vary).
const MAX_RESOLVED: usize = 64;

impl RouteSeries {
    pub fn new(route: &str, component: &str) -> Self {
        Self {
            route: route.to_owned(),
            component: component.to_owned(),
            resolved: RwLock::new(Vec::new()),
        }
    }

    /// The manifest route, as the `route` label has it.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The component id, as the `component` label has it.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// A request of this route answered; `started` is when it arrived.
    pub fn record(&self, method: &http::Method, status: u16, started: Instant) {
        if !recording() {
            return;
        }
        let elapsed = started.elapsed();
        let method = method_label(method);
        if let Ok(resolved) = self.resolved.read() {
            if let Some((.., duration, requests)) = resolved
                .iter()
                .find(|(m, s, ..)| *m == method && *s == status)
            {
                duration.record(elapsed);
                requests.increment(1);
                return;
            }
        }
        let (route, component) = (self.route.clone(), self.component.clone());
        let duration = histogram!(HTTP_DURATION, "route" => route.clone(), "component" => component.clone(), "method" => method);
        let requests = counter!(HTTP_REQUESTS, "route" => route, "component" => component, "method" => method, "status" => status_label(status));
        duration.record(elapsed);
        requests.increment(1);
        if let Ok(mut resolved) = self.resolved.write() {
            if resolved.len() < MAX_RESOLVED {
                resolved.push((method, status, duration, requests));
            }
        }
    }
}

/// The instance series of one component, resolved on its first instance (three label
/// keys and lookups per instance otherwise).
pub struct ComponentSeries {
    component: String,
    handles: OnceLock<ComponentHandles>,
}

struct ComponentHandles {
    created: metrics::Counter,
    in_flight: metrics::Gauge,
    instantiation: metrics::Histogram,
}

impl ComponentSeries {
    pub fn new(component: &str) -> Self {
        Self {
            component: component.to_owned(),
            handles: OnceLock::new(),
        }
    }

    /// Only called while recording, so the handles are the installed recorder's.
    fn handles(&self) -> &ComponentHandles {
        self.handles.get_or_init(|| {
            let component = self.component.clone();
            ComponentHandles {
                created: counter!(INSTANCES_CREATED, "component" => component.clone()),
                in_flight: gauge!(INSTANCES_IN_FLIGHT, "component" => component.clone()),
                instantiation: histogram!(INSTANTIATION, "component" => component),
            }
        })
    }
}

/// Standard methods as static strings (no allocation); anything else is `other`, so a
/// client cannot mint label values.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: u16) -> metrics::SharedString {
    match status {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        404 => "404".into(),
        500 => "500".into(),
        other => other.to_string().into(),
    }
}

/// An instance of the series' component exists from now until the guard drops.
pub fn instance_started(series: &ComponentSeries) -> InstanceGuard {
    if !recording() {
        return InstanceGuard(None);
    }
    let handles = series.handles();
    handles.created.increment(1);
    handles.in_flight.increment(1.0);
    InstanceGuard(Some(handles.in_flight.clone()))
}

/// Keeps an instance counted in [`INSTANCES_IN_FLIGHT`] while it lives.
pub struct InstanceGuard(Option<metrics::Gauge>);

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        if let Some(in_flight) = &self.0 {
            in_flight.decrement(1.0);
        }
    }
}

/// Times `instantiation` (a component's `instantiate_async`) for the series' component.
pub async fn instantiation<T>(
    series: &ComponentSeries,
    instantiation: impl std::future::Future<Output = T>,
) -> T {
    if !recording() {
        return instantiation.await;
    }
    let started = Instant::now();
    let instance = instantiation.await;
    series.handles().instantiation.record(started.elapsed());
    instance
}

/// An instance's work failed: an epoch interruption counts as a timeout, anything else
/// (a trap, a host error) as a trap.
pub fn instance_failed(component: &str, error: &wasmtime::Error) {
    if !recording() {
        return;
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => instance_timed_out(component),
        _ => counter!(TRAPS, "component" => component.to_owned()).increment(1),
    }
}

/// An instance overran its execution deadline.
pub fn instance_timed_out(component: &str) {
    if !recording() {
        return;
    }
    counter!(TIMEOUTS, "component" => component.to_owned()).increment(1);
}

/// A resource limiter that counts refused growths in [`MEMORY_LIMIT_HITS`] and otherwise
/// leaves every decision to the limiter it wraps.
pub struct CountingLimiter<L> {
    pub inner: L,
    component: Arc<str>,
}

impl<L> CountingLimiter<L> {
    pub fn new(inner: L, component: &str) -> Self {
        Self {
            inner,
            component: component.into(),
        }
    }

    fn counted(&self, allowed: bool) -> bool {
        if !allowed {
            counter!(MEMORY_LIMIT_HITS, "component" => self.component.clone()).increment(1);
        }
        allowed
    }
}

impl<L: wasmtime::ResourceLimiter> wasmtime::ResourceLimiter for CountingLimiter<L> {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        Ok(self.counted(allowed))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum)?;
        Ok(self.counted(allowed))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// A PostgreSQL checkout took `started..now`; `ok` whether it got a connection.
pub fn pg_acquired(address: &Arc<str>, started: Instant, ok: bool) {
    if !recording() {
        return;
    }
    histogram!(PG_ACQUIRE, "address" => address.clone()).record(started.elapsed());
    if !ok {
        counter!(PG_ACQUIRE_ERRORS, "address" => address.clone()).increment(1);
    }
}

/// A PostgreSQL statement took `started..now`; `ok` whether it succeeded.
pub fn pg_query(address: &Arc<str>, started: Instant, ok: bool) {
    if !recording() {
        return;
    }
    histogram!(PG_QUERY, "address" => address.clone()).record(started.elapsed());
    if !ok {
        counter!(PG_QUERY_ERRORS, "address" => address.clone()).increment(1);
    }
}

/// A pool's state, sampled at scrape time (see [`on_scrape`]).
pub fn pg_pool(address: &Arc<str>, size: usize, in_use: usize, waiters: usize, max: usize) {
    gauge!(PG_POOL_SIZE, "address" => address.clone()).set(size as f64);
    gauge!(PG_POOL_IN_USE, "address" => address.clone()).set(in_use as f64);
    gauge!(PG_POOL_WAITERS, "address" => address.clone()).set(waiters as f64);
    gauge!(PG_POOL_MAX, "address" => address.clone()).set(max as f64);
}

/// A Redis command from a component; `ok` whether it succeeded.
pub fn redis_command(address: &Arc<str>, ok: bool) {
    if !recording() {
        return;
    }
    counter!(REDIS_COMMANDS, "address" => address.clone()).increment(1);
    if !ok {
        counter!(REDIS_ERRORS, "address" => address.clone()).increment(1);
    }
}

/// A Redis-trigger message handled; `ok` whether its handler succeeded.
pub fn trigger_message(channel: &str, component: &str, ok: bool) {
    if !recording() {
        return;
    }
    let (channel, component) = (channel.to_owned(), component.to_owned());
    if !ok {
        counter!(TRIGGER_FAILURES, "channel" => channel.clone(), "component" => component.clone())
            .increment(1);
    }
    counter!(TRIGGER_MESSAGES, "channel" => channel, "component" => component).increment(1);
}

// ---- scrape-time sampling and the listener ---------------------------------------------

type Sampler = Box<dyn Fn() + Send + Sync>;

fn samplers() -> &'static Mutex<Vec<Sampler>> {
    static SAMPLERS: OnceLock<Mutex<Vec<Sampler>>> = OnceLock::new();
    SAMPLERS.get_or_init(Mutex::default)
}

/// Runs `sample` before every scrape (pool gauges read from the pool itself, so they are
/// exact at scrape time and cost nothing on the request path). A no-op without a
/// recorder would still keep the closure: only register when [`enabled`].
pub fn on_scrape(sample: impl Fn() + Send + Sync + 'static) {
    if enabled() {
        samplers()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Box::new(sample));
    }
}

/// Whether a recorder is installed (`--metrics-listen` was given).
pub fn enabled() -> bool {
    HANDLE.get().is_some()
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The exposition text: samplers run, histograms folded, process metrics read.
pub fn render(handle: &PrometheusHandle) -> String {
    for sample in samplers()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
    {
        sample();
    }
    process_collector().collect();
    handle.run_upkeep();
    handle.render()
}

/// Per-dependency readiness for `GET /ready` on the metrics listener: a JSON document and
/// whether every dependency is up. Supplied by the binary (it knows the app).
pub type Readiness =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, (bool, serde_json::Value)> + Send + Sync>;

/// Installs the recorder and binds `addr`; the returned server answers `GET /metrics`
/// and `GET /ready` until the process stops.
pub async fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
    let handle = match HANDLE.get() {
        Some(handle) => handle.clone(),
        None => {
            let handle = install()?;
            HANDLE.get_or_init(|| handle).clone()
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    Ok(MetricsServer { listener, handle })
}

/// The bound metrics listener.
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
}

impl MetricsServer {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes; each connection in a task of its own, HTTP/1 only.
    pub async fn serve(self, readiness: Readiness) {
        tokio::spawn(upkeep(self.handle.clone()));
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (handle, readiness) = (self.handle.clone(), readiness.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (handle, readiness) = (handle.clone(), readiness.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(request, &handle, readiness).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds histogram samples into buckets every [`UPKEEP_INTERVAL`]. The exporter keeps
/// every recorded sample until an upkeep, and without this only a scrape ran one: with
/// nobody scraping, memory grew by two samples per request without bound (16 MB per
/// million requests) and the growing sample blocks cost page faults on the hot path.
async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

async fn answer<B>(
    request: Request<B>,
    handle: &PrometheusHandle,
    readiness: Readiness,
) -> Response<Full<Bytes>> {
    let get = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
    match (get, request.uri().path()) {
        (true, "/metrics") => {
            let text = tokio::task::spawn_blocking({
                let handle = handle.clone();
                move || render(&handle)
            })
            .await
            .unwrap_or_default();
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        (true, "/ready") => {
            let (ready, body) = readiness().await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, "application/json", body.to_string())
        }
        (false, "/metrics" | "/ready") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Not Found: /metrics or /ready\n".into(),
        ),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests;
