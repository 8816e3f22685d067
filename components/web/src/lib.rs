//! The `web` component: the todo web app at `/` and the API docs at `/docs`, both from the
//! front end's build (`web/`, built into `web/dist` by `scripts/build-components`) that
//! spin.toml mounts as this component's `files`.
//!
//! - `GET`/`HEAD` of a path [`static_files::resolve`] maps to a file: the file, with its
//!   type, `ETag` and cache policy (hashed `/assets/` for a year, pages revalidated),
//!   and the pages' strict Content-Security-Policy; `If-None-Match` with the current tag
//!   is a 304.
//! - Anything else: the API's problem+json 404 or 405.
//!
//! Why a component of the app's own rather than Spin's `spin-fileserver`: the app's
//! security headers and problem responses on every answer, and no download at build time
//! (these machines reach only package registries). Host round trips: none; one file read
//! through the WASI filesystem per request.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p web`.

use common::http::{conditional, problem_response, request_id, static_files};
use common::{log, ApiError};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let request_id = request_id(req.header("x-request-id").and_then(|v| v.as_str()));
    let mut resp = match serve(&req) {
        Ok(resp) => resp,
        Err(err) => {
            if err.is_server_side() {
                log::event(
                    "error",
                    "web request failed",
                    &[
                        ("component", "web"),
                        ("request_id", &request_id),
                        ("path", &log::sanitize(req.path())),
                        ("error", &log::sanitize(&err.to_string())),
                    ],
                );
            }
            problem_response(&err, &request_id)
        }
    };
    for (name, value) in static_files::SECURITY_HEADERS {
        resp.set_header(name, value);
    }
    resp.set_header("x-request-id", &request_id);
    resp
}

fn serve(req: &Request) -> Result<Response, ApiError> {
    let head = match req.method() {
        Method::Get => false,
        Method::Head => true,
        _ => return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
    };
    let asset = static_files::resolve(req.path()).ok_or(ApiError::NotFound)?;
    let body = match std::fs::read(&asset.file) {
        Ok(body) => body,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::NotFound),
        Err(err) => return Err(ApiError::Internal(format!("reading {}: {err}", asset.file))),
    };
    let etag = static_files::etag(&body);
    let fresh = conditional::from_request(req, "if-none-match")?
        .is_some_and(|condition| condition.matches_weak(&etag));
    let mut resp = if fresh {
        conditional::not_modified(&etag)
    } else {
        let length = body.len().to_string();
        Response::builder()
            .status(200)
            .header("content-type", asset.content_type)
            .header("content-length", length)
            .header("etag", etag.as_str())
            .body(if head { Vec::new() } else { body })
            .build()
    };
    resp.set_header("cache-control", asset.cache_control);
    Ok(resp)
}
