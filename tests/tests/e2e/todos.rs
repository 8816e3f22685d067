//! Todos: CRUD, isolation between users, validation, pagination, the Redis list cache
//! (hits, misses, read-your-writes), rate limiting, and serving with Redis down.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::bail;
use reqwest::Response;
use serde_json::{json, Value};

use crate::api::{app, expect_problem, header, new_user, problem_fields, spawn_api, User};
use crate::harness::{eventually, HostOptions, PrivateRedis, TestApp};

async fn create(app: &TestApp, user: &User, body: Value) -> Response {
    app.post("/todos")
        .bearer_auth(&user.access_token)
        .json(&body)
        .send()
        .await
        .expect("POST /todos")
}

async fn create_ok(app: &TestApp, user: &User, title: &str) -> Value {
    let resp = create(app, user, json!({"title": title})).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

async fn list(app: &TestApp, user: &User, query: &str) -> (Option<String>, Value) {
    let resp = app
        .get(&format!("/todos{query}"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .expect("GET /todos");
    let status = resp.status().as_u16();
    let cache = header(&resp, "x-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    (cache, body)
}

fn titles(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn create_read_update_delete() {
    let app = app().await;
    let user = new_user(&app).await;

    let resp = create(&app, &user, json!({"title": "  buy milk  "})).await;
    assert_eq!(resp.status().as_u16(), 201);
    let location = header(&resp, "location").expect("Location");
    let todo: Value = resp.json().await.unwrap();
    assert_eq!(todo["title"], "buy milk", "trimmed");
    assert_eq!(todo["completed"], false);
    assert_eq!(location, format!("/todos/{}", todo["id"].as_str().unwrap()));

    let resp = app
        .get(&location)
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), todo);

    let resp = app
        .patch(&location)
        .bearer_auth(&user.access_token)
        .json(&json!({"completed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(updated["completed"], true);
    assert_eq!(updated["title"], "buy milk");
    assert_ne!(updated["updated_at"], todo["updated_at"]);

    let resp = app
        .patch(&location)
        .bearer_auth(&user.access_token)
        .json(&json!({"title": "buy oat milk"}))
        .send()
        .await
        .unwrap();
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(
        (updated["title"].as_str(), updated["completed"].as_bool()),
        (Some("buy oat milk"), Some(true))
    );

    let resp = app
        .delete(&location)
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = app
        .get(&location)
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, "not-found").await;
    let resp = app
        .delete(&location)
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, "not-found").await;

    let resp = create(
        &app,
        &user,
        json!({"title": "done already", "completed": true}),
    )
    .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["completed"], true);
}

#[tokio::test]
async fn another_users_todo_is_404_for_read_update_and_delete() {
    let app = app().await;
    let owner = new_user(&app).await;
    let intruder = new_user(&app).await;
    let todo = create_ok(&app, &owner, "private").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());

    let resp = app
        .get(&path)
        .bearer_auth(&intruder.access_token)
        .send()
        .await
        .unwrap();
    let read = expect_problem(resp, 404, "not-found").await;
    let resp = app
        .patch(&path)
        .bearer_auth(&intruder.access_token)
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, "not-found").await;
    let resp = app
        .delete(&path)
        .bearer_auth(&intruder.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, "not-found").await;

    // Same answer as for an id that does not exist at all: nothing leaks.
    let resp = app
        .get("/todos/00000000-0000-4000-8000-000000000000")
        .bearer_auth(&intruder.access_token)
        .send()
        .await
        .unwrap();
    let missing = expect_problem(resp, 404, "not-found").await;
    assert_eq!(read["detail"], missing["detail"]);

    let (_, page) = list(&app, &intruder, "").await;
    assert!(titles(&page).is_empty());
    // The owner's todo is untouched.
    let resp = app
        .get(&path)
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["title"], "private");
}

