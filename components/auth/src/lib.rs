//! The `auth` component: `POST /auth/register`, `/auth/login`, `/auth/refresh`,
//! `/auth/logout` and `GET /.well-known/jwks.json`.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p auth`. The handlers are thin:
//! validation, tokens, hashing and SQL live in the `common` crate.
//!
//! ## Host round trips per request
//! At most one Redis connection (opened on the first command) and one PostgreSQL checkout
//! per request; routes without a rate limit open no Redis connection at all.
//!
//! | request | Redis | PostgreSQL |
//! |---|---|---|
//! | `POST /auth/login` | 1 connection, 1 `EVAL` (the throttle: address, username+address, username guard; `common::login_guard`), a success 1 more (`EVAL`: give the count back, mark the address known) | 1 checkout: credentials lookup, then the refresh-token family insert |
//! | `POST /auth/register` | 1 connection, `EVAL` + `PUBLISH` (the job's wake-up) | 1 checkout, 1 statement (user + job); a conflict adds one lookup |
//! | `POST /auth/refresh` | none | 1 checkout, 1 statement; a reused token adds the revocation |
//! | `POST /auth/logout` | none | 1 checkout, 1 statement |
//! | `GET /.well-known/jwks.json` | none | none |
//!
//! An invalid login body is answered before any connection; a refused login (429) before
//! PostgreSQL and before the password hash. Guest CPU of a login is the argon2id pass
//! (`common::passwords`, tens of milliseconds); signing the access token adds about
//! 0.1 ms (deriving the public key to check the variable, then the signature).

use common::config::{Component, RateLimitName};
use common::domain::{Email, Password, Username};
use common::http::{self, check_login_guard, check_rate_limit, record_login_success, Ctx};
use common::login_guard::{GuardKeys, GuardLimits};
use common::rate_limit::Counter;
use common::repo::{self, Rotation};
use common::store::{Db, Redis, SpinVariables};
use common::tokens::{self, RefreshToken};
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
        "/.well-known/jwks.json" => ("/.well-known/jwks.json", "GET"),
        _ => return Err(ApiError::NotFound),
    };
    ctx.route = route;
    match route {
        "/auth/register" if post => register(ctx, req),
        "/auth/login" if post => login(ctx, req),
        "/auth/refresh" if post => refresh(ctx, req),
        "/auth/logout" if post => logout(ctx, req),
        "/.well-known/jwks.json" if *req.method() == Method::Get => jwks(ctx),
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
    let password = body.parse_with("password", password, Password::parse);
    body.finish()?;
    let username = username.ok_or_else(|| missing("username"))?;
    let email = email.ok_or_else(|| missing("email"))?;
    let password = password.ok_or_else(|| missing("password"))?;

    let jobs_channel = ctx.config.jobs_channel()?;
    let password_hash = passwords::hash(&password)?;
    let db = Db::open(&store.db_url)?;
    let welcome = jobs::welcome_email(&username, &email);
    match repo::insert_user(&db, &username, &email, &password_hash, &welcome)? {
        Some(registration) => {
            ctx.user_id = Some(registration.user.id.clone());
            publish_job(ctx, &redis, &jobs_channel, &registration.welcome_job_id);
            http::json(201, &registration.user)
        }
        None => Err(repo::registration_conflict(&db, &username, &email)?),
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

    let db = Db::open(&store.db_url)?;
    let credentials = repo::find_credentials(&db, &username)?;
    // Unknown user and wrong password: same work (one argon2 pass), same error.
    let user = passwords::check_credentials(&password, credentials)?;
    ctx.user_id = Some(user.to_string());
    record_login_success(ctx, &redis, &guard);

    let access_token =
        key.issue_access_token(&user, &settings, lifetimes.access_token_ttl_seconds)?;
    let refresh_token = RefreshToken::generate()?;
    repo::start_refresh_family(
        &db,
        &user,
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
        Rotation::Rotated { user } => {
            ctx.user_id = Some(user.to_string());
            http::json(
                200,
                &TokenPair {
                    access_token: key.issue_access_token(
                        &user,
                        &settings,
                        lifetimes.access_token_ttl_seconds,
                    )?,
                    token_type: "Bearer",
                    expires_in: lifetimes.access_token_ttl_seconds,
                    refresh_token: replacement.as_str(),
                },
            )
        }
        Rotation::ReuseDetected => {
            log::event(
                "warn",
                "refresh token reused: its family is revoked",
                &[("component", "auth"), ("request_id", &ctx.request_id)],
            );
            Err(ApiError::InvalidRefreshToken)
        }
        Rotation::Invalid => Err(ApiError::InvalidRefreshToken),
    }
}

fn logout(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    let presented = refresh_token_body(ctx, req)?;
    let db = Db::open(&ctx.config.db_url()?)?;
    // 204 whether or not the token was known: logout is idempotent and not an oracle.
    repo::revoke_refresh_family(&db, presented.hash())?;
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
