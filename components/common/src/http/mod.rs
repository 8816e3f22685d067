//! The request pipeline every API component runs its handler in.
//!
//! [`serve`] does, for every request, what no handler should have to remember: the
//! request id (accepted from `x-request-id` or generated, echoed back), CORS (preflight
//! and response headers, origins from `cors_allowed_origins`), security headers,
//! `Cache-Control: no-store`, turning an [`ApiError`] into `application/problem+json`,
//! rate-limit headers, and one JSON log line per request.
//!
//! The layer's other parts, each used by handlers through [`Ctx`]:
//! - `body`: the JSON request body reader ([`Ctx::json_body`], [`JsonObject`]);
//! - `auth`: the bearer-token check ([`authenticate`], feature `tokens`);
//! - `limits`: the rate-limit check and the "Redis failed, carry on" record
//!   ([`check_rate_limit`], [`redis_degraded`]);
//! - [`static_files`]: what the `web` component serves (paths, types, caching, CSP).

#[cfg(feature = "tokens")]
mod auth;
mod body;
pub mod conditional;
mod limits;
pub mod static_files;

use std::time::Instant;

use serde::Serialize;
use spin_sdk::http::{Method, Request, Response};

use crate::config::{Component, Config, HttpSettings, VariableSource};
use crate::error::ApiError;
use crate::log;
use crate::rate_limit::RateLimitDecision;

#[cfg(feature = "tokens")]
pub use auth::{authenticate, bearer_token, check_generation, generation_key};
pub use body::{is_json_media_type, JsonObject};
pub use limits::{
    check_login_guard, check_rate_limit, check_rate_limit_reading, record_login_success,
    redis_degraded, store_generation,
};

/// Headers browsers may read from cross-origin responses.
const EXPOSED_HEADERS: &str =
    "x-request-id, location, etag, idempotent-replayed, x-cache, ratelimit-limit, ratelimit-remaining, ratelimit-reset, retry-after";

/// What a handler knows about its request besides the request itself, and what it reports
/// back for the response headers and the log line.
#[derive(Debug)]
pub struct Ctx<'v> {
    /// Echoed in `x-request-id`, logged, and quoted in problem bodies.
    pub request_id: String,
    /// The component name for the log line.
    pub component: &'static str,
    /// The matched route template (e.g. `/todos/:id`), set by the handler's router.
    pub route: &'static str,
    /// The authenticated user, once known.
    pub user_id: Option<String>,
    /// The client's IP address (from the host's `spin-client-addr`), for rate limits.
    pub client_addr: String,
    /// `hit` / `miss`, reported as `x-cache` and logged.
    pub cache: Option<&'static str>,
    /// Set when a backing service failed but the request was served anyway.
    pub degraded: Vec<&'static str>,
    /// The limiter's decision, reported as `RateLimit-*` headers.
    pub rate_limit: Option<RateLimitDecision>,
    /// The HTTP settings in force.
    pub http: HttpSettings,
    /// The component's configuration for this request: every other setting a handler
    /// needs is read through it (each variable at most once).
    pub config: Config<'v>,
    started: Instant,
}

impl Ctx<'_> {
    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }
}

