//! The HTTP trigger: accepts connections, routes each request to a component with
//! Spin's semantics, and runs it in a fresh instance through `wasi:http/incoming-handler`.
//!
//! A request gets a new `Store` and instance, as in Spin for WASI 0.2 components, so no
//! state leaks between requests (unless instance reuse is turned on: see
//! [`crate::triggers::reuse`]). The guest runs inside the connection's own task, polled
//! first by the request and then by the response body, so a request costs no task spawn
//! and no cross-thread wake-up (Spin and `wasmtime serve` spawn a task per request).
//! Whatever happens inside the guest (a trap, a panic, running out of memory, overrunning
//! the deadline) costs that request a 500 and a log line; the host keeps serving.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::admission::{Admission, AdmissionConfig, AdmissionLimits, Refusal};
use crate::app::{App, AppComponent, DeadlineExceeded, InstanceRun, MemoryLimitExceeded};
use crate::capabilities::InstanceState;
use crate::routes::{RouteMatch, RoutePattern, Router};
use crate::triggers::problem::HostProblem;
use crate::triggers::reuse::{InstancePool, Lease, ReuseConfig};

/// Where a route leads.
struct RouteTarget {
    component: Arc<AppComponent>,
    proxy: ProxyPre<InstanceState>,
    /// The route's request series (its `route` and `component` labels, for logs too).
    metrics: crate::metrics::RouteSeries,
}

/// How long and how much a client may take to send its request, so that a slow or broken
/// client costs a 4xx (or a closed connection) instead of a hang or a 500 (issue 10, item 7).
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Longest wait for a request's whole head once its first byte is expected (hyper's
    /// `header_read_timeout`); the connection is closed when it passes.
    pub header_read_timeout: Duration,
    /// Longest a request body may stall (no new bytes) before the request gets 408.
    pub body_read_timeout: Duration,
    /// Most header lines in one request (hyper answers more with 431).
    pub max_headers: usize,
    /// Largest request head in bytes (hyper's read buffer; a larger head gets 431).
    pub max_header_bytes: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_headers: 100,
            max_header_bytes: 64 << 10,
        }
    }
}

/// The running HTTP trigger.
pub struct HttpTrigger {
    app: Arc<App>,
    router: Router<RouteTarget>,
    /// The request series of requests no route matched (empty `route` and `component`).
    unrouted: crate::metrics::RouteSeries,
    max_request_body: u64,
    limits: ClientLimits,
    /// Idle instances kept for reuse; `None` when every request gets a fresh instance
    /// (the default, Spin's semantics for WASI 0.2 components).
    reuse: Option<Arc<InstancePool<Proxy>>>,
    /// Who may wait for an instance, how long and how many at once.
    admission: Admission,
    /// Connections being served, for the drain's log line when `--shutdown-timeout` passes.
    open_connections: AtomicUsize,
}

/// Counts a connection as open for as long as its task lives.
struct OpenConnection(Arc<HttpTrigger>);

