//! The per-request use of Redis: the rate-limit check (one Lua script, which can read a
//! cache entry in the same round trip) and the record of carrying on without Redis.

use super::Ctx;
use crate::error::ApiError;
use crate::log;
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
