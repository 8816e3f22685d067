//! Every response the HTTP trigger makes itself (no route, a broken request, overload, a
//! failed guest), from one place: `application/problem+json` (RFC 9457) in the app's shape
//! (`components/common`'s `ApiError` mapping: `type`, `title`, `status`, `detail`) with
//! the security headers the app's components send (`components/common/src/http`,
//! `finish_headers`), so a client, a browser or a scanner cannot tell a host-made answer
//! from the app's by its headers, and no host-made answer says anything about internals.
//!
//! Bodies are static strings: making one allocates nothing but the header map.
//!
//! Not covered: a request head hyper itself cannot parse (too many headers, a head over
//! `--max-header-kb`, bad syntax). hyper answers those (431, 400) with an empty body
//! before any service sees the request, and offers no hook to change that answer.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How long a refused client should wait before trying again (`Retry-After`, seconds).
pub const RETRY_AFTER_SECS: &str = "1";

/// The headers every host-made answer carries, the same values as the app's components
/// (`components/common/src/http/mod.rs`, `finish_headers`).
const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
];

/// A response the host makes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostProblem {
    /// No route matches the path: 404.
    NotFound,
    /// The request cannot be handed to a component (a header or URI the host cannot
    /// turn into the `spin-*` headers): 400.
    BadRequest,
    /// The body is over `--max-request-body-mb`, however it is framed: 413.
    BodyTooLarge,
    /// The body's framing is broken (an invalid chunk size, cut mid-body): 400.
    BodyMalformed,
    /// The body stalled longer than `--body-read-timeout-secs`: 408.
    BodyStalled,
    /// The client has `--max-client-in-flight` requests in flight already: 429.
    ClientBusy,
    /// No instance (or no turn of its component) within the queue wait: 503.
    Overloaded,
    /// The guest trapped, failed or answered nothing: 500.
    Internal,
    /// The guest overran `--request-timeout` (or its component's `request_timeout_ms`)
    /// and was cut off: 504. The guest may have left the body half read: the connection
    /// is closed.
    DeadlineExceeded,
    /// The instance hit `--max-instance-memory-mb` (all its memories and tables together):
    /// 500 for this request only; the instance is dropped.
    MemoryLimit,
}

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

impl HostProblem {
    /// The status and the static problem+json body.
    fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                body!("not-found", "Not Found", 404, "No route matches this path."),
            ),
            Self::BadRequest => (
                StatusCode::BAD_REQUEST,
                body!(
                    "bad-request",
                    "Bad Request",
                    400,
                    "The request's headers or target cannot be accepted."
                ),
            ),
            Self::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body!(
                    "payload-too-large",
                    "Payload Too Large",
                    413,
                    "The request body is larger than this server accepts."
                ),
            ),
            Self::BodyMalformed => (
                StatusCode::BAD_REQUEST,
                body!(
                    "bad-request",
                    "Bad Request",
                    400,
                    "The request body is malformed."
                ),
            ),
            Self::BodyStalled => (
                StatusCode::REQUEST_TIMEOUT,
                body!(
                    "request-timeout",
                    "Request Timeout",
                    408,
                    "The request body stopped arriving before it was complete."
                ),
            ),
            Self::ClientBusy => (
                StatusCode::TOO_MANY_REQUESTS,
                body!(
                    "too-many-requests",
                    "Too Many Requests",
                    429,
                    "Too many requests from this address are in progress; retry after the time in Retry-After."
                ),
            ),
            Self::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                body!(
                    "overloaded",
                    "Service Unavailable",
                    503,
                    "The server is busy; retry after the time in Retry-After."
                ),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                body!(
                    "internal",
                    "Internal Server Error",
                    500,
                    "The request could not be completed."
                ),
            ),
            Self::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                body!(
                    "gateway-timeout",
                    "Gateway Timeout",
                    504,
                    "The component did not answer within the request timeout."
                ),
            ),
            Self::MemoryLimit => (
                StatusCode::INTERNAL_SERVER_ERROR,
                body!(
                    "memory-limit",
                    "Internal Server Error",
                    500,
                    "The component ran out of memory for this request."
                ),
            ),
        }
    }

    /// Whether the request's body may be left unread, so the connection cannot carry
    /// another request.
    fn closes(self) -> bool {
        matches!(
            self,
            Self::BodyTooLarge | Self::BodyMalformed | Self::BodyStalled | Self::DeadlineExceeded
        )
    }

    /// The response.
    pub fn response(self) -> Response<HyperOutgoingBody> {
        let (status, body) = self.parts();
        let body = Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in SECURITY_HEADERS {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        if matches!(self, Self::ClientBusy | Self::Overloaded) {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if self.closes() {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [HostProblem; 10] = [
        HostProblem::NotFound,
        HostProblem::BadRequest,
        HostProblem::BodyTooLarge,
        HostProblem::BodyMalformed,
        HostProblem::BodyStalled,
        HostProblem::ClientBusy,
        HostProblem::Overloaded,
        HostProblem::Internal,
        HostProblem::DeadlineExceeded,
        HostProblem::MemoryLimit,
    ];

    #[test]
    fn every_body_is_problem_json_with_its_status() {
        for problem in ALL {
            let (status, body) = problem.parts();
            let json: serde_json::Value = serde_json::from_str(body).expect(body);
            assert_eq!(json["status"], status.as_u16(), "{body}");
            assert!(
                json["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:edge-host:problem:"),
                "{body}"
            );
            for field in ["title", "detail"] {
                assert!(json[field].is_string(), "{body}");
            }
        }
    }

    #[test]
    fn every_response_has_the_security_headers_and_retry_after_when_refused() {
        for problem in ALL {
            let response = problem.response();
            let headers = response.headers();
            assert_eq!(headers["content-type"], "application/problem+json");
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(headers[name], value, "{problem:?}");
            }
            let refused = matches!(problem, HostProblem::ClientBusy | HostProblem::Overloaded);
            assert_eq!(headers.contains_key("retry-after"), refused, "{problem:?}");
        }
    }
}
