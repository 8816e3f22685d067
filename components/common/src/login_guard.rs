//! Login throttling that nobody else can turn into a lockout.
//!
//! The old limiter refused a username after 10 failures from *any* address, so anyone could
//! keep a user out by sending wrong passwords. Here no refusal depends only on the username:
//!
//! 1. **Per address** (`rate_limit_login_address`, 30/60 s): every login attempt from one
//!    client address, whatever the username. Bounds what one address can do at all.
//! 2. **Per username and address** (`rate_limit_login_pair`, 10/900 s): failed logins for
//!    one username from one address. Over it, *that address* is refused for *that
//!    username* (429) before any password is hashed. Other addresses, the real user's
//!    among them, are unaffected.
//! 3. **Per username, from everywhere** (`rate_limit_login_username`, 50/3600 s): failed
//!    logins for the username from all addresses. Over it the account is under a
//!    distributed attack and the **guard** engages, which never refuses a first try: an
//!    address that has logged in to the account successfully in the last
//!    [`KNOWN_ADDRESS_TTL_SECONDS`] (a "known" address) carries on as usual, and any other
//!    address gets one evaluated attempt per `login_guard_interval_seconds` (300 s) for the
//!    username; a second attempt within the interval is a 429 whose `Retry-After` is the
//!    wait. So the guard degrades to a *delay* for the right password (at worst one
//!    interval after a typo, from a new address), never to a refusal, while a botnet's
//!    guessing rate per address drops from 10 per 15 minutes to 1 per 5 minutes.
//!
//! Attempts are counted as failures *before* the password is checked (in the same atomic
//! script as the checks, so concurrent guesses cannot all slip under a limit) and a
//! success gives its count back ([`SUCCESS_SCRIPT`]) and marks the address as known.
//! One `EVAL` before the hash, and one more after a success; Redis down: fails open
//! (logged), like every limiter here.
//!
//! What remains possible: a client sharing the real user's address (same NAT) shares
//! the pair counter; an attacker who knows the password is not a guesser.
//!
//! This module is pure (scripts, keys, decoding); `crate::http::check_login_guard` runs it.

use crate::rate_limit::{Limit, RateLimitDecision, ReplyValue};

/// How long a successful login makes its address "known" for the username (30 days).
pub const KNOWN_ADDRESS_TTL_SECONDS: u32 = 30 * 24 * 3600;

/// The check before the password hash. `KEYS`: address counter, pair failures, username
/// failures, known-address marker, guard slot. `ARGV`: address limit and window, pair
/// limit and window, username threshold and window, guard interval.
/// Reply: `allowed (0/1), refusing rule (0 none, 1 address, 2 pair, 3 guard), limit,
/// count, ttl` (the numbers for the `RateLimit-*` headers).
pub const CHECK_SCRIPT: &str = r#"
local function hit(key, window)
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if ttl < 0 then
    ttl = tonumber(window)
    redis.call('EXPIRE', key, ttl)
  end
  return count, ttl
end
local function ttl_of(key)
  local ttl = redis.call('TTL', key)
  if ttl < 1 then ttl = 1 end
  return ttl
end
local count, ttl = hit(KEYS[1], ARGV[2])
if count > tonumber(ARGV[1]) then
  return {0, 1, tonumber(ARGV[1]), count, ttl}
end
local pair_limit = tonumber(ARGV[3])
local pair = tonumber(redis.call('GET', KEYS[2]) or '0')
if pair >= pair_limit then
  return {0, 2, pair_limit, pair, ttl_of(KEYS[2])}
end
local failures = tonumber(redis.call('GET', KEYS[3]) or '0')
if failures >= tonumber(ARGV[5]) and redis.call('EXISTS', KEYS[4]) == 0 then
  if not redis.call('SET', KEYS[5], '1', 'NX', 'EX', tonumber(ARGV[7])) then
    return {0, 3, 1, 1, ttl_of(KEYS[5])}
  end