impl OpenConnection {
    fn new(trigger: Arc<HttpTrigger>) -> Self {
        trigger.open_connections.fetch_add(1, Ordering::Relaxed);
        Self(trigger)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpTrigger {
    /// Builds the routing table from the manifest's `[[trigger.http]]` entries. Request
    /// bodies larger than `max_request_body` bytes are refused with 413 (announced by
    /// `content-length`) or cut off with an error (streamed), so one client cannot make
    /// a guest buffer an unbounded body. `reuse` says whether and how long instances
    /// serve more than one request (see [`crate::triggers::reuse`]).
    pub fn new(app: Arc<App>, max_request_body: u64, reuse: ReuseConfig) -> anyhow::Result<Self> {
        let mut routes = Vec::new();
        for trigger in &app.manifest.http_triggers {
            let Some(route) = &trigger.route else {
                // Private routes are reachable only through service chaining.
                continue;
            };
            let component = app.components[&trigger.component].clone();
            let proxy = ProxyPre::new(component.pre.clone())
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "component `{}` does not export wasi:http/incoming-handler@0.2",
                        component.id
                    )
                })?;
            let metrics = crate::metrics::RouteSeries::new(route.raw(), &component.id);
            routes.push((
                route.clone(),
                RouteTarget {
                    component,
                    proxy,
                    metrics,
                },
            ));
        }
        let admission = Admission::new(
            AdmissionLimits::default(),
            &AdmissionConfig::default(),
            routes
                .iter()
                .map(|(_, target)| target.component.id.as_str()),
            crate::engine::EngineLimits::default().max_instances,
        )?;
        Ok(Self {
            app,
            admission,
            router: Router::new(routes)?,
            unrouted: crate::metrics::RouteSeries::new("", ""),
            max_request_body,
            limits: ClientLimits::default(),
            reuse: reuse.reuses().then(|| InstancePool::new(reuse)),
            open_connections: AtomicUsize::new(0),
        })
    }

    /// Replaces the default [`ClientLimits`].
    pub fn with_client_limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces the default admission limits (`--max-queue-wait-ms` and friends) and
    /// reads `[edge_host.admission]`; `max_instances` is `--max-instances`, which sizes the
    /// default per-component cap. An admission table for a component no route leads to
    /// is an error naming it, except for components `--component-id` left out: one
    /// runtime config can serve every deployment of the app.
    pub fn with_admission(
        mut self,
        limits: AdmissionLimits,
        config: &AdmissionConfig,
        max_instances: u32,
    ) -> anyhow::Result<Self> {
        let components: Vec<String> = self
            .router
            .routes()
            .map(|(_, target)| target.component.id.clone())
            .collect();
        let mut config = config.clone();
        (config.component).retain(|id, _| !self.app.manifest.deselected.contains(id));
        self.admission = Admission::new(
            limits,
            &config,
            components.iter().map(String::as_str),
            max_instances,
        )?;
        Ok(self)
    }

    /// Whether any HTTP route is configured.
    pub fn has_routes(&self) -> bool {
        self.router.routes().next().is_some()
    }

    /// Serves `listener` until the process is stopped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
        self.serve_until(listener, CancellationToken::new()).await
    }

    /// Serves `listener` until `stop` is cancelled, then drains (issue 10, item 1): the
    /// listener is closed at once (new connections are refused), every connection is told
    /// to shut down gracefully (hyper closes an idle keep-alive connection now and a busy
    /// one once its in-flight requests are answered), and this returns when the last
    /// connection has ended. The caller bounds the wait (`--shutdown-timeout`).
    pub async fn serve_until(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        if let Some(pool) = &self.reuse {
            tokio::spawn(pool.clone().sweep());
        }
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, client) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.spawn_connection(stream, client, graceful.watcher());
        }
        drop(listener);
        tracing::info!(
            connections = graceful.count(),
            "listener closed; waiting for open connections to finish"
        );
        graceful.shutdown().await;
        Ok(())
    }

    /// HTTP connections still open; during a drain, those with requests in progress
    /// (idle ones are closed as soon as the drain starts).
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Serves one connection in its own task, watched for graceful shutdown.
    fn spawn_connection(
        self: &Arc<Self>,
        stream: tokio::net::TcpStream,
        client: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let trigger = self.clone();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_headers(self.limits.max_headers)
            .max_buf_size(self.limits.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.limits.max_header_bytes as u32);
        let open = OpenConnection::new(self.clone());
        tokio::spawn(async move {
            let _open = open;
            let service = hyper::service::service_fn(move |request| {
                let trigger = trigger.clone();
                async move { Ok::<_, std::convert::Infallible>(trigger.handle(request, client).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%client, "connection ended with error: {err}");
            }
        });
    }

    /// The routes, for the start-up banner.
    pub fn describe_routes(&self) -> Vec<(String, String)> {
        let mut routes: Vec<_> = self
            .router
            .routes()
            .map(|(pattern, target)| (pattern.raw().to_owned(), target.component.id.clone()))
            .collect();
        routes.sort();
        routes
    }

    /// Routes and runs one request; never fails (errors become problem+json responses).
    /// Public so benchmarks can drive the whole request path without a socket. Every
    /// answer, the host's own refusals included, is counted once here.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let (response, target) = self.respond(request, client).await;
        let status = response.status().as_u16();
        let series = target.map(|target| &target.metrics);
        tracing::debug!(
            component = series.map_or("", |s| s.component()),
            route = series.map_or("", |s| s.route()),
            %method, status,
            elapsed_us = started.elapsed().as_micros() as u64,
            "handled"
        );
        series
            .unwrap_or(&self.unrouted)
            .record(&method, status, started);
        response
    }

    /// [`HttpTrigger::handle`]'s work: the response, with the matched route pattern and
    /// component for the metrics (`""` where the request got no further).
    async fn respond<B>(
        &self,
        request: Request<B>,
        client: SocketAddr,
    ) -> (Response<HyperOutgoingBody>, Option<&RouteTarget>)
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let Some((pattern, target, found)) = self.router.route(&path) else {
            return (HostProblem::NotFound.response(), None);
        };
        let component = &target.component;
        let id = component.id.as_str();
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_request_body) {
            return (HostProblem::BodyTooLarge.response(), Some(target));
        }
        // Counted from here to its answer, body buffering included.
        let Ok(_client_pass) = self.admission.client(client.ip()) else {
            tracing::debug!(%client, %method, %path, "refused: client has too many requests in flight");
            return (HostProblem::ClientBusy.response(), Some(target));
        };
        let request = match with_spin_headers(request, pattern, &found, client) {
            Ok(request) => request,
            Err(err) => {
                tracing::debug!("bad request: {err:#}");
                return (HostProblem::BadRequest.response(), Some(target));
            }
        };
        // The whole body first, holding no instance slot: a client that sends its head
        // and then trickles (or never sends) the body costs a socket and its buffered
        // bytes, never one of the `--max-instances` slots (issue 13 item 1).
        let (parts, body) = request.into_parts();
        let body = match self.buffer_body(body).await {
            Ok(body) => body,
            Err(broken) => {
                tracing::debug!(component = id, %method, %path, ?broken, "request body failed");
                return (broken.problem().response(), Some(target));
            }
        };
        let request = Request::from_parts(parts, body);
        let deadline = self.admission.deadline(id);
        let turn = match self.admission.component(id, deadline).await {
            Ok(turn) => turn,
            Err(refusal) => return (overloaded(refusal, component, &method, &path), Some(target)),
        };
        let response = match self.run(target, request, turn, deadline).await {
            Ok(Some(response)) => response,
            Ok(None) => {
                let refused = overloaded(Refusal::Overloaded, component, &method, &path);
                return (refused, Some(target));
            }
            Err(err) if err.downcast_ref::<DeadlineExceeded>().is_some() => {
                tracing::warn!(component = id, %method, %path, "request cut off: {err:#}");
                HostProblem::DeadlineExceeded.response()
            }
            Err(err) if err.downcast_ref::<MemoryLimitExceeded>().is_some() => {
                tracing::warn!(component = id, %method, %path, "request failed: {err:#}");
                HostProblem::MemoryLimit.response()
            }
            Err(err) => {
                tracing::error!(component = id, %method, %path, "request failed: {err:#}");
                HostProblem::Internal.response()
            }
        };
        (response, Some(target))
    }

    /// Reads the whole request body, at most `--max-request-body-mb` of it and with no
    /// stall longer than `--body-read-timeout-secs`, before the request may take an
    /// instance slot (issue 13 item 1). Why buffer rather than hand the guest a stream:
    /// a guest that waits for its body holds a slot (and its linear memory) for as long
    /// as the client likes, so 1,100 header-only `POST`s took every slot; buffered, the
    /// same clients hold only their sockets and what they sent (bounded per request by
    /// the body limit and per client by `--max-client-in-flight`). The guest gets the
    /// same bytes and trailers, all there at once; what it loses is overlapping its work
    /// with a slow upload, which no route of a JSON API needs. A body that is all there
    /// already (every `GET`, a small `POST`) costs no timer.
    async fn buffer_body<B>(&self, body: B) -> Result<BufferedBody, BodyFault>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut limited =
            LimitedBody::new(body, self.max_request_body, self.limits.body_read_timeout);
        match (&mut limited).collect().await {
            Ok(collected) => Ok(collected.map_err(never_fails as fn(_) -> _)),
            Err(_) => Err(match limited.fault {
                BodyFault::None => BodyFault::Malformed,
                fault => fault,
            }),
        }
    }

    /// Runs the request on a fresh instance (or, with reuse on, an idle one of the same
    /// component). The guest can keep streaming the body after it has sent the response
    /// head: the body drives it from then on.
    async fn run<B>(
        &self,
        target: &RouteTarget,
        request: Request<B>,
        turn: Option<OwnedSemaphorePermit>,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<Option<Response<HyperOutgoingBody>>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let component = &target.component;
        let mut lease = match self
            .reuse
            .as_ref()
            .and_then(|pool| pool.take(&component.id))
        {
            Some(lease) => lease,
            None => match self.start_instance(component, deadline).await {
                Some(instance) => Lease::fresh(instance, self.reuse.as_deref()),
                None => return Ok(None),
            },
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = lease.instance.store_mut().data_mut().http();
        let incoming = http.new_incoming_request(Scheme::Http, request)?;
        let outparam = http.new_response_outparam(sender)?;
        let proxy = target.proxy.clone();
        let reuse = self.reuse.clone();
        let owner = component.clone();
        let counted = component.clone();
        let mut guest: GuestRun = Box::pin(async move {
            // The component's turn lasts as long as its guest runs, response body included.
            let _turn = turn;
            let export = lease.export.take();
            let export = lease
                .instance
                .run(move |store| {
                    Box::pin(async move {
                        let export = match export {
                            Some(export) => export,
                            None => {
                                crate::metrics::instantiation(
                                    &counted.metrics,
                                    proxy.instantiate_async(&mut *store),
                                )
                                .await?
                            }
                        };
                        export
                            .wasi_http_incoming_handler()
                            .call_handle(&mut *store, incoming, outparam)
                            .await?;
                        Ok(export)
                    })
                })
                .await?;
            match reuse {
                Some(pool) => {
                    lease.instance.store_mut().data_mut().end_request();
                    lease.export = Some(export);
                    pool.give_back(&owner.id, lease);
                    Ok(None)
                }
                // Torn down once the response is out, not before its last byte.
                None => Ok(Some(lease)),
            }
        });
        // The guest runs in this connection's task, not a task of its own: no spawn and
        // no cross-thread wake-ups per request. It is polled here until it answers, then
        // by the response body (`GuestDriven`) while it streams the rest.
        let mut receiver = receiver;
        let (head, finished) = tokio::select! {
            biased;
            head = &mut receiver => (head.ok(), None),
            // The guest finished before its answer was read (a small body is all buffered).
            finished = &mut guest => (receiver.try_recv().ok(), Some(finished)),
        };
        let Some(head) = head else {
            // The guest dropped its response slot unset: its own outcome says why.
            let finished = match finished {
                Some(finished) => finished,
                None => guest.await,
            };
            return Err(finished
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("guest returned without sending a response")));
        };
        let response =
            head.map_err(|code| anyhow::anyhow!("guest answered with error code {code:?}"))?;
        let (guest, finished) = match finished {
            None => (Some(guest), None),
            Some(finished) => (None, finished?),
        };
        let component = target.component.clone();
        Ok(Some(response.map(|body| {
            GuestDriven::new(body, guest, finished, component).boxed_unsync()
        })))
    }

    /// A fresh instance; when every pooling-allocator slot is taken and reuse is on,
    /// an idle instance gives its slot up first rather than the request waiting for one
    /// to expire. `None` when no slot came free before `deadline` (`--max-queue-wait-ms`):
    /// the request gets 503 instead of an unbounded wait.
    async fn start_instance(
        &self,
        component: &AppComponent,
        deadline: tokio::time::Instant,
    ) -> Option<InstanceRun> {
        if let Some(pool) = &self.reuse {
            loop {
                if let Some(instance) = self.app.try_start_instance(component) {
                    return Some(instance);
                }
                if !pool.evict_oldest() {
                    break;
                }
            }
        }
        if let Some(instance) = self.app.try_start_instance(component) {
            return Some(instance);
        }
        // A tokio semaphore waiter that times out leaves the queue: nothing to undo.
        tokio::time::timeout_at(deadline, self.app.start_instance(component))
            .await
            .ok()
    }
}

