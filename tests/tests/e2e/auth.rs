//! Accounts and tokens: `/auth/register`, `/auth/login`, `/auth/refresh`, `/auth/logout`,
//! `/.well-known/jwks.json`, and how `/todos` treats bad access tokens.

use std::time::{Duration, Instant};

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use serde_json::{json, Value};

use crate::api::{
    self, app, expect_problem, header, jwt_part, login, new_user, problem_fields, refresh,
    register, spawn_api, unique, TestKey,
};
use crate::harness::HostOptions;

#[tokio::test]
async fn register_creates_an_account_with_a_lower_cased_email() {
    let app = app().await;
    let username = unique("Reg");
    let resp = register(
        &app,
        &username,
        &format!("{username}@Example.COM"),
        "long enough pw",
    )
    .await;
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["username"], username.as_str());
    assert_eq!(
        body["email"],
        format!("{}@example.com", username.to_lowercase())
    );
    assert!(
        body["id"].as_str().is_some_and(|id| id.len() == 36),
        "{body}"
    );
    assert!(body["created_at"].is_string(), "{body}");
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
}

#[tokio::test]
async fn duplicate_username_or_email_is_409_naming_the_field() {
    let app = app().await;
    let username = unique("dup");
    let email = format!("{username}@example.com");
    assert_eq!(
        register(&app, &username, &email, "long enough pw")
            .await
            .status(),
        201
    );

    // Same username in another case, other e-mail.
    let resp = register(
        &app,
        &username.to_uppercase(),
        &format!("other-{email}"),
        "long enough pw",
    )
    .await;
    let body = expect_problem(resp, 409, "conflict").await;
    assert_eq!(problem_fields(&body), ["username"]);

    // Other username, same e-mail in another case.
    let resp = register(
        &app,
        &unique("dup"),
        &email.to_uppercase(),
        "long enough pw",
    )
    .await;
    let body = expect_problem(resp, 409, "conflict").await;
    assert_eq!(problem_fields(&body), ["email"]);
}

#[tokio::test]
async fn register_validation_names_every_failing_field() {
    let app = app().await;
    let resp = app
        .post("/auth/register")
        .json(&json!({"username": "x", "email": "not-an-address", "password": "short", "admin": true}))
        .send()
        .await
        .unwrap();
    let body = expect_problem(resp, 422, "validation").await;
    let mut fields = problem_fields(&body);
    fields.sort();
    assert_eq!(fields, ["admin", "email", "password", "username"], "{body}");

    let resp = app
        .post("/auth/register")
        .json(&json!({"username": "has space", "email": 5}))
        .send()
        .await
        .unwrap();
    let body = expect_problem(resp, 422, "validation").await;
    let mut fields = problem_fields(&body);
    fields.sort();
    assert_eq!(fields, ["email", "password", "username"], "{body}");
}

