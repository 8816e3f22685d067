//! Conditional requests (issue 12, item 2): `ETag` on every todo and list response,
//! `If-None-Match` → 304, and `If-Match` on `PATCH`/`DELETE` → 412 when the todo changed
//! since the client read it (optimistic concurrency: no lost update between clients).

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{app, Client, Reply};

fn path_of(todo: &Value) -> String {
    format!("/todos/{}", todo["id"].as_str().expect("id"))
}

async fn patch_if_match(client: &Client<'_>, path: &str, etag: &str, body: Value) -> Reply {
    Reply::send(
        client
            .request(Method::PATCH, path)
            .header("if-match", etag)
            .json(&body),
    )
    .await
}

async fn get_if_none_match(client: &Client<'_>, path: &str, etag: &str) -> Reply {
    Reply::send(
        client
            .request(Method::GET, path)
            .header("if-none-match", etag),
    )
    .await
}

#[tokio::test]
async fn two_clients_updating_the_same_todo_the_stale_one_gets_412_and_nothing_is_lost() {
    let app = app().await;
    let alice = Client::new_user(&app).await;
    // The same account on a second device: its own login, its own token.
    let tokens = crate::api::login(&app, &alice.user.username, &alice.user.password)
        .await
        .expect_status(200);
    let mut other = alice.user.clone();
    other.access_token = tokens["access_token"].as_str().unwrap().to_string();
    let phone = Client {
        app: &app,
        user: other,
    };

    let created = alice
        .post_json("/todos", &json!({"title": "plan trip"}))
        .await;
    let etag_created = created.header("etag").expect("ETag on 201");
    let path = path_of(&created.expect_status(201));

    // Both clients read the same version.
    let read_a = alice.get(&path).await;
    let read_b = phone.get(&path).await;
    let (tag_a, tag_b) = (
        read_a.header("etag").unwrap(),
        read_b.header("etag").unwrap(),
    );
    assert_eq!(tag_a, etag_created);
    assert_eq!(tag_a, tag_b);

    // Alice writes first and wins; her answer carries the new tag.
    let won = patch_if_match(&alice, &path, &tag_a, json!({"title": "plan trip to Rome"})).await;
    let new_tag = won.header("etag").expect("ETag on 200");
    assert_ne!(new_tag, tag_a);
    assert_eq!(won.expect_status(200)["title"], "plan trip to Rome");

    // The phone still holds the old tag: 412, and its change is not applied.
    patch_if_match(&phone, &path, &tag_b, json!({"completed": true}))
        .await
        .problem(412, "precondition-failed");
    let delete_stale = Reply::send(
        phone
            .request(Method::DELETE, &path)
            .header("if-match", &tag_b),
    )
    .await;
    delete_stale.problem(412, "precondition-failed");
    let now = phone.get(&path).await;
    assert_eq!(now.header("etag").as_deref(), Some(new_tag.as_str()));
    let now = now.expect_status(200);
    assert_eq!(
        (now["title"].as_str(), now["completed"].as_bool()),
        (Some("plan trip to Rome"), Some(false)),
        "nothing lost, nothing half-applied"
    );

    // After re-reading, the phone's write goes through.
    patch_if_match(&phone, &path, &new_tag, json!({"completed": true}))
        .await
        .expect_status(200);
    // A tag list matches any of its tags; `*` any existing todo; weak tags never (strong
    // comparison).
    let current = phone.get(&path).await.header("etag").unwrap();
    patch_if_match(
        &alice,
        &path,
        &format!("W/{current}"),
        json!({"title": "x"}),
    )
    .await
    .problem(412, "precondition-failed");
    patch_if_match(
        &alice,
        &path,
        &format!("\"v999\", {current}"),
        json!({"title": "y"}),
    )
    .await
    .expect_status(200);
    patch_if_match(&alice, &path, "*", json!({"title": "z"}))
        .await
        .expect_status(200);
    let current = alice.get(&path).await.header("etag").unwrap();
    let deleted = Reply::send(
        alice
            .request(Method::DELETE, &path)
            .header("if-match", &current),
    )
    .await;
    assert_eq!(deleted.status, 204);
    // Gone: a conditional write on a missing todo is 404, not 412.
    patch_if_match(&alice, &path, &current, json!({"title": "again"}))
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn concurrent_writes_with_the_same_if_match_let_exactly_one_win() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    let created = user.post_json("/todos", &json!({"title": "race"})).await;
    let tag = created.header("etag").unwrap();
    let path = path_of(&created.expect_status(201));

    let writes =
        (0..8).map(|i| patch_if_match(&user, &path, &tag, json!({"title": format!("writer {i}")})));
    let replies = crate::abuse::futures_join_all(writes).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let losers = replies.iter().filter(|r| r.status == 412).count();
    assert_eq!(
        (winners.len(), losers),
        (1, 7),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let stored = user.get(&path).await.expect_status(200);
    assert_eq!(
        stored["title"], winners[0].body["title"],
        "the winner's write is the one stored"
    );
}

#[tokio::test]
async fn if_none_match_gives_304_until_the_todo_or_the_list_changes() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    let created = user.post_json("/todos", &json!({"title": "read me"})).await;
    let path = path_of(&created.expect_status(201));

    let first = user.get(&path).await;
    let tag = first.header("etag").unwrap();
    let not_modified = get_if_none_match(&user, &path, &tag).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag").as_deref(), Some(tag.as_str()));
    assert_eq!(not_modified.body, Value::Null, "no body on 304");
    // Weak comparison for If-None-Match; `*` matches any existing todo.
    assert_eq!(
        get_if_none_match(&user, &path, &format!("W/{tag}"))
            .await
            .status,
        304
    );
    assert_eq!(get_if_none_match(&user, &path, "*").await.status, 304);
    assert_eq!(
        get_if_none_match(&user, &path, "\"v999\"").await.status,
        200
    );

    // Lists: the tag changes with every write of the user, cached or not.
    let list = user.get("/todos?limit=5").await;
    let list_tag = list.header("etag").expect("ETag on a list");
    let again = user.get("/todos?limit=5").await;
    assert_eq!(again.header("x-cache").as_deref(), Some("hit"));
    assert_eq!(
        again.header("etag").as_deref(),
        Some(list_tag.as_str()),
        "a hit has the same tag"
    );
    assert_eq!(
        get_if_none_match(&user, "/todos?limit=5", &list_tag)
            .await
            .status,
        304
    );

    user.patch_json(&path, &json!({"completed": true}))
        .await
        .expect_status(200);
    assert_eq!(
        get_if_none_match(&user, &path, &tag).await.status,
        200,
        "todo changed"
    );
    let fresh = get_if_none_match(&user, "/todos?limit=5", &list_tag).await;
    assert_ne!(fresh.header("etag").as_deref(), Some(list_tag.as_str()));
    assert_eq!(
        fresh.expect_status(200)["items"][0]["completed"],
        true,
        "never an old list"
    );

    // Malformed conditions are refused, not ignored.
    let bad = get_if_none_match(&user, &path, "v1").await;
    let body = bad.problem(400, "invalid-parameter");
    assert_eq!(body["errors"][0]["field"], "if-none-match");
    patch_if_match(&user, &path, "\"v1", json!({"title": "t"}))
        .await
        .problem(400, "invalid-parameter");
}