/// Binds `addr` with a listen backlog of `backlog` connections (`--listen-backlog`), so a
/// burst of connects waits in the kernel instead of being refused or reset (tokio's
/// `TcpListener::bind` uses 1024 too, but says nothing about it; the issue saw 128 on the
/// old host). Linux caps the backlog at `net.core.somaxconn` (4096 by default since 5.4).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Headers a client may not set, because the host sets them for the component.
const SPIN_HEADER_PREFIX: &str = "spin-";

/// Adds the `spin-*` headers Spin gives a component and drops any the client sent.
fn with_spin_headers<B>(
    mut request: Request<B>,
    pattern: &RoutePattern,
    found: &RouteMatch,
    client: SocketAddr,
) -> anyhow::Result<Request<B>> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let full_url = format!("http://{host}{path_and_query}");
    let headers = request.headers_mut();
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(SPIN_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    let mut set = |name: &str, value: &str| -> anyhow::Result<()> {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
        Ok(())
    };
    set("spin-full-url", &full_url)?;
    set("spin-path-info", &found.path_info)?;
    set("spin-matched-route", pattern.raw())?;
    set("spin-raw-component-route", pattern.raw())?;
    set("spin-component-route", &pattern.component_route())?;
    set("spin-base-path", "/")?;
    set("spin-client-addr", &client.to_string())?;
    for (name, value) in &found.params {
        // Spin's header key for `:item_id` is `spin-path-match-item-id`: `_` becomes `-`
        // (spin-trigger-http's `prepare_header_key`).
        let key = format!("spin-path-match-{name}")
            .replace('_', "-")
            .to_ascii_lowercase();
        set(&key, value)?;
    }
    if request.uri().authority().is_none() {
        // wasi-http wants an authority; give it the Host header's.
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(host.as_str())
            .path_and_query(path_and_query.as_str())
            .build()?;
        *request.uri_mut() = uri;
    }
    Ok(request)
}

