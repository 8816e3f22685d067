//! The `wasi:http/outgoing-handler` hooks: the policy check, then wasmtime-wasi-http's
//! own sender.

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::OutboundHttp;

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn std::future::Future<Output = Result<(), Error>> + Send>,
)>;

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