#[tokio::test]
async fn invalid_input_is_rejected_with_problem_details() {
    let app = app().await;
    let user = new_user(&app).await;

    let body = expect_problem(
        create(&app, &user, json!({"title": "   "})).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(problem_fields(&body), ["title"]);
    let long = "t".repeat(256);
    let body = expect_problem(
        create(&app, &user, json!({"title": long})).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(problem_fields(&body), ["title"]);
    let body = expect_problem(
        create(
            &app,
            &user,
            json!({"title": "ok", "completed": "yes", "owner": "me"}),
        )
        .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(problem_fields(&body), ["completed", "owner"]);
    let body = expect_problem(create(&app, &user, json!({})).await, 422, "validation").await;
    assert_eq!(problem_fields(&body), ["title"]);

    let resp = app
        .post("/todos")
        .bearer_auth(&user.access_token)
        .header("content-type", "application/json")
        .body("{\"title\": \"unterminated")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, "malformed-json").await;
    let resp = app
        .post("/todos")
        .bearer_auth(&user.access_token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("title=x")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 415, "unsupported-media-type").await;
    let resp = create(&app, &user, json!({"title": "x".repeat(65 * 1024)})).await;
    expect_problem(resp, 413, "payload-too-large").await;

    let todo = create_ok(&app, &user, "patch me").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());
    let resp = app
        .patch(&path)
        .bearer_auth(&user.access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 422, "validation").await;
    let resp = app
        .patch(&path)
        .bearer_auth(&user.access_token)
        .json(&json!({"completed": null}))
        .send()
        .await
        .unwrap();
    let body = expect_problem(resp, 422, "validation").await;
    assert_eq!(problem_fields(&body), ["completed"]);

    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?completed=maybe",
        "?cursor=bogus",
        "?sort=asc",
    ] {
        let resp = app
            .get(&format!("/todos{query}"))
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap();
        let body = expect_problem(resp, 400, "invalid-parameter").await;
        assert_eq!(problem_fields(&body).len(), 1, "{query}: {body}");
    }

    let resp = app
        .get("/todos/not-a-uuid")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, "not-found").await;
    let resp = app
        .put(&path)
        .bearer_auth(&user.access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn pages_cover_every_todo_once_newest_first() {
    let app = app().await;
    let user = new_user(&app).await;
    let mut created = Vec::new();
    for i in 0..25 {
        let completed = i % 3 == 0;
        let resp = create(
            &app,
            &user,
            json!({"title": format!("todo {i:02}"), "completed": completed}),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 201);
        created.push(format!("todo {i:02}"));
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=10&cursor={c}"),
            None => "?limit=10".to_string(),
        };
        let (_, page) = list(&app, &user, &query).await;
        pages += 1;
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, expected, "newest first, no duplicates, no gaps");

    let (_, default_page) = list(&app, &user, "").await;
    assert_eq!(default_page["items"].as_array().unwrap().len(), 20);

    let (_, done) = list(&app, &user, "?completed=true&limit=100").await;
    let done = titles(&done);
    assert_eq!(done.len(), 9);
    let (_, open) = list(&app, &user, "?completed=false&limit=100").await;
    let open = titles(&open);
    assert_eq!(open.len(), 16);
    let all: HashSet<_> = done.iter().chain(open.iter()).collect();
    assert_eq!(all.len(), 25);
}

