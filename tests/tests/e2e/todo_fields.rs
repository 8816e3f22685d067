//! Todos people would choose (issue 12, item 1): due dates, notes, tags, priority; the
//! `completed`, `tag`, `due_before`/`due_after` and `q` (full-text) filters; `sort`;
//! page caps; incremental sync with `updated_since` and tombstones. Filtered pages are
//! cached like plain ones and stay read-your-writes.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::api::{app, problem_fields, Client};

fn path_of(todo: &Value) -> String {
    format!("/todos/{}", todo["id"].as_str().expect("id"))
}

async fn create(user: &Client<'_>, body: Value) -> Value {
    user.post_json("/todos", &body).await.expect_status(201)
}

async fn titles(user: &Client<'_>, query: &str) -> Vec<String> {
    let page = user
        .get(&format!("/todos?{query}"))
        .await
        .expect_status(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect()
}

/// Every title of a query, following `next_cursor` to the end.
async fn all_pages(user: &Client<'_>, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/todos?{query}&cursor={c}"),
            None => format!("/todos?{query}"),
        };
        let page = user.get(&q).await.expect_status(200);
        out.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn due_dates_notes_tags_and_priority_are_stored_normalised_and_cleared_with_null() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    let todo = create(
        &user,
        json!({"title": "dentist", "notes": "bring the x-ray\nfloor 2", "due_at": "2026-12-24T18:30:00+01:00",
               "tags": [" Health ", "health", "ERRANDS"], "priority": 3}),
    )
    .await;
    assert_eq!(
        todo["due_at"], "2026-12-24T17:30:00.000000Z",
        "stored as an instant, in UTC"
    );
    assert_eq!(todo["notes"], "bring the x-ray\nfloor 2");
    assert_eq!(
        todo["tags"],
        json!(["errands", "health"]),
        "trimmed, lower-cased, deduplicated, sorted"
    );
    assert_eq!(todo["priority"], 3);
    let plain = create(&user, json!({"title": "plain"})).await;
    assert_eq!(
        (
            &plain["notes"],
            &plain["due_at"],
            &plain["tags"],
            &plain["priority"]
        ),
        (&Value::Null, &Value::Null, &json!([]), &json!(0))
    );

    let path = path_of(&todo);
    let changed = user
        .patch_json(
            &path,
            &json!({"notes": null, "due_at": null, "tags": ["x"], "priority": 0}),
        )
        .await
        .expect_status(200);
    assert_eq!(
        (
            &changed["notes"],
            &changed["due_at"],
            &changed["tags"],
            &changed["priority"]
        ),
        (&Value::Null, &Value::Null, &json!(["x"]), &json!(0))
    );
    assert_eq!(changed["title"], "dentist", "untouched fields stay");
    assert_eq!(user.get(&path).await.expect_status(200), changed);

    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let body = user
        .post_json(
            "/todos",
            &json!({"title": "bad", "due_at": "2026-12-24T18:30:00", "tags": too_many,
                    "priority": 4, "notes": "n".repeat(10_001)}),
        )
        .await
        .problem(422, "validation");
    assert_eq!(
        problem_fields(&body),
        ["notes", "due_at", "tags", "priority"]
    );
    for bad in [
        json!({"tags": "x"}),
        json!({"tags": [1]}),
        json!({"priority": 1.5}),
        json!({"tags": [""]}),
        json!({"due_at": "soon"}),
    ] {
        user.patch_json(&path, &bad)
            .await
            .problem(422, "validation");
    }
}

#[tokio::test]
async fn filters_and_search_find_by_tag_due_date_completion_and_a_word_in_the_notes() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    create(
        &user,
        json!({"title": "buy milk", "tags": ["shop"], "due_at": "2026-01-10T09:00:00Z"}),
    )
    .await;
    create(&user, json!({"title": "call mum", "notes": "about the Christmas dinner", "due_at": "2026-01-20T09:00:00Z"})).await;
    let done = create(
        &user,
        json!({"title": "pay rent", "tags": ["home", "shop"], "completed": true}),
    )
    .await;

    assert_eq!(
        titles(&user, "q=christmas").await,
        ["call mum"],
        "a word in the notes"
    );
    assert_eq!(
        titles(&user, "q=MILK").await,
        ["buy milk"],
        "a word in the title, any case"
    );
    assert_eq!(
        titles(&user, "q=%22the+christmas%22").await,
        ["call mum"],
        "a phrase"
    );
    assert!(titles(&user, "q=nothing-like-this").await.is_empty());
    assert_eq!(
        titles(&user, "tag=SHOP").await,
        ["pay rent", "buy milk"],
        "tags are normalised in filters too"
    );
    assert_eq!(
        titles(&user, "tag=shop&completed=false").await,
        ["buy milk"]
    );
    assert_eq!(
        titles(&user, "due_before=2026-01-15T00:00:00Z").await,
        ["buy milk"]
    );
    assert_eq!(
        titles(&user, "due_after=2026-01-10T10:00:00%2B01:00").await,
        ["call mum", "buy milk"],
        "due_after is inclusive: 10:00+01:00 is 09:00Z"
    );
    assert_eq!(
        titles(
            &user,
            "due_after=2026-01-15T00:00:00Z&due_before=2026-02-01T00:00:00Z"
        )
        .await,
        ["call mum"]
    );

    // A cached filtered page never outlives a write that changes it.
    assert_eq!(
        titles(&user, "tag=shop&completed=false").await,
        ["buy milk"]
    );
    let hit = user.get("/todos?tag=shop&completed=false").await;
    assert_eq!(hit.header("x-cache").as_deref(), Some("hit"));
    user.patch_json(&path_of(&done), &json!({"completed": false}))
        .await
        .expect_status(200);
    let fresh = user.get("/todos?tag=shop&completed=false").await;
    assert_eq!(fresh.header("x-cache").as_deref(), Some("miss"));
    assert_eq!(
        titles(&user, "tag=shop&completed=false").await,
        ["pay rent", "buy milk"]
    );
    user.patch_json(
        &path_of(&done),
        &json!({"notes": "landlord wants christmas cash"}),
    )
    .await
    .expect_status(200);
    assert_eq!(
        titles(&user, "q=christmas").await,
        ["pay rent", "call mum"],
        "a search sees the edit at once"
    );

    // Another user's todos are never found.
    let other = Client::new_user(&app).await;
    assert!(titles(&other, "q=christmas").await.is_empty());
    assert!(titles(&other, "tag=shop").await.is_empty());

    for bad in [
        "q=",
        "tag=",
        "due_before=2026-01-01",
        "due_after=yesterday",
        "sort=title",
        &format!("q={}", "x".repeat(201)),
    ] {
        user.get(&format!("/todos?{bad}"))
            .await
            .problem(400, "invalid-parameter");
    }
}

