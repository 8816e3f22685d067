//! The `auth` component: `POST /auth/register`, `/auth/login`, `/auth/refresh`,
//! `/auth/logout`, `/auth/logout-all`, `/auth/password`, `GET`/`DELETE /me` and
//! `GET /.well-known/jwks.json`.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p auth`. The handlers are thin:
//! validation, tokens, hashing and SQL live in the `common` crate.
//!
//! ## Host round trips per request
//! At most one Redis connection (opened on the first command) per request; routes without
//! a rate limit or revocation open no Redis connection at all. At most one PostgreSQL
//! checkout at a time, and none held across password hashing (login and password change
//! check a connection out twice: before and after the argon2 pass).
//!
//! | request | Redis | PostgreSQL |
//! |---|---|---|
//! | `POST /auth/login` | 1 connection, 1 `EVAL` (the throttle: address, username+address, username guard; `common::login_guard`), a success 1 more (`EVAL`: give the count back, mark the address known) | 2 checkouts, none held during the argon2 pass: the credentials lookup, then (a success) the refresh-token family insert |
//! | `POST /auth/register` | 1 connection, `EVAL` + `PUBLISH` (the job's wake-up) | 1 checkout, 1 statement (user + job); a conflict adds one lookup |
//! | `POST /auth/refresh` | none | 1 checkout, 1 statement; a reused token adds the revocation |
//! | `POST /auth/logout` | none | 1 checkout, 1 statement |
//! | `GET /.well-known/jwks.json` | none | none |
//!
//! An invalid login body is answered before any connection; a refused login (429) before
//! PostgreSQL and before the password hash. Guest CPU of a login is the argon2id pass
//! (`common::passwords`, tens of milliseconds); signing the access token adds about
//! 0.1 ms (deriving the public key to check the variable, then the signature).

use common::config::{Component, RateLimitName, StoreSettings};
use common::domain::{Email, Password, Username, Uuid};
use common::http::{
    self, authenticate, check_generation, check_login_guard, check_rate_limit,
    check_rate_limit_reading, generation_key, record_login_success, store_generation, Ctx,
};
use common::idempotency::{IdempotencyKey, Replay};
use common::login_guard::{GuardKeys, GuardLimits};
use common::rate_limit::Counter;
use common::repo::{self, KeyedRegistration, Rotation};
use common::revocation::Seen;
use common::store::{Db, Redis, SpinVariables};
use common::tokens::{self, AccessClaims, RefreshToken};
use common::{jobs, log, passwords, ApiError};
use serde::Serialize;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    http::serve(req, Component::Auth, &SpinVariables, route)
}

