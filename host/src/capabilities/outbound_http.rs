//! `wasi:http/outgoing-handler`: outbound HTTP from components, limited to the
//! component's `allowed_outbound_hosts`.
//!
//! wasmtime-wasi-http does the protocol work; this hook decides whether a request may
//! leave. A denied request fails with `HTTP-request-denied`, as in Spin, and is logged
//! with the component id and the destination (scheme, host and port only).

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::ComponentCapabilities;

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn std::future::Future<Output = Result<(), Error>> + Send>,
)>;

/// The per-instance outbound HTTP policy.
pub struct OutboundHttp {
    component: Arc<ComponentCapabilities>,
}

impl OutboundHttp {
    /// The policy of `component`.
    pub fn new(component: Arc<ComponentCapabilities>) -> Self {
        Self { component }
    }

    fn allowed(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .or_else(|| super::outbound_hosts::default_port(scheme));
        port.is_some_and(|port| self.component.allowed_hosts.allows(scheme, host, port))
    }
}

/// Body writes buffered before a guest waits for the reader. Responses are small and the
/// guest's instance is torn down once it finishes, so letting it finish writing without
/// waiting for the client saves a hand-off between tasks per write.
const BODY_BUFFER_CHUNKS: usize = 16;

impl WasiHttpHooks for OutboundHttp {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_BUFFER_CHUNKS
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        if !self.allowed(request.uri()) {
            let uri = request.uri();
            tracing::warn!(
                component = %self.component.id,
                destination = %format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map(|a| a.host()).unwrap_or("")),
                "outbound HTTP denied: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}