#[tokio::test]
async fn sorts_by_due_date_and_priority_page_through_every_todo_once() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    for i in 0..7 {
        let mut body = json!({"title": format!("t{i}"), "priority": i % 4});
        if i % 3 != 0 {
            body["due_at"] = json!(format!("2026-03-{:02}T12:00:00Z", 20 - i));
        }
        create(&user, body).await;
    }
    // Due: soonest first, no due date last (newest of those... by id, stable).
    let due = all_pages(&user, "sort=due&limit=2").await;
    assert_eq!(due[..4], ["t5", "t4", "t2", "t1"]);
    assert_eq!(
        due.iter().collect::<HashSet<_>>().len(),
        7,
        "every todo once: {due:?}"
    );
    let undated: HashSet<&str> = due[4..].iter().map(String::as_str).collect();
    assert_eq!(undated, HashSet::from(["t0", "t3", "t6"]));

    // Priority: highest first, newest first within a priority.
    let by_priority = all_pages(&user, "sort=priority&limit=3").await;
    assert_eq!(by_priority, ["t3", "t6", "t2", "t5", "t1", "t4", "t0"]);
    // The default stays newest first, and a cursor of one order is refused by another.
    assert_eq!(
        all_pages(&user, "limit=4").await,
        ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]
    );
    let page = user
        .get("/todos?sort=priority&limit=1")
        .await
        .expect_status(200);
    let cursor = page["next_cursor"].as_str().unwrap();
    let body = user
        .get(&format!("/todos?sort=due&cursor={cursor}"))
        .await
        .problem(400, "invalid-parameter");
    assert_eq!(problem_fields(&body), ["cursor"]);
}

#[tokio::test]
async fn page_sizes_default_to_20_and_are_capped_at_100() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    for i in 0..25 {
        create(&user, json!({"title": format!("n{i}")})).await;
    }
    assert_eq!(titles(&user, "").await.len(), 20, "default");
    assert_eq!(titles(&user, "limit=100").await.len(), 25);
    for bad in ["limit=101", "limit=0", "limit=1000000"] {
        let body = user
            .get(&format!("/todos?{bad}"))
            .await
            .problem(400, "invalid-parameter");
        assert_eq!(problem_fields(&body), ["limit"]);
    }
}

#[tokio::test]
async fn updated_since_after_a_delete_returns_the_changes_and_the_tombstone() {
    let app = app().await;
    let user = Client::new_user(&app).await;
    let keep = create(&user, json!({"title": "keep"})).await;
    let gone = create(&user, json!({"title": "gone"})).await;
    let edited = create(&user, json!({"title": "edit me"})).await;
    // The client's last sync saw everything up to the last write.
    let since = edited["updated_at"].as_str().unwrap().to_string();
    let nothing = user
        .get(&format!("/todos?updated_since={since}"))
        .await
        .expect_status(200);
    assert_eq!(
        (nothing["items"].clone(), nothing["deleted"].clone()),
        (json!([]), json!([]))
    );

    assert_eq!(user.delete(&path_of(&gone)).await.status, 204);
    user.patch_json(&path_of(&edited), &json!({"title": "edited"}))
        .await
        .expect_status(200);
    let sync = user
        .get(&format!("/todos?updated_since={since}"))
        .await
        .expect_status(200);
    let changed: Vec<&str> = sync["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["edited"]);
    let deleted = sync["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["id"], gone["id"]);
    assert!(deleted[0]["deleted_at"].as_str().unwrap() > since.as_str());
    assert!(
        sync["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != keep["id"]),
        "unchanged todos are not sent again"
    );

    // Paged one row at a time, the changes come oldest first: the tombstone, then the edit.
    let page = user
        .get(&format!("/todos?updated_since={since}&limit=1"))
        .await
        .expect_status(200);
    assert_eq!(page["deleted"][0]["id"], gone["id"]);
    assert_eq!(page["items"], json!([]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = user
        .get(&format!(
            "/todos?updated_since={since}&limit=1&cursor={cursor}"
        ))
        .await
        .expect_status(200);
    assert_eq!(page["items"][0]["title"], "edited");
    assert_eq!(page["next_cursor"], Value::Null);

    // Too old (deletions before it may be swept): 410, list everything again.
    user.get("/todos?updated_since=2000-01-01T00:00:00Z")
        .await
        .problem(410, "sync-expired");
    let body = user
        .get(&format!("/todos?updated_since={since}&sort=due"))
        .await
        .problem(400, "invalid-parameter");
    assert_eq!(problem_fields(&body), ["updated_since"]);
    // A plain list has no `deleted` member.
    assert!(user
        .get("/todos")
        .await
        .expect_status(200)
        .get("deleted")
        .is_none());
}
