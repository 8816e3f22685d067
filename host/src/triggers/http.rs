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
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::app::{App, AppComponent, DeadlineExceeded, InstanceRun, MemoryLimitExceeded};
use crate::capabilities::InstanceState;
use crate::routes::{RouteMatch, RoutePattern, Router};
use crate::triggers::reuse::{InstancePool, Lease, ReuseConfig};

/// Where a route leads.
struct RouteTarget {
    component: Arc<AppComponent>,
    proxy: ProxyPre<InstanceState>,
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
    max_request_body: u64,
    limits: ClientLimits,
    /// Idle instances kept for reuse; `None` when every request gets a fresh instance
    /// (the default, Spin's semantics for WASI 0.2 components).
    reuse: Option<Arc<InstancePool<Proxy>>>,
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
            routes.push((route.clone(), RouteTarget { component, proxy }));
        }
        Ok(Self {
            app,
            router: Router::new(routes)?,
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

    /// Routes and runs one request; never fails (errors become 404/500 responses).
    /// Public so benchmarks can drive the whole request path without a socket.
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
        let path = request.uri().path().to_owned();
        let Some((pattern, target, found)) = self.router.route(&path) else {
            return plain(StatusCode::NOT_FOUND, "Not Found\n");
        };
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_request_body) {
            return problem(BodyFault::TooLarge);
        }
        // One small allocation per request: the body reports here why it failed, so the
        // host can answer for the client's fault instead of the guest's generic 500.
        let fault = Arc::new(AtomicU8::new(BodyFault::None as u8));
        let request = request.map(|body| {
            LimitedBody::new(
                body,
                self.max_request_body,
                self.limits.body_read_timeout,
                fault.clone(),
            )
        });
        let request = match with_spin_headers(request, pattern, &found, client) {
            Ok(request) => request,
            Err(err) => {
                tracing::debug!("bad request: {err:#}");
                return plain(StatusCode::BAD_REQUEST, "Bad Request\n");
            }
        };
        let component = &target.component;
        let response = self.run(target, request).await;
        // A body the client broke (too large, malformed chunking, stalled) is the client's
        // fault whatever the guest made of the read error: answer for it.
        let response = match BodyFault::from_u8(fault.load(Ordering::Acquire)) {
            BodyFault::None => response,
            broken => {
                tracing::debug!(component = %target.component.id, %method, %path, ?broken, "request body failed");
                Ok(problem(broken))
            }
        };
        let response = response.unwrap_or_else(|err| {
            if err.downcast_ref::<DeadlineExceeded>().is_some() {
                tracing::warn!(component = %component.id, %method, %path, "request cut off: {err:#}");
                return deadline_problem();
            }
            if err.downcast_ref::<MemoryLimitExceeded>().is_some() {
                tracing::warn!(component = %component.id, %method, %path, "request failed: {err:#}");
                return memory_problem();
            }
            tracing::error!(component = %component.id, %method, %path, "request failed: {err:#}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        });
        tracing::debug!(
            component = %component.id, %method, %path,
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "handled"
        );
        response
    }

    /// Runs the request on a fresh instance (or, with reuse on, an idle one of the same
    /// component). The guest can keep streaming the body after it has sent the response
    /// head: the body drives it from then on.
    async fn run<B>(
        &self,
        target: &RouteTarget,
        request: Request<B>,
    ) -> anyhow::Result<Response<HyperOutgoingBody>>
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
            None => Lease::fresh(self.start_instance(component).await, self.reuse.as_deref()),
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = lease.instance.store_mut().data_mut().http();
        let incoming = http.new_incoming_request(Scheme::Http, request)?;
        let outparam = http.new_response_outparam(sender)?;
        let proxy = target.proxy.clone();
        let reuse = self.reuse.clone();
        let owner = component.clone();
        let mut guest: GuestRun = Box::pin(async move {
            let export = lease.export.take();
            let export = lease
                .instance
                .run(move |store| {
                    Box::pin(async move {
                        let export = match export {
                            Some(export) => export,
                            None => proxy.instantiate_async(&mut *store).await?,
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
        Ok(response.map(|body| GuestDriven::new(body, guest, finished, component).boxed_unsync()))
    }

    /// A fresh instance; when every pooling-allocator slot is taken and reuse is on,
    /// an idle instance gives its slot up first rather than the request waiting for one
    /// to expire.
    async fn start_instance(&self, component: &AppComponent) -> InstanceRun {
        if let Some(pool) = &self.reuse {
            loop {
                if let Some(instance) = self.app.try_start_instance(component) {
                    return instance;
                }
                if !pool.evict_oldest() {
                    break;
                }
            }
        }
        self.app.start_instance(component).await
    }
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
        set(
            &format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value,
        )?;
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

/// A small plain-text response made by the host itself.
fn plain(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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

/// Why a request body failed, when the client is to blame; kept in an `AtomicU8` shared
/// between the body (which the guest reads) and the request's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum BodyFault {
    None = 0,
    /// More than the limit arrived (any framing): 413.
    TooLarge = 1,
    /// hyper could not decode it (invalid chunk size, connection cut mid-body): 400.
    Malformed = 2,
    /// No new bytes within the body-read timeout: 408.
    Stalled = 3,
}

impl BodyFault {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::TooLarge,
            2 => Self::Malformed,
            3 => Self::Stalled,
            _ => Self::None,
        }
    }
}

/// The problem+json (RFC 9457) answer for a broken request, a static body: no allocation.
/// The shape is the app's (`components/common`'s `ApiError` mapping): `type`, `title`,
/// `status`, `detail`.
fn problem(fault: BodyFault) -> Response<HyperOutgoingBody> {
    macro_rules! body {
        ($slug:literal, $title:literal, $status:literal, $detail:literal) => {
            concat!(
                r#"{"type":"urn:edge-host:problem:"#,
                $slug,
                r#"","title":""#,
                $title,
                r#"","status":"#,
                $status,
                r#","detail":""#,
                $detail,
                r#""}"#
            )
        };
    }
    let (status, body) = match fault {
        BodyFault::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            body!(
                "payload-too-large",
                "Payload Too Large",
                413,
                "The request body is larger than this server accepts."
            ),
        ),
        BodyFault::Stalled => (
            StatusCode::REQUEST_TIMEOUT,
            body!(
                "request-timeout",
                "Request Timeout",
                408,
                "The request body stopped arriving before it was complete."
            ),
        ),
        BodyFault::Malformed | BodyFault::None => (
            StatusCode::BAD_REQUEST,
            body!(
                "bad-request",
                "Bad Request",
                400,
                "The request body is malformed."
            ),
        ),
    };
    let mut response = plain(status, body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if fault != BodyFault::None {
        // The rest of the body is unread: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The answer for a request cut off at `--request-timeout` (504, problem+json, the shape of
/// [`problem`]). The instance is dropped; the connection is closed, since the guest may
/// have left the request body half read.
fn deadline_problem() -> Response<HyperOutgoingBody> {
    const BODY: &str = concat!(
        r#"{"type":"urn:edge-host:problem:gateway-timeout","title":"Gateway Timeout","#,
        r#""status":504,"detail":"The component did not answer within the request timeout."}"#
    );
    let mut response = plain(StatusCode::GATEWAY_TIMEOUT, BODY);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The answer for a request whose instance hit `--max-instance-memory-mb` (500,
/// problem+json; the instance is dropped, the next request gets a fresh one).
fn memory_problem() -> Response<HyperOutgoingBody> {
    const BODY: &str = concat!(
        r#"{"type":"urn:edge-host:problem:memory-limit","title":"Internal Server Error","#,
        r#""status":500,"detail":"The component ran out of memory for this request."}"#
    );
    let mut response = plain(StatusCode::INTERNAL_SERVER_ERROR, BODY);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// A request body that fails once more than `remaining` bytes have arrived, or when no
/// bytes arrive for `stall_timeout`, and records why in `fault`.
struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    stall_timeout: Duration,
    /// Armed on the first `Pending` only, so a body that is all there costs no timer.
    stall: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    fault: Arc<AtomicU8>,
}

impl<B> LimitedBody<B> {
    fn new(inner: B, limit: u64, stall_timeout: Duration, fault: Arc<AtomicU8>) -> Self {
        Self {
            inner,
            remaining: limit,
            stall_timeout,
            stall: None,
            fault,
        }
    }

    fn fail(&self, fault: BodyFault) {
        self.fault.store(fault as u8, Ordering::Release);
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
