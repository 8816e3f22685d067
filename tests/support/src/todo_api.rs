//! The Todo API as its end-to-end tests use it: an app of the test's own, fresh users and
//! their authenticated [`Client`], whole answers ([`Reply`]) with problem+json checks, and
//! hand-made tokens (built here with `ed25519-compact`, independently of the code under
//! test).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use ed25519_compact::{KeyPair, Seed};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

use crate::app::{external_base_url, HostOptions, TestApp};

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
#[derive(Clone)]
pub struct User {
    pub username: String,
    pub password: String,
    pub id: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// A response read to its end: status, headers, and the body as JSON (`Null` when empty,
/// the text as a JSON string when it is not JSON).
pub struct Reply {
    pub status: u16,
    headers: reqwest::header::HeaderMap,
    pub body: Value,
    text: String,
}

impl Reply {
    /// Sends `request` and reads the whole answer.
    pub async fn send(request: RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("sending the request")).await
    }

    pub async fn read(resp: Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("reading the body");
        let body = match text.trim() {
            "" => Value::Null,
            trimmed => {
                serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(text.clone()))
            }
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// A header value, as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Asserts the status; returns the body.
    pub fn expect_status(self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected {status}, got: {}", self.text);
        self.body
    }

    /// Asserts a problem+json answer with `status` and problem `slug`; returns the body.
    pub fn problem(self, status: u16, slug: &str) -> Value {
        let text = &self.text;
        assert_eq!(
            self.status, status,
            "expected {status} {slug}, got {}: {text}",
            self.status
        );
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "content-type {content_type:?} for {text}"
        );
        let body: Value = serde_json::from_str(text).expect("problem body is JSON");
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

    /// Asserts a 429 `rate-limited` problem with a `Retry-After` of at most a minute and
    /// no requests left; returns the body.
    pub fn rate_limited(self) -> Value {
        let retry_after: u64 = self
            .header("retry-after")
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        assert_eq!(self.header("ratelimit-remaining").as_deref(), Some("0"));
        assert!(self.header("ratelimit-reset").is_some());
        self.problem(429, "rate-limited")
    }
}

/// A signed-in user's view of the app: every request carries their access token.
pub struct Client<'a> {
    pub app: &'a TestApp,
    pub user: User,
}

impl<'a> Client<'a> {
    /// Registers and logs in a fresh user.
    pub async fn new_user(app: &'a TestApp) -> Client<'a> {
        Client {
            app,
            user: new_user(app).await,
        }
    }

    /// The same user, talking to another app (one on the same database).
    pub fn on<'b>(&self, app: &'b TestApp) -> Client<'b> {
        Client {
            app,
            user: self.user.clone(),
        }
    }

    /// A request with the user's bearer token, to send with [`Reply::send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app
            .request(method, path)
            .bearer_auth(&self.user.access_token)
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        Reply::send(self.request(Method::DELETE, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        Reply::send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Reply {
        Reply::send(self.request(Method::PATCH, path).json(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        Reply::send(self.request(Method::PUT, path).json(body)).await
    }
}

/// `request` with a raw body of the given content type (for malformed or non-JSON bodies).
pub async fn send_raw(request: RequestBuilder, content_type: &str, body: &str) -> Reply {
    Reply::send(
        request
            .header("content-type", content_type)
            .body(body.to_string()),
    )
    .await
}

pub async fn register(app: &TestApp, username: &str, email: &str, password: &str) -> Reply {
    let body = json!({"username": username, "email": email, "password": password});
    Reply::send(app.post("/auth/register").json(&body)).await
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password});
    Reply::send(app.post("/auth/login").json(&body)).await
}

pub async fn refresh(app: &TestApp, refresh_token: &str) -> Reply {
    let body = json!({"refresh_token": refresh_token});
    Reply::send(app.post("/auth/refresh").json(&body)).await
}

/// Registers and logs in a fresh user.
pub async fn new_user(app: &TestApp) -> User {
    let username = unique("u");
    let password = "correct horse battery".to_string();
    let email = format!("{username}@example.com");
    let account = register(app, &username, &email, &password)
        .await
        .expect_status(201);
    let tokens = login(app, &username, &password).await.expect_status(200);
    let text = |body: &Value, name: &str| body[name].as_str().expect(name).to_string();
    User {
        id: text(&account, "id"),
        access_token: text(&tokens, "access_token"),
        refresh_token: text(&tokens, "refresh_token"),
        username,
        password,
    }
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