end
local pair_count, pair_ttl = hit(KEYS[2], ARGV[4])
hit(KEYS[3], ARGV[6])
return {1, 0, pair_limit, pair_count, pair_ttl}
"#;

/// After a successful login: the attempt was not a failure (give back the pair and
/// username counts, never below zero), the address is now known for the username, and
/// the user's token generation is stored as `crate::revocation::SET_MAX_SCRIPT` does (never
/// lowered), in the same round trip. `KEYS`: pair failures, username failures,
/// known-address marker, generation copy. `ARGV`: the marker's lifetime, the generation,
/// its copy's lifetime.
pub const SUCCESS_SCRIPT: &str = concat!(
    "for i = 1, 2 do\n",
    "  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then\n",
    "    redis.call('DECR', KEYS[i])\n",
    "  end\n",
    "end\n",
    "redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[1]))\n",
    crate::revocation::store_larger_generation_lua!("KEYS[4]", "ARGV[2]", "ARGV[3]"),
    "return 1\n"
);

/// The limits in force (from the variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Attempts per address (`rate_limit_login_address`).
    pub address: Limit,
    /// Failures per username and address (`rate_limit_login_pair`).
    pub pair: Limit,
    /// Failures per username before the guard engages (`rate_limit_login_username`).
    pub username: Limit,
    /// Under the guard, one attempt per this many seconds per unknown address
    /// (`login_guard_interval_seconds`).
    pub guard_interval_seconds: u32,
}

/// The Redis keys of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardKeys {
    address: String,
    pair: String,
    username: String,
    known: String,
    guard: String,
}

impl GuardKeys {
    /// The keys for `username` (normalised) logging in from `address`.
    pub fn new(prefix: &str, username: &str, address: &str) -> Self {
        Self {
            address: format!("{prefix}:rl:login-address:{address}"),
            pair: format!("{prefix}:rl:login-pair:{username}:{address}"),
            username: format!("{prefix}:rl:login-username:{username}"),
            known: format!("{prefix}:login-known:{username}:{address}"),
            guard: format!("{prefix}:rl:login-guard:{username}:{address}"),
        }
    }

    /// Keys and arguments of [`CHECK_SCRIPT`].
    pub fn check_arguments(&self, limits: &GuardLimits) -> (Vec<String>, Vec<String>) {
        let keys = vec![
            self.address.clone(),
            self.pair.clone(),
            self.username.clone(),
            self.known.clone(),
            self.guard.clone(),
        ];
        let args = [
            limits.address.max_requests,
            limits.address.window_seconds,
            limits.pair.max_requests,
            limits.pair.window_seconds,
            limits.username.max_requests,
            limits.username.window_seconds,
            limits.guard_interval_seconds,
        ]
        .iter()
        .map(u32::to_string)
        .collect();
        (keys, args)
    }

    /// Keys and arguments of [`SUCCESS_SCRIPT`] for the user's generation copy
    /// (`crate::revocation::key`) and current generation.
    pub fn success_arguments(
        &self,
        generation_key: &str,
        generation: i64,
    ) -> (Vec<String>, Vec<String>) {
        (
            vec![
                self.pair.clone(),
                self.username.clone(),
                self.known.clone(),
                generation_key.to_owned(),
            ],
            vec![
                KNOWN_ADDRESS_TTL_SECONDS.to_string(),
                generation.to_string(),
                crate::revocation::GENERATION_TTL_SECONDS.to_string(),
            ],
        )
    }
}

/// Which rule refused an attempt (for the log; the client sees one 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from the address.
    Address,
    /// Too many failures for this username from this address.
    Pair,
    /// The guard is engaged and this unknown address already tried within the interval.
    Guard,
}

impl Refusal {
    /// For the log line.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Address => "login-address",
            Refusal::Pair => "login-pair",
            Refusal::Guard => "login-guard",
        }
    }
}

