//! The `health` component.
//!
//! - `GET /health`: liveness. `200 {"status":"ok"}`, touches nothing, logs nothing (probes
//!   hit it every few seconds; a log line each would drown the useful ones).
//! - `GET /health/ready`: readiness. Runs `SELECT 1` on PostgreSQL (`db_url`) and `PING` on
//!   Redis (`redis_url`) through the host, and answers `200` with
//!   `{"status":"ready","checks":{"postgres":{"status":"up","latency_ms":N},"redis":{...}}}`
//!   or `503` with `"status":"unavailable"` and the failing check as
//!   `{"status":"down","error":"<short reason>"}`. Reasons are sanitised: no URLs with
//!   credentials, no passwords. Failures are logged as one JSON line.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p health`.

use std::time::Instant;

use common::log;
use serde_json::{json, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::RedisResult;
use spin_sdk::{pg4, redis, variables};

#[http_component]
fn handle(req: Request) -> Response {
    let body_and_status = match (req.method(), req.path()) {
        (Method::Get | Method::Head, "/health") => Ok((200, json!({"status": "ok"}))),
        (Method::Get | Method::Head, "/health/ready") => Ok(readiness()),
        (_, "/health" | "/health/ready") => Err((405, "GET")),
        _ => Err((404, "")),
    };
    match body_and_status {
        Ok((status, body)) => respond(status, "application/json", body.to_string(), None),
        Err((405, allow)) => respond(
            405,
            "application/problem+json",
            problem(405, "method-not-allowed", "Method not allowed"),
            Some(allow),
        ),
        Err(_) => respond(
            404,
            "application/problem+json",
            problem(404, "not-found", "Not found"),
            None,
        ),
    }
}

fn problem(status: u16, slug: &str, title: &str) -> String {
    json!({
        "type": format!("{}{slug}", common::error::PROBLEM_TYPE_PREFIX),
        "title": title,
        "status": status,
        "detail": title,
    })
    .to_string()
}

fn respond(status: u16, content_type: &str, body: String, allow: Option<&str>) -> Response {
    let mut builder = Response::builder();
    builder
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff");
    if let Some(allow) = allow {
        builder.header("allow", allow);
    }
    builder.body(body).build()
}

/// A check's result: `Ok(latency_ms)` or `Err(short reason)`.
type Check = Result<f64, String>;

fn readiness() -> (u16, Value) {
    let postgres = timed(check_postgres);
    let redis = timed(check_redis);
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
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "postgres": describe(&postgres),
            "redis": describe(&redis),
        },
    });
    (if ready { 200 } else { 503 }, body)
}

fn describe(check: &Check) -> Value {
    match check {
        Ok(latency_ms) => json!({"status": "up", "latency_ms": latency_ms}),
        Err(reason) => json!({"status": "down", "error": reason}),
    }
}

fn timed(check: fn() -> Result<(), String>) -> Check {
    let start = Instant::now();
    check()?;
    // Three decimals: microsecond resolution is all a loopback round trip needs.
    Ok((start.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0)
}

fn variable(name: &str) -> Result<String, String> {
    match variables::get(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("not configured (variable {name})")),
    }
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

fn check_postgres() -> Result<(), String> {
    let url = variable("db_url")?;
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

fn check_redis() -> Result<(), String> {
    let url = variable("redis_url")?;
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