/// Exact routes only: Spin routes `/auth/...` here, anything else under it is a 404.
fn route(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let post = *req.method() == Method::Post;
    let (route, allow): (&'static str, &'static str) = match req.path() {
        "/auth/register" => ("/auth/register", "POST"),
        "/auth/login" => ("/auth/login", "POST"),
        "/auth/refresh" => ("/auth/refresh", "POST"),
        "/auth/logout" => ("/auth/logout", "POST"),
        "/auth/logout-all" => ("/auth/logout-all", "POST"),
        "/auth/password" => ("/auth/password", "POST"),
        "/.well-known/jwks.json" => ("/.well-known/jwks.json", "GET"),
        "/me" => ("/me", "GET, DELETE"),
        _ => return Err(ApiError::NotFound),
    };
    ctx.route = route;
    match route {
        "/auth/register" if post => register(ctx, req),
        "/auth/login" if post => login(ctx, req),
        "/auth/refresh" if post => refresh(ctx, req),
        "/auth/logout" if post => logout(ctx, req),
        "/auth/logout-all" if post => logout_all(ctx, req),
        "/auth/password" if post => change_password(ctx, req),
        "/.well-known/jwks.json" if *req.method() == Method::Get => jwks(ctx),
        "/me" if *req.method() == Method::Get => me(ctx, req),
        "/me" if *req.method() == Method::Delete => delete_me(ctx, req),
        _ => Err(ApiError::MethodNotAllowed { allow }),
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::Internal(format!("{field} absent after successful validation"))
}

fn register(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    // Counted before any work, so failed and invalid attempts count too.
    let counter = Counter::new(
        &store.redis_key_prefix,
        "register-address",
        &ctx.client_addr,
        ctx.config.rate_limit(RateLimitName::RegisterAddress)?,
    );
    check_rate_limit(ctx, &redis, &[counter], None)?;

    let mut body = ctx.json_body(req)?;
    let username = body.required_str("username");
    let username = body.parse_with("username", username, Username::parse);
    let email = body.required_str("email");
    let email = body.parse_with("email", email, Email::parse);
    let password = body.required_str("password");
    let password = body.parse_with("password", password, |raw| {
        Password::parse_new(raw, username.as_ref(), email.as_ref())
    });
    body.finish()?;
    let username = username.ok_or_else(|| missing("username"))?;
    let email = email.ok_or_else(|| missing("email"))?;
    let password = password.ok_or_else(|| missing("password"))?;

    let key = IdempotencyKey::from_request(req)?;

    let jobs_channel = ctx.config.jobs_channel()?;
    // A retry of a registration that committed is answered before the argon2 pass.
    if let Some(key) = &key {
        let db = Db::open(&store.db_url)?;
        if let Some(resp) = replay_registration(ctx, &db, key)? {
            return Ok(resp);
        }
    }
    let password_hash = passwords::hash(&password)?;
    let db = Db::open(&store.db_url)?;
    let welcome = jobs::welcome_email(&username, &email);
    let registration = match &key {
        None => repo::insert_user(&db, &username, &email, &password_hash, &welcome)?,
        Some(key) => {
            match repo::insert_user_with_key(&db, &username, &email, &password_hash, &welcome, key)?
            {
                KeyedRegistration::Registered(registration) => Some(registration),
                KeyedRegistration::Conflict => None,
                // Taken while this request hashed: the first one committed meanwhile.
                KeyedRegistration::KeyTaken => {
                    return replay_registration(ctx, &db, key)?.ok_or_else(|| {
                        ApiError::Internal("idempotency key taken but not found".into())
                    })
                }
            }
        }
    };
    match registration {
        Some(registration) => {
            ctx.user_id = Some(registration.user.id.clone());
            publish_job(ctx, &redis, &jobs_channel, &registration.welcome_job_id);
            http::json(201, &registration.user)
        }
        None => Err(repo::registration_conflict(&db, &username, &email)?),
    }
}

/// The answer to a registration whose `Idempotency-Key` is live: the first registration
/// replayed (same body), or 422 (another body); `None` when the key is free.
fn replay_registration(
    ctx: &mut Ctx,
    db: &Db,
    key: &IdempotencyKey,
) -> Result<Option<Response>, ApiError> {
    match repo::find_idempotent(db, "register", "", key)? {
        None => Ok(None),
        Some(Replay::OtherBody) => Err(ApiError::IdempotencyKeyReused),
        Some(Replay::Same(id)) => {
            // Deleting an account deletes its keys, so the user exists.
            let user = repo::find_new_user(db, &id)?
                .ok_or_else(|| ApiError::Internal("replayed user not found".into()))?;
            ctx.user_id = Some(user.id.clone());
            let mut resp = http::json(201, &user)?;
            resp.set_header("idempotent-replayed", "true");
            Ok(Some(resp))
        }
    }
}

/// Wakes the notifier up for a committed job. Best effort: the job is already in the
/// outbox, so a failed publish only delays it until the next wake-up or the sweep, and is
/// logged rather than failing a registration that succeeded.
fn publish_job(ctx: &Ctx, redis: &Redis, channel: &str, job_id: &common::domain::Uuid) {
    if let Err(e) = redis.publish(channel, job_id.as_str().as_bytes()) {
        log::event(
            "warn",
            "job publish failed; the job stays in the outbox for the sweep",
            &[
                ("component", "auth"),
                ("request_id", &ctx.request_id),
                ("job_id", job_id.as_str()),
                ("detail", &log::sanitize(&e)),
            ],
        );
    }
}

/// The body of a successful login or refresh.
#[derive(Serialize)]
struct TokenPair<'a> {
    access_token: String,
    token_type: &'static str,
    expires_in: u32,
    refresh_token: &'a str,
}

