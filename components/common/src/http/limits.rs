//! The per-request use of Redis: the rate-limit check (one Lua script, which can read a
//! cache entry in the same round trip), the login throttle, and the record of carrying on
//! without Redis.

use super::Ctx;
use crate::domain::Uuid;
use crate::error::ApiError;
use crate::log;
use crate::login_guard::{self, GuardKeys, GuardLimits};
use crate::rate_limit::{self, Counter};
use crate::revocation;
use crate::store::Redis;

/// Logs a Redis failure once per request and marks the request degraded.
pub fn redis_degraded(ctx: &mut Ctx, what: &'static str, detail: &str) {
    if !ctx.degraded.contains(&"redis") {
        ctx.degraded.push("redis");
    }
    log::event(
        "warn",
        "redis unavailable, continuing without it",
        &[
            ("component", ctx.component),
            ("request_id", &ctx.request_id),
            ("operation", what),
            ("detail", &log::sanitize(detail)),
        ],
    );
}

/// Counts this request against `counters` and, in the same round trip, reads
/// `cache_key`. Refused → `Err(RateLimited)`; Redis failure → allowed (fail open), logged.
pub fn check_rate_limit(
    ctx: &mut Ctx,
    redis: &Redis,
    counters: &[Counter],
    cache_key: Option<&str>,
) -> Result<Option<Vec<u8>>, ApiError> {
    let reads: Vec<String> = cache_key.map(str::to_owned).into_iter().collect();
    Ok(check_rate_limit_reading(ctx, redis, counters, &reads)?
        .and_then(|mut values| values.drain(..).next().flatten()))
}

/// Counts this request against `counters` and, in the same round trip, reads `reads`
/// (each `None` when absent). Refused → `Err(RateLimited)`; Redis failure → `Ok(None)`
/// (fail open), logged.
#[allow(clippy::type_complexity)]
pub fn check_rate_limit_reading(
    ctx: &mut Ctx,
    redis: &Redis,
    counters: &[Counter],
    reads: &[String],
) -> Result<Option<Vec<Option<Vec<u8>>>>, ApiError> {
    let (keys, args) = rate_limit::eval_arguments(counters, reads);
    let reply = match redis.eval(rate_limit::SCRIPT, &keys, &args) {
        Ok(reply) => reply,
        Err(e) => {
            redis_degraded(ctx, "rate-limit", &e);
            return Ok(None);
        }
    };
    match rate_limit::decode_reply(counters, reads.len(), &reply) {
        Ok(outcome) => {
            ctx.rate_limit = Some(outcome.decision);
            if outcome.decision.allowed {
                Ok(Some(outcome.reads))
            } else {
                Err(ApiError::RateLimited(outcome.decision))
            }
        }
        Err(e) => {
            redis_degraded(ctx, "rate-limit", &e);
            Ok(None)
        }
    }
}

/// Stores a user's token generation in Redis ([`crate::revocation::SET_MAX_SCRIPT`]: never
/// lowers it). Best effort, skipped when Redis already failed in this request; a failure is
/// logged at `error` when `after_revocation` (older access tokens may then live until they
/// expire: `crate::revocation`), at `warn` otherwise.
pub fn store_generation(
    ctx: &mut Ctx,
    redis: &Redis,
    prefix: &str,
    user: &Uuid,
    generation: i64,
    after_revocation: bool,
) {
    if !ctx.degraded.is_empty() && !after_revocation {
        return;
    }
    let (keys, args) = revocation::set_max_arguments(prefix, user, generation);
    if let Err(e) = redis.eval(revocation::SET_MAX_SCRIPT, &keys, &args) {
        if after_revocation {
            log::event(
                "error",
                "revocation not stored in redis; older access tokens live until they expire",
                &[
                    ("component", ctx.component),
                    ("request_id", &ctx.request_id),
                    ("user_id", user.as_str()),
                    ("detail", &log::sanitize(&e)),
                ],
            );
        }
        redis_degraded(ctx, "token-generation", &e);
    }
}

/// The login throttle before the password is checked ([`crate::login_guard`]): counts the
/// attempt as a failure until [`record_login_success`] gives it back. Refused →
/// `Err(RateLimited)` (the rule is logged); Redis failure → allowed (fail open), logged.
pub fn check_login_guard(
    ctx: &mut Ctx,
    redis: &Redis,
    keys: &GuardKeys,
    limits: &GuardLimits,
) -> Result<(), ApiError> {
    let (keys, args) = keys.check_arguments(limits);
    let reply = match redis.eval(login_guard::CHECK_SCRIPT, &keys, &args) {
        Ok(reply) => reply,
        Err(e) => {
            redis_degraded(ctx, "login-guard", &e);
            return Ok(());
        }
    };
    match login_guard::decode_check(&reply) {
        Ok((decision, refusal)) => {
            ctx.rate_limit = Some(decision);
            match refusal {
                None => Ok(()),
                Some(rule) => {
                    log::event(
                        "info",
                        "login refused by the throttle",
                        &[
                            ("component", ctx.component),
                            ("request_id", &ctx.request_id),
                            ("rule", rule.name()),
                        ],
                    );
                    Err(ApiError::RateLimited(decision))
                }
            }
        }
        Err(e) => {
            redis_degraded(ctx, "login-guard", &e);
            Ok(())
        }
    }
}

/// After a successful login: gives the attempt's failure count back, marks the address as
/// known for the username, and stores the user's token generation. Best effort (a failure
/// is logged, the login stands).
pub fn record_login_success(
    ctx: &mut Ctx,
    redis: &Redis,
    keys: &GuardKeys,
    prefix: &str,
    user: &Uuid,
    generation: i64,
) {
    if !ctx.degraded.is_empty() {
        return; // Redis already failed in this request
    }
    let (keys, args) = keys.success_arguments(&revocation::key(prefix, user), generation);
    if let Err(e) = redis.eval(login_guard::SUCCESS_SCRIPT, &keys, &args) {
        redis_degraded(ctx, "login-success", &e);
    }
}
