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
//! | `GET /todos`, cache hit | 1 connection, 1 `EVAL` (rate limit + cache read) | 1 checkout, 1 primary-key lookup (the list version) |
//! | `GET /todos`, no entry | 1 connection, `EVAL` + `SET EX` (the new entry) | 1 checkout, 1 query (page + version in one statement) |
//! | `GET /todos`, stale entry | as above | 1 checkout, version lookup + page query |
//! | `POST /todos`, `GET`/`PATCH`/`DELETE /todos/:id` | 1 connection, 1 `EVAL` (rate limit) | 1 checkout, 1 statement (writes bump the version in the same statement) |
//! | refused by the limiter (429) | 1 connection, 1 `EVAL` | none |
//! | invalid body (400/413/415) | 1 connection, 1 `EVAL` (invalid requests count too) | none |
//!
//! `common::todo_list` explains why a cache hit still asks PostgreSQL for the version
//! (read-your-writes cannot rest on Redis). Guest CPU of a cache hit: the token check
//! (`common::tokens::TokenKey`, about 3 µs in wasm32), the query parse, and copying the
//! cached body; no JSON is parsed or produced besides the token's header and claims.

use common::config::{Component, RateLimitName, StoreSettings};
use common::domain::{TodoTitle, Uuid};
use common::http::{self, authenticate, check_rate_limit, redis_degraded, Ctx};
use common::rate_limit::Counter;
use common::repo;
use common::store::{Db, Redis, SpinVariables};
use common::todo_list::{self, Cursor, ListQuery, TodoPage};
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
/// limit (list reads do the same with the cache read in the same round trip).
struct Session {
    user: Uuid,
    store: StoreSettings,
}

fn begin(ctx: &mut Ctx, req: &Request) -> Result<Session, ApiError> {
    let (user, _) = authenticate(ctx, req)?;
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let counter = Counter::new(
        &store.redis_key_prefix,
        "user",
        user.as_str(),
        ctx.config.rate_limit(RateLimitName::Api)?,
    );
    check_rate_limit(ctx, &redis, &[counter], None)?;
    Ok(Session { user, store })
}

/// The access token outlived its user (account deleted): the token is no longer valid.
fn user_gone() -> ApiError {
    ApiError::InvalidAccessToken("the token's user no longer exists")
}

fn list(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    // Authenticate first: unauthenticated callers learn nothing, not even query errors.
    let (user, _) = authenticate(ctx, req)?;
    let query = ListQuery::parse(req.query())?;
    let ttl = ctx.config.todos_cache_ttl_seconds()?;
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let cache_key = (ttl > 0).then(|| query.cache_key(&store.redis_key_prefix, &user));
    let counter = Counter::new(
        &store.redis_key_prefix,
        "user",
        user.as_str(),
        ctx.config.rate_limit(RateLimitName::Api)?,
    );
    let cached = check_rate_limit(ctx, &redis, &[counter], cache_key.as_deref())?;
    let db = Db::open(&store.db_url)?;

    if let Some((version, body)) = cached.as_deref().and_then(todo_list::decode_cache_entry) {
        let current = repo::todos_version(&db, &user)?.ok_or_else(user_gone)?;
        if current == version {
            ctx.cache = Some("hit");
            return Ok(http::json_bytes(200, body.to_vec()));
        }
    }
    ctx.cache = Some("miss");

    let (version, mut items) = repo::list_todos(&db, &user, &query)?.ok_or_else(user_gone)?;
    let limit = query.limit as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().and_then(|last| {
            Some(
                Cursor {
                    created_at: last.created_at.clone(),
                    id: Uuid::parse(&last.id)?,
                }
                .encode(),
            )
        })
    } else {
        None
    };
    let body = serde_json::to_vec(&TodoPage { items, next_cursor })
        .map_err(|e| ApiError::Internal(format!("serialize: {e}")))?;
    // Skip the write when Redis already failed in this request.
    if let Some(key) = cache_key.filter(|_| ctx.degraded.is_empty()) {
        let entry = todo_list::encode_cache_entry(version, &body);
        if let Err(e) = redis.set_ex(&key, &entry, ttl) {
            redis_degraded(ctx, "cache-write", &e);
        }
    }
    Ok(http::json_bytes(200, body))
}

fn create(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let session = begin(ctx, req)?;
    let mut body = ctx.json_body(req)?;
    let title = body.required_str("title");
    let title = body.parse_with("title", title, TodoTitle::parse);
    let completed = body.optional_bool("completed");
    body.finish()?;
    let title = title.ok_or_else(|| ApiError::Internal("title absent after validation".into()))?;

    let db = Db::open(&session.store.db_url)?;
    let todo = repo::create_todo(&db, &session.user, &title, completed.unwrap_or(false))?
        .ok_or_else(user_gone)?;
    let mut resp = http::json(201, &todo)?;
    resp.set_header("location", format!("/todos/{}", todo.id));
    Ok(resp)
}

/// Parses the id segment; a malformed id cannot name any todo, so it is a 404 too.
fn todo_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse(raw).ok_or(ApiError::NotFound)
}

fn get_one(ctx: &mut Ctx, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let session = begin(ctx, req)?;
    let id = todo_id(raw_id)?;
    let db = Db::open(&session.store.db_url)?;
    // Another user's todo is "not found", never "forbidden": no existence leak.
    let todo = repo::get_todo(&db, &session.user, &id)?.ok_or(ApiError::NotFound)?;
    http::json(200, &todo)
}

fn update(ctx: &mut Ctx, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let session = begin(ctx, req)?;
    let id = todo_id(raw_id)?;
    let mut body = ctx.json_body(req)?;
    let title = body.optional_str("title");
    let title = body.parse_with("title", title, TodoTitle::parse);
    let completed = body.optional_bool("completed");
    body.finish()?;
    if title.is_none() && completed.is_none() {
        return Err(ApiError::invalid_field(
            "(body)",
            "must contain at least one of title, completed",
        ));
    }
    let db = Db::open(&session.store.db_url)?;
    let todo = repo::update_todo(&db, &session.user, &id, title.as_ref(), completed)?
        .ok_or(ApiError::NotFound)?;
    http::json(200, &todo)
}

fn delete(ctx: &mut Ctx, req: &Request, raw_id: &str) -> Result<Response, ApiError> {
    let session = begin(ctx, req)?;
    let id = todo_id(raw_id)?;
    let db = Db::open(&session.store.db_url)?;
    if repo::delete_todo(&db, &session.user, &id)? {
        Ok(http::no_content())
    } else {
        Err(ApiError::NotFound)
    }
}
