//! The `todos` component: `GET/POST /todos`, `GET/PATCH/DELETE /todos/:id`, all requiring
//! `Authorization: Bearer <access token>`.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p todos`.
//!
//! ## Host round trips per request
//! Every route opens at most one Redis connection (`Redis::new` connects on the first
//! command; under Spin each open is a new TCP connection) and at most one PostgreSQL
//! connection (under Spin each checkout costs a cleanup round trip), and neither before the
//! token has been checked: a request without a valid token (401) touches neither.
//!
//! | request | Redis | PostgreSQL |
//! |---|---|---|
//! | `GET /todos`, cache hit | 1 connection, 1 `EVAL` (rate limit + token generation + cache read) | 1 checkout, 1 primary-key lookup (the list version) |
//! | `GET /todos`, no entry | 1 connection, `EVAL` + `EVAL` (stores the new entry, deletes the user's oldest pages beyond the cap: `common::todo_list`) | 1 checkout, 1 query (page + version in one statement) |
//! | `GET /todos`, stale entry | as above | 1 checkout, version lookup + page query |
//! | `POST /todos`, `GET`/`PATCH`/`DELETE /todos/:id` | 1 connection, 1 `EVAL` (rate limit + token generation) | 1 checkout, 1 statement (writes bump the version in the same statement) |
//! | no generation copy in Redis (expired, Redis restarted or down) | adds 1 `EVAL` (storing the copy; not when Redis is down) | the same checkout adds 1 primary-key lookup (`users.token_generation`, the truth: `common::revocation`) |
//! | revoked token (401) | 1 connection, 1 `EVAL` | none, or the generation lookup |
//! | refused by the limiter (429) | 1 connection, 1 `EVAL` | none |
//! | invalid body (400/413/415) | 1 connection, 1 `EVAL` (invalid requests count too) | none |
//! | `GET /todos` with `If-None-Match`, no cache entry | as a miss | adds the list-version lookup before the page (a current tag: 304 after it, no page query) |
//! | `POST /todos` with an `Idempotency-Key` that is taken | as a create | the create statement inserts nothing, then 1 key lookup and 1 todo lookup (the replay) |
//! | `PATCH`/`DELETE` with an `If-Match` that misses | as a write | adds 1 lookup (412 or 404) |
//!
//! `common::todo_list` explains why a cache hit still asks PostgreSQL for the version
//! (read-your-writes cannot rest on Redis). Guest CPU of a cache hit: the token check
//! (`common::tokens::TokenKey`, about 3 µs in wasm32), the query parse, and copying the
//! cached body; no JSON is parsed or produced besides the token's header and claims.

use common::config::{Component, RateLimitName, StoreSettings};
use common::domain::{Instant, Tag, TodoNotes, TodoTitle, Uuid, MAX_PRIORITY};
use common::http::conditional::{self, list_etag, not_modified, todo_etag, Condition};
use common::http::{
    self, authenticate, check_generation, check_rate_limit_reading, generation_key, redis_degraded,
    Ctx,
};
use common::idempotency::{IdempotencyKey, Replay};
use common::rate_limit::Counter;
use common::repo::{self, NewTodo, TodoChanges, TodoWrite};
use common::revocation::Seen;
use common::store::{Db, Redis, SpinVariables};
use common::todo_list::{self, Cursor, ListQuery, Order, Todo, TodoPage, TOMBSTONE_RETENTION_DAYS};
use common::tokens::AccessClaims;
use common::ApiError;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    http::serve(req, Component::Todos, &SpinVariables, route)
}

fn route(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let path = req.path();
    let method = req.method();
    if path == "/todos" {
        ctx.route = "/todos";
        return match method {
            Method::Get => list(ctx, req),
            Method::Post => create(ctx, req),
            _ => Err(ApiError::MethodNotAllowed { allow: "GET, POST" }),
        };
    }
    let Some(id) = path.strip_prefix("/todos/").filter(|id| !id.contains('/')) else {
        return Err(ApiError::NotFound);
    };
    ctx.route = "/todos/:id";
    match method {
        Method::Get => get_one(ctx, req, id),
        Method::Patch => update(ctx, req, id),
        Method::Delete => delete(ctx, req, id),
        _ => Err(ApiError::MethodNotAllowed {
            allow: "GET, PATCH, DELETE",
        }),
    }
}