/// The 503 (or 429) for a request that was not admitted, logged once at debug level.
fn overloaded(
    refusal: Refusal,
    component: &AppComponent,
    method: &http::Method,
    path: &str,
) -> Response<HyperOutgoingBody> {
    tracing::debug!(component = %component.id, %method, %path, ?refusal, "request not admitted");
    match refusal {
        Refusal::ClientBusy => HostProblem::ClientBusy.response(),
        Refusal::Overloaded => HostProblem::Overloaded.response(),
    }
}

/// A guest's run, from instantiation to the end of its handler. It yields the instance
/// to tear down after the response (`None` when it went back for reuse).
type GuestRun = std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<Option<Lease<Proxy>>>> + Send>,
>;

/// A response body that also drives the guest producing it, in the connection's task.
/// It ends only once the guest's handler has returned (and, with reuse, its instance is
/// back in the idle list, so a keep-alive client's next request finds it). Dropping it
/// early (the client went away) drops the guest's store, which cancels the guest and
/// its outbound calls.
struct GuestDriven<B> {
    inner: B,
    inner_ended: bool,
    guest: Option<GuestRun>,
    /// The finished instance, torn down when the body is dropped, after the last byte.
    finished: Option<Lease<Proxy>>,
    component: Arc<AppComponent>,
}