fn login(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let mut body = ctx.json_body(req)?;
    let username = body.required_str("username");
    let username = body.parse_with("username", username, Username::parse);
    let password = body.required_str("password");
    let password = body.parse_with("password", password, Password::parse);
    body.finish()?;
    let username = username.ok_or_else(|| missing("username"))?;
    let password = password.ok_or_else(|| missing("password"))?;

    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let guard = GuardKeys::new(
        &store.redis_key_prefix,
        &username.normalized(),
        &ctx.client_addr,
    );
    let limits = GuardLimits {
        address: ctx.config.rate_limit(RateLimitName::LoginAddress)?,
        pair: ctx.config.rate_limit(RateLimitName::LoginPair)?,
        username: ctx.config.rate_limit(RateLimitName::LoginUsername)?,
        guard_interval_seconds: ctx.config.login_guard_interval_seconds()?,
    };
    check_login_guard(ctx, &redis, &guard, &limits)?;

    // Fail on a missing key before spending an argon2 pass.
    let settings = ctx.config.tokens()?;
    let lifetimes = ctx.config.token_lifetimes()?;
    let key = tokens::signing_key(&settings)?;

    // The pooled connection goes back before the argon2 pass (tens of milliseconds of
    // guest CPU): holding it would let a burst of logins exhaust the pool for everyone.
    let credentials = {
        let db = Db::open(&store.db_url)?;
        repo::find_credentials(&db, &username)?
    };
    // Unknown user and wrong password: same work (one argon2 pass), same error.
    let subject = passwords::check_credentials(&password, credentials)?;
    ctx.user_id = Some(subject.user.to_string());
    record_login_success(
        ctx,
        &redis,
        &guard,
        &store.redis_key_prefix,
        &subject.user,
        subject.generation,
    );

    let access_token = key.issue_access_token_at(
        &subject.user,
        subject.generation,
        &settings,
        lifetimes.access_token_ttl_seconds,
    )?;
    let refresh_token = RefreshToken::generate()?;
    let db = Db::open(&store.db_url)?;
    repo::start_refresh_family(
        &db,
        &subject.user,
        refresh_token.hash(),
        lifetimes.refresh_token_ttl_seconds,
    )?;
    http::json(
        200,
        &TokenPair {
            access_token,
            token_type: "Bearer",
            expires_in: lifetimes.access_token_ttl_seconds,
            refresh_token: refresh_token.as_str(),
        },
    )
}

/// Reads `{"refresh_token": "..."}`; a malformed token is simply an invalid one (401).
fn refresh_token_body(ctx: &Ctx, req: &Request) -> Result<RefreshToken, ApiError> {
    let mut body = ctx.json_body(req)?;
    let token = body.required_str("refresh_token");
    body.finish()?;
    RefreshToken::parse(&token.ok_or_else(|| missing("refresh_token"))?)
}

fn refresh(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let presented = refresh_token_body(ctx, req)?;
    let settings = ctx.config.tokens()?;
    let lifetimes = ctx.config.token_lifetimes()?;
    let key = tokens::signing_key(&settings)?;
    let db = Db::open(&ctx.config.db_url()?)?;
    let replacement = RefreshToken::generate()?;
    match repo::rotate_refresh_token(
        &db,
        presented.hash(),
        replacement.hash(),
        lifetimes.refresh_token_ttl_seconds,
    )? {
        Rotation::Rotated(subject) => {
            ctx.user_id = Some(subject.user.to_string());
            http::json(
                200,
                &TokenPair {
                    access_token: key.issue_access_token_at(
                        &subject.user,
                        subject.generation,
                        &settings,
                        lifetimes.access_token_ttl_seconds,
                    )?,
                    token_type: "Bearer",
                    expires_in: lifetimes.access_token_ttl_seconds,
                    refresh_token: replacement.as_str(),
                },
            )
        }
        Rotation::ReuseDetected(subject) => {
            ctx.user_id = Some(subject.user.to_string());
            log::event(
                "warn",
                "refresh token reused: its family is revoked and the user's access tokens end",
                &[("component", "auth"), ("request_id", &ctx.request_id)],
            );
            publish_generation(ctx, &subject.user, subject.generation)?;
            Err(ApiError::InvalidRefreshToken)
        }
        Rotation::Invalid => Err(ApiError::InvalidRefreshToken),
    }
}