/// The authenticated caller of a write or single-todo route, counted against their rate
/// limit, with their token generation read in the same round trip (list reads also read
/// the cache entry in it). `db` is the connection the generation check opened when Redis
/// had no copy (`common::revocation`), for the rest of the request.
struct Session {
    user: Uuid,
    store: StoreSettings,
    db: Option<Db>,
}

impl Session {
    /// The request's one PostgreSQL connection.
    fn db(&mut self) -> Result<&Db, ApiError> {
        if self.db.is_none() {
            self.db = Some(Db::open(&self.store.db_url)?);
        }
        self.db
            .as_ref()
            .ok_or_else(|| ApiError::Internal("no connection".into()))
    }
}

/// Counts an authenticated caller and checks revocation; returns the session, the Redis
/// handle and the cache entry read for `cache_key`.
fn begin_with(
    ctx: &mut Ctx,
    claims: AccessClaims,
    cache_key: impl FnOnce(&StoreSettings, &Uuid) -> Option<String>,
) -> Result<(Session, Redis, Option<Vec<u8>>), ApiError> {
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let counter = Counter::new(
        &store.redis_key_prefix,
        "user",
        claims.user.as_str(),
        ctx.config.rate_limit(RateLimitName::Api)?,
    );
    let mut reads = vec![generation_key(&store.redis_key_prefix, &claims)];
    reads.extend(cache_key(&store, &claims.user));
    let values = check_rate_limit_reading(ctx, &redis, &[counter], &reads)?;
    let (seen, cached) = match values {
        Some(mut values) => {
            let cached = values.get_mut(1).and_then(Option::take);
            (values.first_mut().and_then(Option::take), cached)
        }
        None => (None, None),
    };
    let db = check_generation(
        ctx,
        &redis,
        &store.redis_key_prefix,
        &claims,
        Seen::from_reply(seen.as_deref()),
        || Db::open(&store.db_url),
    )?;
    Ok((
        Session {
            user: claims.user,
            store,
            db,
        },
        redis,
        cached,
    ))
}

fn begin(ctx: &mut Ctx, req: &Request) -> Result<Session, ApiError> {
    let claims = authenticate(ctx, req)?;
    begin_with(ctx, claims, |_, _| None).map(|(session, _, _)| session)
}

/// The access token outlived its user (account deleted): the token is no longer valid.
fn user_gone() -> ApiError {
    ApiError::InvalidAccessToken("the token's user no longer exists")
}

/// A `200` JSON response with an `ETag`.
fn tagged(status: u16, body: Vec<u8>, etag: &str) -> Response {
    let mut resp = http::json_bytes(status, body);
    resp.set_header("etag", etag);
    resp
}

/// A todo as a response, tagged with its row version.
fn todo_response(status: u16, todo: &Todo) -> Result<Response, ApiError> {
    let mut resp = http::json(status, todo)?;
    resp.set_header("etag", todo_etag(todo.version));
    Ok(resp)
}

