//! Helpers shared by the Todo API tests (`auth.rs`, `todos.rs`): an app of the test's own,
//! fresh users, problem+json checks, and hand-made tokens (built here with
//! `ed25519-compact`, independently of the code under test).

#![allow(dead_code)] // Each topic module uses a different part.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use ed25519_compact::{KeyPair, Seed};
use reqwest::Response;
use serde_json::{json, Value};

use crate::harness::{external_base_url, HostOptions, TestApp};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (in this run or an earlier one against the same database) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}{:x}{:x}{}",
        std::process::id() & 0xffff,
        nanos & 0xff_ffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An app of this test's own, with its own Redis key prefix (so rate-limit counters and
/// cached pages of other tests are invisible to it) and `extra` variables. Under `BASE_URL`
/// it returns the external app when no variables are needed; a test that needs them cannot
/// run there (it is `#[ignore]`d, and fails when run anyway).
pub async fn spawn_api(extra: Option<HostOptions>) -> TestApp {
    if extra.is_none() && external_base_url().is_some() {
        return TestApp::spawn().await;
    }
    let options = extra
        .unwrap_or_default()
        .variable("redis_key_prefix", unique("e2e"));
    TestApp::spawn_with(options).await
}

/// An app of this test's own with default settings (also works under `BASE_URL`).
pub async fn app() -> TestApp {
    spawn_api(None).await
}

/// A registered user and their first token pair.
pub struct User {
    pub username: String,
    pub password: String,
    pub id: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub async fn register(app: &TestApp, username: &str, email: &str, password: &str) -> Response {
    app.post("/auth/register")
        .json(&json!({"username": username, "email": email, "password": password}))
        .send()
        .await
        .expect("POST /auth/register")
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> Response {
    app.post("/auth/login")
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("POST /auth/login")
}

pub async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post("/auth/refresh")
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .expect("POST /auth/refresh")
}

/// Registers and logs in a fresh user.
pub async fn new_user(app: &TestApp) -> User {
    let username = unique("u");
    let password = "correct horse battery".to_string();
    let email = format!("{username}@example.com");
    let resp = register(app, &username, &email, &password).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("register body");
    assert_eq!(status, 201, "register: {body}");
    let resp = login(app, &username, &password).await;
    let status = resp.status().as_u16();
    let tokens: Value = resp.json().await.expect("login body");
    assert_eq!(status, 200, "login: {tokens}");
    User {
        username,
        password,
        id: body["id"].as_str().expect("id").to_string(),
        access_token: tokens["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        refresh_token: tokens["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
    }
}

/// Header value of a response, as a string.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Asserts a problem+json response with `status` and problem `slug`; returns the body.
pub async fn expect_problem(resp: Response, status: u16, slug: &str) -> Value {
    let got = resp.status().as_u16();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "expected {status} {slug}, got {got}: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type {content_type:?} for {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("problem body is JSON");
    assert_eq!(
        body["type"],
        format!("urn:todo-api:problem:{slug}"),
        "problem type in {body}"
    );
    assert_eq!(body["status"], status, "status member in {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The field names in a problem's `errors`.
pub fn problem_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An Ed25519 key of the test's own, in the `jwt_signing_key` format.
pub struct TestKey {
    pub kid: String,
    key_pair: KeyPair,
}

impl TestKey {
    pub fn generate(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            key_pair: KeyPair::from_seed(Seed::generate()),
        }
    }

    /// The value for the `jwt_signing_key` variable.
    pub fn variable(&self) -> String {
        format!(
            "ed25519:{}:{}",
            self.kid,
            Base64UrlSafeNoPadding::encode_to_string(&self.key_pair[..]).expect("base64")
        )
    }

    /// A compact JWS with this key over `header` and `claims` (anything we like).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(claims));
        let signature = self.key_pair.sk.sign(signing_input.as_bytes(), None);
        format!(
            "{signing_input}.{}",
            Base64UrlSafeNoPadding::encode_to_string(signature.as_ref()).expect("base64")
        )
    }

    /// An access token as the app would issue it, expiring `exp_offset` seconds from now.
    pub fn access_token(&self, user_id: &str, exp_offset: i64) -> String {
        let now = now_seconds();
        self.sign(
            &json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}),
            &json!({
                "iss": "todo-api", "aud": "todo-api", "sub": user_id,
                "iat": now.min(now + exp_offset) - 60, "exp": now + exp_offset,
            }),
        )
    }
}

fn b64(value: &Value) -> String {
    Base64UrlSafeNoPadding::encode_to_string(value.to_string()).expect("base64")
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Decodes a JWT's header or payload (part 0 or 1) without verifying anything.
pub fn jwt_part(token: &str, part: usize) -> Value {
    let encoded = token.split('.').nth(part).expect("a JWT has three parts");
    let bytes = Base64UrlSafeNoPadding::decode_to_vec(encoded, None).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