/// After a revocation committed in PostgreSQL: stores the bumped generation in Redis, so
/// the user's older access tokens are refused from the next request on
/// (`common::revocation`; a failed write is logged, PostgreSQL stays the truth).
fn publish_generation(ctx: &mut Ctx, user: &Uuid, generation: i64) -> Result<(), ApiError> {
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    store_generation(ctx, &redis, &store.redis_key_prefix, user, generation, true);
    Ok(())
}

fn logout(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let presented = refresh_token_body(ctx, req)?;
    let db = Db::open(&ctx.config.db_url()?)?;
    // 204 whether or not the token was known: logout is idempotent and not an oracle.
    if let Some(subject) = repo::revoke_refresh_family(&db, presented.hash())? {
        drop(db);
        ctx.user_id = Some(subject.user.to_string());
        publish_generation(ctx, &subject.user, subject.generation)?;
    }
    Ok(http::no_content())
}

/// The caller of an authenticated `auth` route: a valid, unrevoked access token, counted
/// against the per-account limit (`account:<user>`, `rate_limit_login_pair`: the routes
/// behind it verify a password or end sessions). One Redis round trip (the limit and the
/// generation together).
fn account_caller(
    ctx: &mut Ctx,
    req: &Request,
    store: &StoreSettings,
    redis: &Redis,
) -> Result<(AccessClaims, Option<Db>), ApiError> {
    let claims = authenticate(ctx, req)?;
    let counter = Counter::new(
        &store.redis_key_prefix,
        "account",
        claims.user.as_str(),
        ctx.config.rate_limit(RateLimitName::LoginPair)?,
    );
    let reads = [generation_key(&store.redis_key_prefix, &claims)];
    let seen = check_rate_limit_reading(ctx, redis, &[counter], &reads)?
        .and_then(|mut values| values.pop().flatten());
    let db = check_generation(
        ctx,
        redis,
        &store.redis_key_prefix,
        &claims,
        Seen::from_reply(seen.as_deref()),
        || Db::open(&store.db_url),
    )?;
    Ok((claims, db))
}

/// `POST /auth/logout-all`: ends every session of the caller (refresh tokens revoked,
/// access tokens refused from the next request on).
fn logout_all(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let (claims, db) = account_caller(ctx, req, &store, &redis)?;
    let db = match db {
        Some(db) => db,
        None => Db::open(&store.db_url)?,
    };
    let generation = repo::revoke_all_sessions(&db, &claims.user)?;
    drop(db);
    sessions_ended(ctx, &redis, &store, &claims.user, generation)
}

/// The end of a route that revoked every session of `user` in PostgreSQL: the new
/// generation (`None`: the user is gone, 401) goes to Redis, and the answer is 204.
fn sessions_ended(
    ctx: &mut Ctx,
    redis: &Redis,
    store: &StoreSettings,
    user: &Uuid,
    generation: Option<i64>,
) -> Result<Response, ApiError> {
    let generation = generation.ok_or(ApiError::InvalidAccessToken(
        "the token's user no longer exists",
    ))?;
    store_generation(ctx, redis, &store.redis_key_prefix, user, generation, true);
    Ok(http::no_content())
}