impl<B> GuestDriven<B> {
    /// `guest` still running, or already `finished` with the instance to tear down.
    fn new(
        inner: B,
        guest: Option<GuestRun>,
        finished: Option<Lease<Proxy>>,
        component: Arc<AppComponent>,
    ) -> Self {
        Self {
            inner,
            inner_ended: false,
            guest,
            finished,
            component,
        }
    }
}

impl<B> hyper::body::Body for GuestDriven<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        use std::task::Poll;
        if let Some(guest) = self.guest.as_mut() {
            if let Poll::Ready(outcome) = guest.as_mut().poll(cx) {
                self.guest = None;
                match outcome {
                    Ok(lease) => self.finished = lease,
                    Err(err) => tracing::error!(
                        component = %self.component.id,
                        "component failed after it started its response: {err:#}"
                    ),
                }
            }
        }
        if !self.inner_ended {
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(None) => self.inner_ended = true,
                other => return other,
            }
        }
        if self.guest.is_some() {
            // Polled above this call, so its waker is registered.
            return Poll::Pending;
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.guest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body failed, when the client is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    None,
    /// More than the limit arrived (any framing): 413.
    TooLarge,
    /// hyper could not decode it (invalid chunk size, connection cut mid-body): 400.
    Malformed,
    /// No new bytes within the body-read timeout: 408.
    Stalled,
}