/// Decodes [`CHECK_SCRIPT`]'s reply: the decision for the headers, and the refusing rule.
pub fn decode_check(reply: &[ReplyValue]) -> Result<(RateLimitDecision, Option<Refusal>), String> {
    let mut ints = [0i64; 5];
    if reply.len() != ints.len() {
        return Err(format!("login guard reply has {} values", reply.len()));
    }
    for (slot, value) in ints.iter_mut().zip(reply) {
        let ReplyValue::Int(n) = value else {
            return Err("login guard reply values are not integers".into());
        };
        *slot = *n;
    }
    let [allowed, rule, limit, count, ttl] = ints;
    let clamp = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let (limit, count) = (clamp(limit), clamp(count));
    let refusal = match (allowed, rule) {
        (1, _) => None,
        (_, 1) => Some(Refusal::Address),
        (_, 2) => Some(Refusal::Pair),
        (_, 3) => Some(Refusal::Guard),
        _ => return Err(format!("login guard reply names rule {rule}")),
    };
    let decision = RateLimitDecision {
        allowed: refusal.is_none(),
        limit,
        remaining: if refusal.is_some() {
            0
        } else {
            limit.saturating_sub(count)
        },
        reset_seconds: clamp(ttl).max(1),
    };
    Ok((decision, refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GuardLimits {
        let limit = |max_requests, window_seconds| Limit {
            max_requests,
            window_seconds,
        };
        GuardLimits {
            address: limit(30, 60),
            pair: limit(10, 900),
            username: limit(50, 3600),
            guard_interval_seconds: 300,
        }
    }

    #[test]
    fn keys_separate_usernames_and_addresses() {
        let keys = GuardKeys::new("todo", "alice", "10.0.0.1");
        let (k, a) = keys.check_arguments(&limits());
        assert_eq!(
            k,
            [
                "todo:rl:login-address:10.0.0.1",
                "todo:rl:login-pair:alice:10.0.0.1",
                "todo:rl:login-username:alice",
                "todo:login-known:alice:10.0.0.1",
                "todo:rl:login-guard:alice:10.0.0.1",
            ]
        );
        assert_eq!(a, ["30", "60", "10", "900", "50", "3600", "300"]);
        let (k, a) = keys.success_arguments("todo:tokgen:u", 4);
        assert_eq!(
            k,
            [
                keys.pair.clone(),
                keys.username.clone(),
                keys.known.clone(),
                "todo:tokgen:u".into()
            ]
        );
        assert_eq!(
            a,
            [
                KNOWN_ADDRESS_TTL_SECONDS.to_string(),
                "4".into(),
                "86400".into()
            ]
        );
        assert_ne!(GuardKeys::new("todo", "alice", "10.0.0.2").pair, keys.pair);
    }

    fn reply(values: [i64; 5]) -> Vec<ReplyValue> {
        values.iter().map(|n| ReplyValue::Int(*n)).collect()
    }

    #[test]
    fn decodes_allowed_and_each_refusal() {
        let (d, r) = decode_check(&reply([1, 0, 10, 3, 800])).unwrap();
        assert_eq!(r, None);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining, d.reset_seconds), (10, 7, 800));
        for (rule, refusal) in [
            (1, Refusal::Address),
            (2, Refusal::Pair),
            (3, Refusal::Guard),
        ] {
            let (d, r) = decode_check(&reply([0, rule, 10, 10, 120])).unwrap();
            assert_eq!(r, Some(refusal));
            assert!(!d.allowed);
            assert_eq!((d.remaining, d.reset_seconds), (0, 120));
            assert!(d.headers().contains(&("retry-after", "120".into())));
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(decode_check(&reply([0, 9, 1, 1, 1])).is_err());
        assert!(decode_check(&[ReplyValue::Int(1)]).is_err());
        let mut r = reply([1, 0, 1, 1, 1]);
        r[3] = ReplyValue::Nil;
        assert!(decode_check(&r).is_err());
    }
}