#[tokio::test]
async fn list_cache_hits_and_never_serves_a_list_older_than_a_write() {
    let app = app().await;
    let user = new_user(&app).await;
    let first = create_ok(&app, &user, "first").await;
    let path = format!("/todos/{}", first["id"].as_str().unwrap());

    let (cache, page) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(titles(&page), ["first"]);
    let (cache, again) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(again, page);

    // Create.
    create_ok(&app, &user, "second").await;
    let (cache, page) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(titles(&page), ["second", "first"]);
    assert_eq!(list(&app, &user, "").await.0.as_deref(), Some("hit"));

    // Update.
    let resp = app
        .patch(&path)
        .bearer_auth(&user.access_token)
        .json(&json!({"title": "first, renamed", "completed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (cache, page) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(titles(&page), ["second", "first, renamed"]);
    assert_eq!(page["items"][1]["completed"], true);
    let (_, done) = list(&app, &user, "?completed=true").await;
    assert_eq!(titles(&done), ["first, renamed"]);

    // Delete.
    let resp = app
        .delete(&path)
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (cache, page) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(titles(&page), ["second"]);
    let (_, done) = list(&app, &user, "?completed=true").await;
    assert!(
        titles(&done).is_empty(),
        "a cached filtered page must not survive the delete"
    );

    // Users never see each other's cached pages.
    let other = new_user(&app).await;
    let (_, page) = list(&app, &other, "").await;
    assert!(titles(&page).is_empty());
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn todo_routes_are_rate_limited_per_user() {
    let app = spawn_api(Some(HostOptions::new().variable("rate_limit_api", "5/60"))).await;
    let user = new_user(&app).await;
    for i in 0..5 {
        let resp = app
            .get("/todos")
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
        assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(
            header(&resp, "ratelimit-remaining"),
            Some((4 - i).to_string())
        );
    }
    let resp = create(&app, &user, json!({"title": "one too many"})).await;
    let retry_after: u64 = header(&resp, "retry-after")
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header(&resp, "ratelimit-remaining").as_deref(), Some("0"));
    assert!(header(&resp, "ratelimit-reset").is_some());
    expect_problem(resp, 429, "rate-limited").await;

    // Per user: someone else is not limited by it.
    let other = new_user(&app).await;
    let resp = app
        .get("/todos")
        .bearer_auth(&other.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn todos_are_listed_and_created_while_redis_is_down() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_api(Some(HostOptions::new().redis(&redis))).await;
    let user = new_user(&app).await;
    create_ok(&app, &user, "before the outage").await;
    list(&app, &user, "").await;
    assert_eq!(list(&app, &user, "").await.0.as_deref(), Some("hit"));

    redis.stop().await;
    let (cache, page) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("miss"), "served from PostgreSQL");
    assert_eq!(titles(&page), ["before the outage"]);
    create_ok(&app, &user, "during the outage").await;
    let (_, page) = list(&app, &user, "").await;
    assert_eq!(titles(&page), ["during the outage", "before the outage"]);
    // Logging in still works without Redis (the limiter fails open).
    let resp = crate::api::login(&app, &user.username, &user.password).await;
    assert_eq!(resp.status().as_u16(), 200);

    redis.restart().await;
    let page = eventually(Duration::from_secs(30), "cache to work again", || async {
        let (cache, page) = list(&app, &user, "").await;
        if cache.as_deref() != Some("hit") {
            bail!("x-cache {cache:?}");
        }
        Ok::<Value, anyhow::Error>(page)
    })
    .await;
    assert_eq!(titles(&page), ["during the outage", "before the outage"]);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_cached_page_is_not_served_after_a_write_made_while_redis_was_away() {
    // Redis keeps its data across the outage here (a network blip, not a restart): the
    // page cached before the write must still not be served after it.
    let mut redis = PrivateRedis::start().await;
    let app = spawn_api(Some(HostOptions::new().redis(&redis))).await;
    let user = new_user(&app).await;
    create_ok(&app, &user, "one").await;
    list(&app, &user, "").await;
    assert_eq!(list(&app, &user, "").await.0.as_deref(), Some("hit"));

    // Point a second app (same database, same key prefix is not needed: the version lives
    // in PostgreSQL) at a dead Redis and write through it.
    let dead = PrivateRedis::start().await;
    let dead_host = dead.host();
    let dead_url = dead.url();
    drop(dead);
    let writer = spawn_api(Some(
        HostOptions::new()
            .variable("redis_url", dead_url)
            .variable("redis_host", dead_host),
    ))
    .await;
    let resp = writer
        .post("/todos")
        .bearer_auth(&user.access_token)
        .json(&json!({"title": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    let (cache, page) = list(&app, &user, "").await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(titles(&page), ["two", "one"]);
    redis.stop().await;
}