/// A request body read in full before the guest runs (see `HttpTrigger::buffer_body`).
/// The error of a body that cannot fail.
fn never_fails(never: std::convert::Infallible) -> wasmtime_wasi_http::Error {
    match never {}
}

type BufferedBody = http_body_util::combinators::MapErr<
    http_body_util::Collected<Bytes>,
    fn(std::convert::Infallible) -> wasmtime_wasi_http::Error,
>;

impl BodyFault {
    /// The host's answer for it.
    fn problem(self) -> HostProblem {
        match self {
            Self::TooLarge => HostProblem::BodyTooLarge,
            Self::Stalled => HostProblem::BodyStalled,
            Self::Malformed | Self::None => HostProblem::BodyMalformed,
        }
    }
}

/// A request body that fails once more than `remaining` bytes have arrived, or when no
/// bytes arrive for `stall_timeout`, and records why in `fault`.
struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    stall_timeout: Duration,
    /// Armed on the first `Pending` only, so a body that is all there costs no timer.
    stall: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    fault: BodyFault,
}

impl<B> LimitedBody<B> {
    fn new(inner: B, limit: u64, stall_timeout: Duration) -> Self {
        Self {
            inner,
            remaining: limit,
            stall_timeout,
            stall: None,
            fault: BodyFault::None,
        }
    }

    fn fail(&mut self, fault: BodyFault) {
        self.fault = fault;
    }
}

impl<B> hyper::body::Body for LimitedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let frame = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => {
                self.fail(BodyFault::Malformed);
                return Poll::Ready(Some(Err(err.into())));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + self.stall_timeout;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if std::future::Future::poll(stall.as_mut(), cx).is_ready() {
                    self.fail(BodyFault::Stalled);
                    return Poll::Ready(Some(Err(
                        wasmtime_wasi_http::Error::ConnectionReadTimeout,
                    )));
                }
                return Poll::Pending;
            }
        };
        let stall_timeout = self.stall_timeout;
        if let Some(stall) = self.stall.as_mut() {
            // Progress: the stall clock starts again.
            stall
                .as_mut()
                .reset(tokio::time::Instant::now() + stall_timeout);
        }
        if let Some(data) = frame.data_ref() {
            let size = data.len() as u64;
            if size > self.remaining {
                self.remaining = 0;
                self.fail(BodyFault::TooLarge);
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    None,
                ))));
            }
            self.remaining -= size;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
