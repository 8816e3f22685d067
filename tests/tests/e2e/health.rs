//! `/health` (liveness) and `/health/ready` (readiness: PostgreSQL and Redis reachable).
//! The public readiness answer is a bare status; which dependency failed and why is on
//! edge-host's admin listener (`--metrics-listen`, `GET /ready`) only (issue 13).

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use serde_json::{json, Value};

use crate::harness::{eventually, HostOptions, PrivateRedis, TestApp};

/// How long the app may take to notice that Redis went away or came back.
const STATE_CHANGE_LIMIT: Duration = Duration::from_secs(30);

async fn get_json(app: &TestApp, path: &str) -> Result<(u16, Value)> {
    let response = app.get(path).send().await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    let json = serde_json::from_str(&body).map_err(|e| {
        anyhow::anyhow!("{path} answered {status} with non-JSON body {body:?}: {e}")
    })?;
    Ok((status, json))
}

/// Host options with the admin listener on a free port.
fn with_admin(options: HostOptions) -> HostOptions {
    options.arg("--metrics-listen").arg("127.0.0.1:0")
}

/// The admin listener's per-dependency readiness (`GET /ready`).
async fn admin_ready(app: &TestApp) -> Result<(u16, Value)> {
    let url = app
        .metrics_url()
        .ok_or_else(|| anyhow::anyhow!("the host has no admin listener"))?;
    let response = app.client.get(format!("{url}/ready")).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// The public readiness answer carries nothing but the status: no check, no error text.
fn assert_bare(body: &Value, status: &str) {
    assert_eq!(body, &json!({ "status": status }), "public readiness body");
}

/// Checks one dependency in an admin readiness body: `{"status":"up","latency_ms":N}`.
fn assert_up(body: &Value, dependency: &str) {
    let check = &body[dependency][0];
    assert_eq!(check["status"], "up", "{dependency} in {body}");
    assert!(
        check["latency_ms"].is_number(),
        "{dependency} latency_ms should be a number in {body}"
    );
}

/// Waits until readiness answers 503 (after Redis was stopped); returns that body.
async fn redis_reported_down(app: &TestApp) -> Value {
    eventually(
        STATE_CHANGE_LIMIT,
        "readiness to report Redis down",
        || async {
            let (status, body) = get_json(app, "/health/ready").await?;
            if status != 503 {
                bail!("status {status}, body {body}");
            }
            Ok(body)
        },
    )
    .await
}

/// Checks an unavailable admin readiness body whose `dependency` is down with an error
/// message.
fn assert_down(body: &Value, dependency: &str) {
    assert_eq!(body["status"], "unavailable", "body {body}");
    let check = &body[dependency][0];
    assert_eq!(check["status"], "down", "{dependency} in {body}");
    assert!(
        check["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the failing {dependency} check should carry an error message: {body}"
    );
}

/// A readiness answer that says everything is up.
fn ready(status: u16, body: &Value) -> Result<()> {
    ensure!(status == 200, "status {status}, body {body}");
    ensure!(body["status"] == "ready", "body {body}");
    Ok(())
}

#[tokio::test]
async fn liveness_answers_ok_without_touching_dependencies() {
    let app = TestApp::spawn().await;

    let response = app.get("/health").send().await.expect("GET /health");

    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}"
    );
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn readiness_answers_a_bare_ready_status() {
    let app = TestApp::spawn().await;

    let (status, body) = get_json(&app, "/health/ready")
        .await
        .expect("GET /health/ready");

    assert_eq!(status, 200, "body {body}");
    assert_bare(&body, "ready");
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn the_admin_listener_reports_postgres_and_redis_up_with_latency() {
    let app = TestApp::spawn_with(with_admin(HostOptions::new())).await;
    let (status, body) = get_json(&app, "/health/ready").await.unwrap();
    ready(status, &body).unwrap();

    let (status, body) = admin_ready(&app)
        .await
        .expect("GET /ready on the admin listener");

    assert_eq!(status, 200, "body {body}");
    assert_eq!(body["status"], "ready", "body {body}");
    assert_up(&body, "postgres");
    assert_up(&body, "redis");
    // The admin port is not the app's, and the app's port has no /ready.
    assert_ne!(app.metrics_url(), Some(app.address.as_str()));
    assert_eq!(
        app.get("/ready").send().await.unwrap().status().as_u16(),
        404
    );
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn readiness_is_503_naming_redis_while_it_is_down_and_200_after_it_restarts() {
    let mut redis = PrivateRedis::start().await;
    let app = TestApp::spawn_with(with_admin(HostOptions::new().redis(&redis))).await;
    let (status, body) = get_json(&app, "/health/ready")
        .await
        .expect("GET /health/ready");
    ready(status, &body).expect("ready before Redis stops");

    redis.stop().await;
    let body = redis_reported_down(&app).await;
    assert_bare(&body, "unavailable");
    let (status, admin) = admin_ready(&app).await.expect("admin readiness");
    assert_eq!(status, 503, "{admin}");
    assert_down(&admin, "redis");
    assert_up(&admin, "postgres");

    redis.restart().await;
    eventually(
        STATE_CHANGE_LIMIT,
        "readiness to recover after Redis restarts",
        || async {
            let (status, body) = get_json(&app, "/health/ready").await?;
            ready(status, &body)?;
            let (status, admin) = admin_ready(&app).await?;
            ensure!(status == 200, "admin {status} {admin}");
            assert_up(&admin, "redis");
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn readiness_does_not_leak_connection_details_when_redis_is_down() {
    // The failing dependency's own address must hold a secret, or the test could not
    // see a leak of it.
    let redis_password = format!("leak-canary-{}", std::process::id());
    let mut redis = PrivateRedis::start_with_password(&redis_password).await;
    let app = TestApp::spawn_with(with_admin(HostOptions::new().redis(&redis))).await;
    // Ready first: the app really talks to Redis through the address with the secret.
    let (status, body) = get_json(&app, "/health/ready").await.unwrap();
    assert_eq!(status, 200, "{body}");
    redis.stop().await;

    let body = redis_reported_down(&app).await;
    // No error string at all reaches an anonymous caller, only the status...
    assert_bare(&body, "unavailable");
    // ...while the admin listener says why, and even there without the secret.
    let (_, admin) = admin_ready(&app).await.expect("admin readiness");
    assert_down(&admin, "redis");

    let text = format!("{body} {admin}");
    assert!(
        !text.contains(&redis_password) && !text.contains(&redis.url()),
        "the Redis address or its password leaked: {text}"
    );
    let password = crate::harness::service_setting("DATABASE_URL")
        .ok()
        .and_then(|url| password_of(&url));
    if let Some(password) = password {
        assert!(
            !text.contains(&password),
            "the database password leaked: {text}"
        );
    }
}

/// The password in a `postgres://user:password@host/db` URL.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_string()).filter(|p| !p.is_empty())
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn readiness_is_503_naming_postgres_when_it_is_unreachable() {
    // A loopback port nothing listens on: connecting fails at once.
    let port = crate::harness::free_port().expect("a free port");
    let options = HostOptions::new()
        .variable(
            "db_url",
            format!("postgres://todo:unused@127.0.0.1:{port}/todo"),
        )
        .variable("db_host", format!("127.0.0.1:{port}"));
    let app = TestApp::spawn_with(with_admin(options)).await;

    let (status, body) = get_json(&app, "/health/ready")
        .await
        .expect("GET /health/ready");

    assert_eq!(status, 503, "body {body}");
    assert_bare(&body, "unavailable");
    let (status, admin) = admin_ready(&app).await.expect("admin readiness");
    assert_eq!(status, 503, "{admin}");
    assert_down(&admin, "postgres");
    assert!(
        !admin.to_string().contains("unused"),
        "the password must not appear: {admin}"
    );
    assert_up(&admin, "redis");
}