fn list(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    // Authenticate first: unauthenticated callers learn nothing, not even query errors.
    let claims = authenticate(ctx, req)?;
    let query = ListQuery::parse(req.query())?;
    check_sync_window(&query)?;
    let if_none_match = conditional::from_request(req, "if-none-match")?;
    let ttl = ctx.config.todos_cache_ttl_seconds()?;
    let mut cache_key = None;
    let (mut session, redis, cached) = begin_with(ctx, claims, |store, user| {
        cache_key = (ttl > 0).then(|| query.cache_key(&store.redis_key_prefix, user));
        cache_key.clone()
    })?;
    let user = session.user.clone();
    let db = session.db()?;

    let cached = cached.as_deref().and_then(todo_list::decode_cache_entry);
    // The list version: read anyway on a hit (freshness), and before the page query when
    // the client holds a page whose version it can be compared with.
    let current = if cached.is_some() || if_none_match.is_some() {
        Some(repo::todos_version(db, &user)?.ok_or_else(user_gone)?)
    } else {
        None
    };
    if let (Some(current), Some(condition)) = (current, &if_none_match) {
        let etag = list_etag(current);
        if condition.matches_weak(&etag) {
            return Ok(not_modified(&etag));
        }
    }
    if let Some((version, body)) = cached {
        if current == Some(version) {
            ctx.cache = Some("hit");
            return Ok(tagged(200, body.to_vec(), &list_etag(version)));
        }
    }
    ctx.cache = Some("miss");

    let (version, mut rows) = repo::list_todos(db, &user, &query)?.ok_or_else(user_gone)?;
    let limit = query.limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().and_then(|last| {
            let cursor = match last {
                Ok(todo) => Cursor::after(query.order, todo)?,
                Err(tombstone) => Cursor {
                    order: Order::Sync,
                    at: tombstone.deleted_at.clone(),
                    priority: 0,
                    id: Uuid::parse(&tombstone.id)?,
                },
            };
            Some(cursor.encode())
        })
    } else {
        None
    };
    let (mut items, mut deleted) = (Vec::with_capacity(rows.len()), Vec::new());
    for row in rows {
        match row {
            Ok(todo) => items.push(todo),
            Err(tombstone) => deleted.push(tombstone),
        }
    }
    let deleted = (query.order == Order::Sync).then_some(deleted);
    let body = serde_json::to_vec(&TodoPage {
        items,
        deleted,
        next_cursor,
    })
    .map_err(|e| ApiError::Internal(format!("serialize: {e}")))?;
    // Skip the write when Redis already failed in this request.
    if let Some(key) = cache_key.filter(|_| ctx.degraded.is_empty()) {
        // One EVAL, as the SET it replaces: stores the page and deletes the user's oldest
        // pages beyond the cap (`common::todo_list`, "Why one user cannot grow the cache").
        let entry = todo_list::encode_cache_entry(version, &body);
        let (keys, args) = todo_list::cache_write_arguments(
            &session.store.redis_key_prefix,
            &user,
            &key,
            &entry,
            ttl,
        );
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if let Err(e) = redis.eval_bytes(todo_list::CACHE_WRITE_SCRIPT, &keys, &args) {
            redis_degraded(ctx, "cache-write", &e);
        }
    }
    Ok(tagged(200, body, &list_etag(version)))
}

fn create(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let mut session = begin(ctx, req)?;
    let mut body = ctx.json_body(req)?;
    let title = body.required_str("title");
    let title = body.parse_with("title", title, TodoTitle::parse);
    let completed = body.optional_bool("completed");
    let fields = read_fields(&mut body);
    body.finish()?;
    let title = title.ok_or_else(|| ApiError::Internal("title absent after validation".into()))?;
    let todo = NewTodo {
        title,
        completed: completed.unwrap_or(false),
        notes: fields.notes.flatten(),
        due_at: fields.due_at.flatten(),
        tags: fields.tags.unwrap_or_default(),
        priority: fields.priority.unwrap_or(0),
    };
    let key = IdempotencyKey::from_request(req)?;

    let user = session.user.clone();
    let db = session.db()?;
    let created = repo::create_todo(db, &user, &todo, key.as_ref())?;
    let (todo, replayed) = match (created, &key) {
        (Some(todo), _) => (todo, false),
        (None, None) => return Err(user_gone()),
        (None, Some(key)) => (replay_create(db, &user, key)?, true),
    };
    let mut resp = todo_response(201, &todo)?;
    resp.set_header("location", format!("/todos/{}", todo.id));
    if replayed {
        resp.set_header("idempotent-replayed", "true");
    }
    Ok(resp)
}

/// A create whose `Idempotency-Key` is taken: the todo the first request created (as it
/// is now), or 422 when the body differs (`common::idempotency`).
fn replay_create(db: &Db, user: &Uuid, key: &IdempotencyKey) -> Result<Todo, ApiError> {
    match repo::find_idempotent(db, "todos", user.as_str(), key)? {
        Some(Replay::Same(id)) => repo::get_todo(db, user, &id)?.ok_or(ApiError::NotFound),
        Some(Replay::OtherBody) => Err(ApiError::IdempotencyKeyReused),
        // Taken a moment ago and expired since, or the user is gone.
        None => Err(user_gone()),
    }
}

/// Parses the id segment; a malformed id cannot name any todo, so it is a 404 too.
fn todo_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse(raw).ok_or(ApiError::NotFound)
}

