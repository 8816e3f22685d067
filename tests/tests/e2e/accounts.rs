//! Accounts (issue 12, item 4): `GET /me`, `DELETE /me` with the password (the account,
//! its todos and its tokens go in one statement; it can no longer log in and its access
//! tokens are 401), and that a password change and logout-all end every session.

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{app, login, new_user, refresh, spawn_api, Client, Reply, User};
use crate::harness::{HostOptions, TestApp, TestDatabase};

async fn delete_me(app: &TestApp, token: &str, body: &Value) -> Reply {
    Reply::send(
        app.request(Method::DELETE, "/me")
            .bearer_auth(token)
            .json(body),
    )
    .await
}

async fn second_session(app: &TestApp, user: &User) -> (String, String) {
    let tokens = login(app, &user.username, &user.password)
        .await
        .expect_status(200);
    let text = |name: &str| tokens[name].as_str().expect(name).to_string();
    (text("access_token"), text("refresh_token"))
}

#[tokio::test]
async fn get_me_returns_the_callers_account() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    let me = user.get("/me").await.expect_status(200);
    assert_eq!(me["id"], user.user.id.as_str());
    assert_eq!(me["username"], user.user.username.as_str());
    assert_eq!(
        me["email"],
        format!("{}@example.com", user.user.username).as_str()
    );
    assert!(me["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        me.as_object().unwrap().len(),
        4,
        "no hash, no internals: {me}"
    );
    Reply::send(app.get("/me"))
        .await
        .problem(401, "invalid-token");
    Reply::send(
        app.request(Method::PUT, "/me")
            .bearer_auth(&user.user.access_token),
    )
    .await
    .problem(405, "method-not-allowed");
}

#[tokio::test]
async fn deleting_the_account_needs_the_right_password() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    let token = &user.user.access_token;
    delete_me(&app, token, &json!({"password": "not my password"}))
        .await
        .problem(401, "invalid-credentials");
    let body = delete_me(&app, token, &json!({"password": 5, "extra": 1}))
        .await
        .problem(422, "validation");
    assert_eq!(crate::api::problem_fields(&body), ["password", "extra"]);
    // Nothing happened.
    user.get("/me").await.expect_status(200);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_deleted_account_loses_its_todos_and_tokens_and_cannot_log_in() {
    let db = TestDatabase::create().await;
    let app = spawn_api(Some(HostOptions::new().database(&db))).await;
    let user = new_user(&app).await;
    let keep = new_user(&app).await; // another account, untouched
    let client = Client {
        app: &app,
        user: user.clone(),
    };
    let todo = client
        .post_json("/todos", &json!({"title": "mine"}))
        .await
        .expect_status(201);
    Reply::send(
        client
            .request(Method::POST, "/todos")
            .header("idempotency-key", "k1")
            .json(&json!({"title": "keyed"})),
    )
    .await
    .expect_status(201);
    Client {
        app: &app,
        user: keep.clone(),
    }
    .post_json("/todos", &json!({"title": "theirs"}))
    .await
    .expect_status(201);
    let (other_access, other_refresh) = second_session(&app, &user).await;
    let count = |table: &str, column: &str, id: &str| {
        format!("SELECT count(*) FROM {table} WHERE {column} = '{id}'")
    };
    assert_eq!(
        db.query(&count("todos", "user_id", &user.id))
            .await
            .unwrap(),
        "2"
    );

    let reply = delete_me(
        &app,
        &user.access_token,
        &json!({"password": user.password}),
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);

    // Everything of the account is gone; the other account's todo is not.
    for (table, column) in [
        ("users", "id"),
        ("todos", "user_id"),
        ("refresh_tokens", "user_id"),
        ("refresh_token_families", "user_id"),
        ("idempotency_keys", "user_id"),
    ] {
        assert_eq!(
            db.query(&count(table, column, &user.id)).await.unwrap(),
            "0",
            "{table}"
        );
    }
    assert_eq!(
        db.query(&count("todos", "user_id", &keep.id))
            .await
            .unwrap(),
        "1"
    );

    // No login, no refresh, and both sessions' access tokens are 401 on every route.
    login(&app, &user.username, &user.password)
        .await
        .problem(401, "invalid-credentials");
    for token in [&user.refresh_token, &other_refresh] {
        refresh(&app, token)
            .await
            .problem(401, "invalid-refresh-token");
    }
    let todo_path = format!("/todos/{}", todo["id"].as_str().unwrap());
    for token in [&user.access_token, &other_access] {
        for path in ["/todos", todo_path.as_str(), "/me"] {
            Reply::send(app.get(path).bearer_auth(token))
                .await
                .problem(401, "invalid-token");
        }
        delete_me(&app, token, &json!({"password": user.password}))
            .await
            .problem(401, "invalid-token");
    }
    // The username is free again.
    crate::api::register(
        &app,
        &user.username,
        &format!("{}@example.com", user.username),
        "another good secret",
    )
    .await
    .expect_status(201);
}

#[tokio::test]
async fn a_password_change_ends_every_sessions_refresh_token() {
    let app = app().await;
    let user = new_user(&app).await;
    let (_, other_refresh) = second_session(&app, &user).await;
    let reply = Reply::send(
        app.post("/auth/password")
            .bearer_auth(&user.access_token)
            .json(
                &json!({"current_password": user.password, "new_password": "a much better secret"}),
            ),
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    for token in [&user.refresh_token, &other_refresh] {
        refresh(&app, token)
            .await
            .problem(401, "invalid-refresh-token");
    }
}