/// `POST /auth/password` `{current_password, new_password}`: checks the current password,
/// applies the new-password policy, then sets the new hash and ends every session, in one
/// statement. No connection is held while hashing.
fn change_password(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let (claims, db) = account_caller(ctx, req, &store, &redis)?;

    let mut body = ctx.json_body(req)?;
    let current = body.required_str("current_password");
    let current = body.parse_with("current_password", current, Password::parse);
    let new = body.required_str("new_password");
    // The length now; the rules that need the account once it is read.
    let new_checked = body.parse_with("new_password", new.clone(), Password::parse);
    body.finish()?;
    let current = current.ok_or_else(|| missing("current_password"))?;
    let new = new.ok_or_else(|| missing("new_password"))?;
    new_checked.ok_or_else(|| missing("new_password"))?;

    let db = match db {
        Some(db) => db,
        None => Db::open(&store.db_url)?,
    };
    let account = repo::find_account(&db, &claims.user)?.ok_or(ApiError::InvalidAccessToken(
        "the token's user no longer exists",
    ))?;
    drop(db); // released before argon2
    let new = Password::parse_new(&new, Some(&account.username), Some(&account.email))
        .map_err(|message| ApiError::invalid_field("new_password", message))?;
    if !passwords::verify(&current, Some(&account.password_hash)) {
        return Err(ApiError::InvalidCredentials);
    }
    let hash = passwords::hash(&new)?;

    let db = Db::open(&store.db_url)?;
    let generation = repo::change_password(&db, &claims.user, &hash)?;
    drop(db);
    sessions_ended(ctx, &redis, &store, &claims.user, generation)
}

/// `GET /me`: the caller's account (`id`, `username`, `email`, `created_at`). Counted
/// against the caller's API limit (`rate_limit_api`, the budget of the `/todos` routes),
/// not the stricter account limit of the routes that check passwords.
fn me(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let claims = authenticate(ctx, req)?;
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let counter = Counter::new(
        &store.redis_key_prefix,
        "user",
        claims.user.as_str(),
        ctx.config.rate_limit(RateLimitName::Api)?,
    );
    let reads = [generation_key(&store.redis_key_prefix, &claims)];
    let seen = check_rate_limit_reading(ctx, &redis, &[counter], &reads)?
        .and_then(|mut values| values.pop().flatten());
    let db = check_generation(
        ctx,
        &redis,
        &store.redis_key_prefix,
        &claims,
        Seen::from_reply(seen.as_deref()),
        || Db::open(&store.db_url),
    )?;
    let db = match db {
        Some(db) => db,
        None => Db::open(&store.db_url)?,
    };
    let user = repo::find_new_user(&db, &claims.user)?.ok_or(ApiError::InvalidAccessToken(
        "the token's user no longer exists",
    ))?;
    http::json(200, &user)
}

/// `DELETE /me` `{"password": ...}`: checks the password, then deletes the account with
/// its todos, sessions and keys in one statement (`repo::delete_account`). The account
/// can no longer log in (401 `invalid-credentials`, as for any unknown user), and its
/// access tokens are refused from the next request on: the token generation in Redis is
/// set to the maximum (and without a Redis copy, the lookup finds no user: 401 too).
/// Counted against the account limit, like a password change.
fn delete_me(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let (claims, db) = account_caller(ctx, req, &store, &redis)?;
    let mut body = ctx.json_body(req)?;
    let password = body.required_str("password");
    let password = body.parse_with("password", password, Password::parse);
    body.finish()?;
    let password = password.ok_or_else(|| missing("password"))?;

    let db = match db {
        Some(db) => db,
        None => Db::open(&store.db_url)?,
    };
    let gone = || ApiError::InvalidAccessToken("the token's user no longer exists");
    let account = repo::find_account(&db, &claims.user)?.ok_or_else(gone)?;
    drop(db); // released before argon2
    if !passwords::verify(&password, Some(&account.password_hash)) {
        return Err(ApiError::InvalidCredentials);
    }
    let db = Db::open(&store.db_url)?;
    if !repo::delete_account(&db, &claims.user)? {
        return Err(gone());
    }
    drop(db);
    store_generation(
        ctx,
        &redis,
        &store.redis_key_prefix,
        &claims.user,
        i64::MAX,
        true,
    );
    Ok(http::no_content())
}

fn jwks(ctx: &Ctx) -> Result<Response, ApiError> {
    let settings = ctx.config.tokens()?;
    let key = tokens::verifying_key(&settings)?;
    let mut resp = http::json_bytes(200, key.jwks_json().into_bytes());
    resp.set_header("content-type", "application/jwk-set+json");
    // Public and stable: verifiers may cache it (a rotated key keeps its old kid published).
    resp.set_header("cache-control", "public, max-age=300");
    Ok(resp)
}