fn get_one(ctx: &mut Ctx, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let mut session = begin(ctx, req)?;
    let id = todo_id(raw_id)?;
    let if_none_match = conditional::from_request(req, "if-none-match")?;
    let user = session.user.clone();
    // Another user's todo is "not found", never "forbidden": no existence leak.
    let todo = repo::get_todo(session.db()?, &user, &id)?.ok_or(ApiError::NotFound)?;
    let etag = todo_etag(todo.version);
    if if_none_match.is_some_and(|c| c.matches_weak(&etag)) {
        return Ok(not_modified(&etag));
    }
    todo_response(200, &todo)
}

fn update(ctx: &mut Ctx, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let mut session = begin(ctx, req)?;
    let id = todo_id(raw_id)?;
    let expected = if_match(req)?;
    let mut body = ctx.json_body(req)?;
    let title = body.optional_str("title");
    let title = body.parse_with("title", title, TodoTitle::parse);
    let completed = body.optional_bool("completed");
    let fields = read_fields(&mut body);
    body.finish()?;
    let changes = TodoChanges {
        title,
        completed,
        ..fields
    };
    if changes.is_empty() {
        return Err(ApiError::invalid_field(
            "(body)",
            "must contain at least one of title, completed, notes, due_at, tags, priority",
        ));
    }
    let user = session.user.clone();
    let written = repo::update_todo(session.db()?, &user, &id, &changes, expected.as_deref())?;
    todo_response(200, &written_or_error(written)?)
}

/// The optional fields of a create or update body (`notes` and `due_at` may be `null`
/// to clear them), each checked by its domain type; errors are recorded in `body`.
fn read_fields(body: &mut http::JsonObject) -> TodoChanges {
    let notes = body.nullable_str("notes").and_then(|v| match v {
        None => Some(None),
        Some(raw) => body
            .parse_with("notes", Some(raw), TodoNotes::parse)
            .map(Some),
    });
    let due_at = body.nullable_str("due_at").and_then(|v| match v {
        None => Some(None),
        Some(raw) => body
            .parse_with("due_at", Some(raw), Instant::parse)
            .map(Some),
    });
    let tags = body
        .optional_str_array("tags")
        .and_then(|raw| match Tag::parse_list(&raw) {
            Ok(tags) => Some(tags),
            Err(message) => {
                body.error("tags", message);
                None
            }
        });
    let priority = body.optional_int("priority", 0, MAX_PRIORITY);
    TodoChanges {
        title: None,
        completed: None,
        notes,
        due_at,
        tags,
        priority,
    }
}

/// `updated_since` older than the tombstone retention: deletions before it may be swept,
/// so the answer could miss some; 410 tells the client to list everything again.
fn check_sync_window(query: &ListQuery) -> Result<(), ApiError> {
    let Some(since) = &query.updated_since else {
        return Ok(());
    };
    let since = chrono::DateTime::parse_from_rfc3339(since.as_str())
        .map_err(|e| ApiError::Internal(format!("updated_since: {e}")))?;
    let oldest = chrono::Utc::now() - chrono::Duration::days(i64::from(TOMBSTONE_RETENTION_DAYS));
    if since < oldest {
        return Err(ApiError::SyncExpired {
            days: TOMBSTONE_RETENTION_DAYS,
        });
    }
    Ok(())
}

/// The row versions an `If-Match` accepts; `None` without one or for `*` (any existing
/// todo, which every write requires anyway).
fn if_match(req: &Request) -> Result<Option<Vec<i64>>, ApiError> {
    Ok(conditional::from_request(req, "if-match")?.and_then(|c: Condition| c.todo_versions()))
}

fn written_or_error<T>(written: TodoWrite<T>) -> Result<T, ApiError> {
    match written {
        TodoWrite::Done(value) => Ok(value),
        TodoWrite::NotFound => Err(ApiError::NotFound),
        TodoWrite::Stale => Err(ApiError::PreconditionFailed),
    }
}

fn delete(ctx: &mut Ctx, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let mut session = begin(ctx, req)?;
    let id = todo_id(raw_id)?;
    let expected = if_match(req)?;
    let user = session.user.clone();
    written_or_error(repo::delete_todo(
        session.db()?,
        &user,
        &id,
        expected.as_deref(),
    )?)?;
    Ok(http::no_content())
}
