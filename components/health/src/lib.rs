//! The `health` component.
//!
//! - `GET /health`: liveness. `200 {"status":"ok"}`, touches nothing, logs nothing (probes
//!   hit it every few seconds; a log line each would drown the useful ones).
//! - `GET /health/ready`: readiness. Runs `SELECT 1` on PostgreSQL (`db_url`) and `PING` on
//!   Redis (`redis_url`) through the host, and answers a bare status: `200
//!   {"status":"ready"}` or `503 {"status":"unavailable"}`. Which dependency failed and why
//!   is for operators, not anonymous callers (issue 13): each failed check is logged as one
//!   JSON line (reason sanitised, latency included), and edge-host's admin listener
//!   (`--metrics-listen`, `GET /ready`) shows every backing service's state. A variable
//!   the component lacks is a 503 problem naming it.
//! - Other paths and methods: the shared problem+json 404/405 (`common::http`).
//!
//! Host round trips: `GET /health` none; `GET /health/ready` one PostgreSQL checkout with
//! `SELECT 1` and one Redis connection with `PING`, the least a readiness check can do.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p health`.

use std::time::Instant;

use common::config::{Component, Config, ConfigError};
use common::store::SpinVariables;
use common::{http, log, ApiError};
use serde_json::{json, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::RedisResult;
use spin_sdk::{pg4, redis};

#[http_component]
fn handle(req: Request) -> Response {
    let request_id = http::request_id(req.header("x-request-id").and_then(|v| v.as_str()));
    let result = match (req.method(), req.path()) {
        (Method::Get | Method::Head, "/health") => Ok((200, json!({"status": "ok"}))),
        (Method::Get | Method::Head, "/health/ready") => {
            readiness(&Config::new(Component::Health, &SpinVariables))
        }
        (_, "/health" | "/health/ready") => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        _ => Err(ApiError::NotFound),
    };
    let mut resp = match result {
        Ok((status, body)) => http::json_bytes(status, body.to_string().into_bytes()),
        Err(err) => {
            if err.is_server_side() {
                log::event(
                    "error",
                    "health request failed",
                    &[
                        ("component", "health"),
                        ("request_id", &request_id),
                        ("error", &log::sanitize(&err.to_string())),
                    ],
                );
            }
            http::problem_response(&err, &request_id)
        }
    };
    resp.set_header("cache-control", "no-store");
    resp.set_header("x-content-type-options", "nosniff");
    resp.set_header("x-request-id", &request_id);
    resp
}

/// A check's result: `Ok(latency_ms)` or `Err(short reason)`.
type Check = Result<f64, String>;

/// Readiness. A variable the component lacks is a 503 problem naming it, like in every
/// component; an empty one is a failed check.
fn readiness(config: &Config) -> Result<(u16, Value), ApiError> {
    let db_url = url(config.db_url())?;
    let redis_url = url(config.redis_url())?;
    let postgres = timed(|| check_postgres(db_url?));
    let redis = timed(|| check_redis(redis_url?));
    let ready = postgres.is_ok() && redis.is_ok();
    for (name, check) in [("postgres", &postgres), ("redis", &redis)] {
        if let Err(reason) = check {
            log::event(
                "warn",
                "readiness check failed",
                &[("component", "health"), ("check", name), ("error", reason)],
            );
        }
    }
    let body = json!({ "status": if ready { "ready" } else { "unavailable" } });
    Ok((if ready { 200 } else { 503 }, body))
}

/// A URL variable: missing → the request fails; empty or unreadable → the check fails.
fn url(value: Result<String, ConfigError>) -> Result<Result<String, String>, ApiError> {
    match value {
        Ok(url) => Ok(Ok(url)),
        Err(ConfigError::Missing(name)) => Err(ApiError::MissingVariable(name)),
        Err(
            ConfigError::Empty(name)
            | ConfigError::Invalid { name, .. }
            | ConfigError::Host { name, .. }
            | ConfigError::NotListed { name, .. },
        ) => Ok(Err(format!("not configured (variable {name})"))),
    }
}

fn timed(check: impl FnOnce() -> Result<(), String>) -> Check {
    let start = Instant::now();
    check()?;
    // Three decimals: microsecond resolution is all a loopback round trip needs.
    Ok((start.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0)
}

/// A short, secret-free reason: the error's kind plus its sanitised message.
fn reason(kind: &str, message: &str) -> String {
    let message = log::sanitize(message);
    let message: String = message.chars().take(120).collect();
    if message.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {message}")
    }
}

fn check_postgres(url: String) -> Result<(), String> {
    let conn = pg4::Connection::open(&url).map_err(pg_reason)?;
    let rows = conn.query("SELECT 1", &[]).map_err(pg_reason)?;
    match rows.rows.first().and_then(|row| row.first()) {
        Some(pg4::DbValue::Int32(1)) => Ok(()),
        other => Err(format!("unexpected answer to SELECT 1: {other:?}")),
    }
}

fn pg_reason(e: pg4::PgError) -> String {
    match e {
        pg4::PgError::ConnectionFailed(m) => reason("connection failed", &m),
        pg4::PgError::QueryFailed(pg4::QueryError::DbError(d)) => {
            reason("query failed", &d.message)
        }
        pg4::PgError::QueryFailed(pg4::QueryError::Text(t)) => reason("query failed", &t),
        pg4::PgError::BadParameter(m) => reason("bad parameter", &m),
        pg4::PgError::ValueConversionFailed(m) => reason("value conversion failed", &m),
        pg4::PgError::Other(m) => reason("error", &m),
    }
}

fn check_redis(url: String) -> Result<(), String> {
    let conn = redis::Connection::open(&url).map_err(redis_reason)?;
    let reply = conn.execute("PING", &[]).map_err(redis_reason)?;
    match reply.first() {
        Some(RedisResult::Status(s)) if s == "PONG" => Ok(()),
        Some(RedisResult::Binary(b)) if b == b"PONG" => Ok(()),
        other => Err(format!("unexpected answer to PING: {other:?}")),
    }
}

fn redis_reason(e: redis::Error) -> String {
    match e {
        redis::Error::InvalidAddress => "invalid address".to_owned(),
        redis::Error::TooManyConnections => "too many connections".to_owned(),
        redis::Error::TypeError => "type error".to_owned(),
        redis::Error::Other(m) => reason("error", &m),
    }
}