/// Accepts a client's request id if it is short and tame, otherwise makes one.
pub fn request_id(header: Option<&str>) -> String {
    if let Some(given) = header {
        let given = given.trim();
        if !given.is_empty()
            && given.len() <= 128
            && given
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return given.to_owned();
        }
    }
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Not worth failing a request over; a time-based id is still unique enough to grep.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        return format!("t{nanos:x}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The IP part of `spin-client-addr` (`1.2.3.4:5678` or `[::1]:5678`).
pub fn client_ip(addr: &str) -> String {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match addr.matches(':').count() {
        1 => addr.split(':').next().unwrap_or(addr).to_owned(),
        _ => addr.to_owned(),
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    let body =
        serde_json::to_vec(value).map_err(|e| ApiError::Internal(format!("serialize: {e}")))?;
    Ok(json_bytes(status, body))
}

/// A JSON response from an already serialised body.
pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

/// `204 No Content`.
pub fn no_content() -> Response {
    Response::builder()
        .status(204)
        .body(Vec::<u8>::new())
        .build()
}

/// The problem+json response for an error.
pub fn problem_response(err: &ApiError, request_id: &str) -> Response {
    let problem = err.to_problem(Some(request_id));
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::builder()
        .status(problem.status)
        .header("content-type", "application/problem+json")
        .body(body)
        .build();
    match err {
        ApiError::InvalidAccessToken(_) => resp.set_header(
            "www-authenticate",
            r#"Bearer realm="todo-api", error="invalid_token""#,
        ),
        ApiError::MethodNotAllowed { allow } => resp.set_header("allow", *allow),
        ApiError::RateLimited(decision) => {
            for (name, value) in decision.headers() {
                resp.set_header(name, value);
            }
        }
        _ => {}
    }
    resp
}

/// Runs `handler` for `req` inside the pipeline described in the module docs, with
/// `component`'s configuration read from `vars`.
pub fn serve(
    req: Request,
    component: Component,
    vars: &dyn VariableSource,
    handler: impl FnOnce(&mut Ctx, &Request) -> Result<Response, ApiError>,
) -> Response {
    let started = Instant::now();
    let header = |name: &str| req.header(name).and_then(|v| v.as_str());
    let request_id = request_id(header("x-request-id"));
    let origin = header("origin").map(str::to_owned);
    let client_addr = header("spin-client-addr")
        .map(client_ip)
        .unwrap_or_default();
    let method = req.method().to_string();
    let path = req.path().to_owned();

    let config = Config::new(component, vars);
    let http = match config.http() {
        Ok(http) => http,
        Err(e) => {
            let err = match ApiError::from(e.clone()) {
                missing @ ApiError::MissingVariable(_) => missing,
                _ => ApiError::NotConfigured("invalid HTTP settings"),
            };
            log::event(
                "error",
                "config_invalid",
                &[
                    ("component", component.name()),
                    ("request_id", &request_id),
                    ("detail", &e.to_string()),
                ],
            );
            let mut resp = problem_response(&err, &request_id);
            finish_headers(&mut resp, &request_id, None);
            return resp;
        }
    };
    let allowed_origin = origin.as_deref().and_then(|o| http.allowed_origin(o));
    let mut ctx = Ctx {
        request_id,
        component: component.name(),
        route: "",
        user_id: None,
        client_addr,
        cache: None,
        degraded: Vec::new(),
        rate_limit: None,
        http,
        config,
        started,
    };

    let mut error: Option<ApiError> = None;
    let mut resp = if *req.method() == Method::Options && origin.is_some() {
        // CORS preflight: answered here for every route of the component.
        ctx.route = "(preflight)";
        let mut resp = no_content();
        if allowed_origin.is_some() {
            resp.set_header(
                "access-control-allow-methods",
                "GET, POST, PATCH, DELETE, OPTIONS",
            );
            resp.set_header(
                "access-control-allow-headers",
                "authorization, content-type, x-request-id, if-match, if-none-match, idempotency-key",
            );
            resp.set_header("access-control-max-age", "600");
        }
        resp
    } else {
        match handler(&mut ctx, &req) {
            Ok(resp) => resp,
            Err(err) => {
                let resp = problem_response(&err, &ctx.request_id);
                error = Some(err);
                resp
            }
        }
    };

    if let Some(decision) = &ctx.rate_limit {
        if resp.header("ratelimit-limit").is_none() {
            for (name, value) in decision.headers() {
                resp.set_header(name, value);
            }
        }
    }
    if let Some(cache) = ctx.cache {
        resp.set_header("x-cache", cache);
    }
    finish_headers(&mut resp, &ctx.request_id, allowed_origin.as_deref());

    let status = *resp.status();
    let latency = format!("{:.3}", ctx.elapsed_ms());
    let status_text = status.to_string();
    let mut fields: Vec<(&str, &str)> = vec![
        ("component", ctx.component),
        ("request_id", &ctx.request_id),
        ("method", &method),
        ("path", &path),
        ("route", ctx.route),
        ("status", &status_text),
        ("latency_ms", &latency),
    ];
    if let Some(user) = &ctx.user_id {
        fields.push(("user_id", user));
    }
    if let Some(cache) = ctx.cache {
        fields.push(("cache", cache));
    }
    let degraded = ctx.degraded.join(",");
    if !degraded.is_empty() {
        fields.push(("degraded", &degraded));
    }
    // Internal detail goes to the log (sanitised), never to the client.
    let internal = match &error {
        Some(e) if e.is_server_side() => log::sanitize(&e.to_string()),
        _ => String::new(),
    };
    if !internal.is_empty() {
        fields.push(("error", &internal));
    }
    let level = if status >= 500 {
        "error"
    } else if degraded.is_empty() {
        "info"
    } else {
        "warn"
    };
    log::event_with_numbers(level, "request", &fields, &["status", "latency_ms"]);
    resp
}

/// Headers every response carries.
fn finish_headers(resp: &mut Response, request_id: &str, allowed_origin: Option<&str>) {
    resp.set_header("x-request-id", request_id);
    resp.set_header("x-content-type-options", "nosniff");
    resp.set_header("x-frame-options", "DENY");
    resp.set_header("referrer-policy", "no-referrer");
    resp.set_header(
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    );
    resp.set_header(
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    );
    if resp.header("cache-control").is_none() {
        resp.set_header("cache-control", "no-store");
    }
    if let Some(origin) = allowed_origin {
        resp.set_header("access-control-allow-origin", origin);
        resp.set_header("access-control-expose-headers", EXPOSED_HEADERS);
    }
    // Responses differ by Origin whenever CORS is in play; say so to caches.
    resp.set_header("vary", "origin");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("cors_allowed_origins", "https://app.example.com"),
            ("max_body_bytes", "65536"),
        ])
    }

    fn header(resp: &Response, name: &str) -> Option<String> {
        resp.header(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    #[test]
    fn request_ids_are_echoed_or_generated() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        let generated = request_id(Some("bad id with spaces\n"));
        assert_eq!(generated.len(), 32);
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn client_ips() {
        assert_eq!(client_ip("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(client_ip("[::1]:5000"), "::1");
        assert_eq!(client_ip("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn pipeline_sets_headers_and_problem_bodies() {
        let req = Request::builder()
            .method(Method::Post)
            .uri("/todos")
            .header("x-request-id", "rid-1")
            .header("origin", "https://app.example.com")
            .body(b"{}".to_vec())
            .build();
        let resp = serve(req, Component::Todos, &vars(), |_, _| {
            Err(ApiError::NotFound)
        });
        assert_eq!(*resp.status(), 404);
        assert_eq!(header(&resp, "x-request-id").as_deref(), Some("rid-1"));
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some("https://app.example.com")
        );
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["status"], 404);
        assert_eq!(body["request_id"], "rid-1");
    }

    #[test]
    fn preflight_is_answered_without_the_handler() {
        let req = Request::builder()
            .method(Method::Options)
            .uri("/todos")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .build();
        let resp = serve(req, Component::Todos, &vars(), |_, _| {
            panic!("handler must not run")
        });
        assert_eq!(*resp.status(), 204);
        assert!(header(&resp, "access-control-allow-methods").is_some());

        let req = Request::builder()
            .method(Method::Options)
            .uri("/todos")
            .header("origin", "https://evil.example.com")
            .build();
        let resp = serve(req, Component::Todos, &vars(), |_, _| {
            panic!("handler must not run")
        });
        assert!(header(&resp, "access-control-allow-origin").is_none());
    }

    fn problem(resp: &Response) -> serde_json::Value {
        assert_eq!(
            header(resp, "content-type").as_deref(),
            Some("application/problem+json")
        );
        serde_json::from_slice(resp.body()).unwrap()
    }

    #[test]
    fn a_variable_the_component_lacks_is_a_503_naming_it() {
        let get = || Request::builder().method(Method::Get).uri("/todos").build();
        // Read by the pipeline itself.
        let lacking = HashMap::from([("cors_allowed_origins", "")]);
        let resp = serve(get(), Component::Todos, &lacking, |_, _| {
            panic!("handler must not run")
        });
        assert_eq!(*resp.status(), 503);
        let body = problem(&resp);
        assert_eq!(body["type"], "urn:todo-api:problem:not-configured");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("`max_body_bytes`"),
            "{body}"
        );
        assert!(header(&resp, "x-request-id").is_some());
        // Read by a handler.
        let resp = serve(get(), Component::Todos, &vars(), |ctx, _| {
            let ttl = ctx.config.todos_cache_ttl_seconds()?;
            panic!("todos_cache_ttl_seconds is not set, yet read as {ttl}")
        });
        assert_eq!(*resp.status(), 503);
        let body = problem(&resp);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("`todos_cache_ttl_seconds`"),
            "{body}"
        );
        assert!(!body.to_string().contains("app.example.com"), "{body}");
    }
}
