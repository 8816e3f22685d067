//! The per-request use of Redis: the rate-limit check (one Lua script, which can read a
//! cache entry in the same round trip), the login throttle, and the record of carrying on
//! without Redis.

use super::Ctx;
use crate::error::ApiError;
use crate::log;
use crate::login_guard::{self, GuardKeys, GuardLimits};
use crate::rate_limit::{self, Counter};
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
    let (keys, args) = rate_limit::eval_arguments(counters, cache_key);
    let reply = match redis.eval(rate_limit::SCRIPT, &keys, &args) {
        Ok(reply) => reply,
        Err(e) => {
            redis_degraded(ctx, "rate-limit", &e);
            return Ok(None);
        }
    };
    match rate_limit::decode_reply(counters, &reply) {
        Ok(outcome) => {
            ctx.rate_limit = Some(outcome.decision);
            if outcome.decision.allowed {
                Ok(outcome.cached)
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

/// After a successful login: gives the attempt's failure count back and marks the address
/// as known for the username. Best effort (a failure is logged, the login stands).
pub fn record_login_success(ctx: &mut Ctx, redis: &Redis, keys: &GuardKeys) {
    if !ctx.degraded.is_empty() {
        return; // Redis already failed in this request
    }
    let (keys, args) = keys.success_arguments();
    if let Err(e) = redis.eval(login_guard::SUCCESS_SCRIPT, &keys, &args) {
        redis_degraded(ctx, "login-success", &e);
    }
}