#[tokio::test]
async fn bodies_must_be_small_well_formed_json() {
    let app = app().await;
    let resp = app
        .post("/auth/login")
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, "malformed-json").await;

    let resp = app
        .post("/auth/login")
        .header("content-type", "text/plain")
        .body("username=a&password=b")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 415, "unsupported-media-type").await;

    let big = json!({"username": "someone", "password": "x".repeat(70 * 1024)});
    let resp = app.post("/auth/login").json(&big).send().await.unwrap();
    expect_problem(resp, 413, "payload-too-large").await;

    let resp = app.get("/auth/login").send().await.unwrap();
    assert_eq!(header(&resp, "allow").as_deref(), Some("POST"));
    expect_problem(resp, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn login_returns_a_token_pair_signed_with_the_published_key() {
    let app = app().await;
    let user = new_user(&app).await;
    let resp = login(&app, &user.username.to_uppercase(), &user.password).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let refresh_token = body["refresh_token"].as_str().unwrap();
    assert!(
        refresh_token.len() >= 43,
        "at least 256 bits: {refresh_token}"
    );

    let token = body["access_token"].as_str().unwrap();
    let jwt_header = jwt_part(token, 0);
    let claims = jwt_part(token, 1);
    assert_eq!(jwt_header["alg"], "EdDSA");
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["iss"], "todo-api");
    assert_eq!(claims["aud"], "todo-api");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900);

    let resp = app.get("/.well-known/jwks.json").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let jwks: Value = resp.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(
        key["kid"], jwt_header["kid"],
        "token kid is published: {jwks}"
    );
    assert!(key.get("d").is_none(), "no private part: {jwks}");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = app().await;
    let user = new_user(&app).await;
    let unknown = unique("nobody");

    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let start = Instant::now();
        let resp = login(&app, &user.username, "wrong password!").await;
        wrong_times.push(start.elapsed());
        let mut body = expect_problem(resp, 401, "invalid-credentials").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);

        let start = Instant::now();
        let resp = login(&app, &unknown, "wrong password!").await;
        unknown_times.push(start.elapsed());
        let mut body = expect_problem(resp, 401, "invalid-credentials").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    // Both paths run one argon2id pass (~100+ ms); a shortcut for unknown users would make
    // them an order of magnitude faster. Compare the fastest of each, interleaved, with a
    // band wide enough for a loaded 2-core machine running other tests in parallel.
    let wrong = wrong_times.iter().min().unwrap().as_secs_f64();
    let unknown = unknown_times.iter().min().unwrap().as_secs_f64();
    let ratio = wrong / unknown;
    assert!(
        (0.25..4.0).contains(&ratio),
        "wrong password {wrong:.3}s vs unknown user {unknown:.3}s"
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = app().await;
    let user = new_user(&app).await;

    let resp = refresh(&app, &user.refresh_token).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let second: Value = resp.json().await.unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second_refresh, user.refresh_token);
    let access = second["access_token"].as_str().unwrap();
    let resp = app.get("/todos").bearer_auth(access).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the new access token works");

    // The first token was rotated: presenting it again is reuse...
    expect_problem(
        refresh(&app, &user.refresh_token).await,
        401,
        "invalid-refresh-token",
    )
    .await;
    // ...which revoked the family, so the current token is dead too.
    expect_problem(
        refresh(&app, &second_refresh).await,
        401,
        "invalid-refresh-token",
    )
    .await;

    // Another session of the same user is unaffected.
    let resp = login(&app, &user.username, &user.password).await;
    let other: Value = resp.json().await.unwrap();
    let resp = refresh(&app, other["refresh_token"].as_str().unwrap()).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let app = app().await;
    let user = new_user(&app).await;
    let resp = app
        .post("/auth/logout")
        .json(&json!({"refresh_token": user.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    expect_problem(
        refresh(&app, &user.refresh_token).await,
        401,
        "invalid-refresh-token",
    )
    .await;

    // Malformed and unknown refresh tokens.
    expect_problem(
        refresh(&app, "not-a-token").await,
        401,
        "invalid-refresh-token",
    )
    .await;
    expect_problem(
        refresh(&app, &"A".repeat(43)).await,
        401,
        "invalid-refresh-token",
    )
    .await;
    let resp = app
        .post("/auth/refresh")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = expect_problem(resp, 422, "validation").await;
    assert_eq!(problem_fields(&body), ["refresh_token"]);
}

#[tokio::test]
async fn bad_access_tokens_are_401() {
    let app = app().await;
    let user = new_user(&app).await;

    let resp = app.get("/todos").send().await.unwrap();
    assert!(header(&resp, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    expect_problem(resp, 401, "invalid-token").await;

    let resp = app
        .get("/todos")
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 401, "invalid-token").await;

    // Tampered: another subject in the payload, original signature.
    let parts: Vec<&str> = user.access_token.split('.').collect();
    let mut claims = jwt_part(&user.access_token, 1);
    claims["sub"] = json!("00000000-0000-4000-8000-000000000000");
    let forged_payload = Base64UrlSafeNoPadding::encode_to_string(claims.to_string()).unwrap();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let resp = app
        .get("/todos")
        .bearer_auth(&tampered)
        .send()
        .await
        .unwrap();
    expect_problem(resp, 401, "invalid-token").await;

    // alg: none, no signature.
    let kid = jwt_part(&user.access_token, 0)["kid"].clone();
    let none_header = Base64UrlSafeNoPadding::encode_to_string(
        json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string(),
    )
    .unwrap();
    let resp = app
        .get("/todos")
        .bearer_auth(format!("{none_header}.{}.", parts[1]))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 401, "invalid-token").await;

    // Well-formed, right kid and claims, but signed with another key.
    let stranger = TestKey::generate(kid.as_str().unwrap());
    let resp = app
        .get("/todos")
        .bearer_auth(stranger.access_token(&user.id, 600))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 401, "invalid-token").await;

    // The genuine token still works (the checks above can fail for the right reason only).
    let resp = app
        .get("/todos")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn expired_tokens_and_foreign_audiences_are_401() {
    let key = TestKey::generate("e2e-key");
    let app = spawn_api(Some(
        HostOptions::new().variable("jwt_signing_key", key.variable()),
    ))
    .await;
    let user = new_user(&app).await;
    assert_eq!(jwt_part(&user.access_token, 0)["kid"], "e2e-key");

    // Control: a token we make ourselves with this key is accepted...
    let resp = app
        .get("/todos")
        .bearer_auth(key.access_token(&user.id, 600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "hand-made valid token");

    // ...but not once it has expired,
    let resp = app
        .get("/todos")
        .bearer_auth(key.access_token(&user.id, -3600))
        .send()
        .await
        .unwrap();
    let body = expect_problem(resp, 401, "invalid-token").await;
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // nor with another audience, nor without exp.
    let now = api::now_seconds();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "e2e-key"});
    for claims in [
        json!({"iss": "todo-api", "aud": "other-api", "sub": user.id, "iat": now, "exp": now + 600}),
        json!({"iss": "someone-else", "aud": "todo-api", "sub": user.id, "iat": now, "exp": now + 600}),
        json!({"iss": "todo-api", "aud": "todo-api", "sub": user.id, "iat": now}),
    ] {
        let resp = app
            .get("/todos")
            .bearer_auth(key.sign(&header, &claims))
            .send()
            .await
            .unwrap();
        expect_problem(resp, 401, "invalid-token").await;
    }
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn without_a_signing_key_token_routes_answer_503() {
    let app = spawn_api(Some(HostOptions::new().variable("jwt_signing_key", ""))).await;
    let username = unique("nokey");
    let resp = register(
        &app,
        &username,
        &format!("{username}@example.com"),
        "long enough pw",
    )
    .await;
    assert_eq!(resp.status().as_u16(), 201, "registering needs no key");
    let body = expect_problem(
        login(&app, &username, "long enough pw").await,
        503,
        "not-configured",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("jwt_signing_key"),
        "{body}"
    );
    expect_problem(
        app.get("/.well-known/jwks.json").send().await.unwrap(),
        503,
        "not-configured",
    )
    .await;
    let resp = app.get("/todos").bearer_auth("a.b.c").send().await.unwrap();
    expect_problem(resp, 503, "not-configured").await;
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn login_is_rate_limited_per_username() {
    let app = spawn_api(Some(
        HostOptions::new().variable("rate_limit_login_username", "3/60"),
    ))
    .await;
    let user = new_user(&app).await; // one login used
    for _ in 0..2 {
        expect_problem(
            login(&app, &user.username, "wrong password!").await,
            401,
            "invalid-credentials",
        )
        .await;
    }
    let resp = login(&app, &user.username, &user.password).await;
    let retry_after: u64 = header(&resp, "retry-after")
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(header(&resp, "ratelimit-remaining").as_deref(), Some("0"));
    assert!(header(&resp, "ratelimit-reset").is_some());
    expect_problem(resp, 429, "rate-limited").await;

    // Another username from the same address is not affected by that counter.
    let other = new_user(&app).await;
    assert!(!other.access_token.is_empty());
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn responses_carry_request_ids_security_headers_and_cors() {
    let app = spawn_api(Some(
        HostOptions::new().variable("cors_allowed_origins", "https://app.example.com"),
    ))
    .await;
    let resp = app
        .get("/.well-known/jwks.json")
        .header("x-request-id", "e2e-request-1")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "x-request-id").as_deref(),
        Some("e2e-request-1")
    );
    assert_eq!(
        header(&resp, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(header(&resp, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        header(&resp, "referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert!(header(&resp, "strict-transport-security").is_some());
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );

    let resp = app.get("/todos").send().await.unwrap();
    assert!(
        header(&resp, "x-request-id").is_some_and(|id| id.len() >= 16),
        "generated id"
    );

    let resp = app
        .request(reqwest::Method::OPTIONS, "/todos")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(header(&resp, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );

    let resp = app
        .request(reqwest::Method::OPTIONS, "/todos")
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(header(&resp, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn argon2_hashing_keeps_login_latency_bounded() {
    // Not a benchmark: a guard that the documented parameters stay usable per request.
    let app = app().await;
    let user = new_user(&app).await;
    let start = Instant::now();
    let resp = login(&app, &user.username, &user.password).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
