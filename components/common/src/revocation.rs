//! Revocation that ends access tokens, without a round trip of its own.
//!
//! Every user has a **token generation** (`users.token_generation`, PostgreSQL, the
//! truth), carried by each access token as claim `gen`. Logout, logout-all, a password
//! change and refresh-token reuse bump it in the same SQL statement that revokes the
//! refresh tokens; an access token whose `gen` is below the current generation is refused
//! (401 `invalid-token`, "token revoked").
//!
//! The hot path reads a copy in Redis, `{prefix}:tokgen:{user}`, with the `GET` inside
//! the rate-limit script every authenticated request already runs
//! (`crate::rate_limit::SCRIPT`'s reads), so checking costs no extra round trip. Writers
//! (login and every bump) store it with [`SET_MAX_SCRIPT`], which never lowers the value,
//! so a login that read generation 3 just before a logout bumped it to 4 cannot overwrite
//! the 4, whatever order their Redis writes arrive in.
//!
//! When Redis has no copy (expired after [`GENERATION_TTL_SECONDS`], Redis restarted or
//! flushed) or is unreachable, the request reads the generation from PostgreSQL (one
//! primary-key lookup) and, when Redis works, stores it for the next requests. So during a
//! Redis outage revocation still holds, at one extra PostgreSQL query per authenticated
//! request. The one gap: a bump whose Redis write fails while Redis keeps its older copy
//! (a network blip, not a restart) lets that user's older access tokens live until they
//! expire (`access_token_ttl_seconds`) or the copy does; it is logged at `error`.
//!
//! The generation is per user, not per session: a logout ends the access tokens of the
//! user's other sessions too (their refresh tokens stay valid and get new access tokens).
//!
//! This module is pure (key, script, decisions); `crate::http::check_generation` runs it.

use crate::domain::Uuid;

/// Lifetime of the Redis copy, refreshed by every login (1 day, the longest access-token
/// lifetime). Only how often PostgreSQL is asked depends on it, never correctness.
pub const GENERATION_TTL_SECONDS: u32 = 86_400;

/// `KEYS[1]` the copy, `ARGV[1]` a generation, `ARGV[2]` the TTL: stores the larger of the
/// stored and the given generation and refreshes the TTL. Returns the stored value.
pub const SET_MAX_SCRIPT: &str = concat!(
    store_larger_generation_lua!("KEYS[1]", "ARGV[1]", "ARGV[2]"),
    "return current\n"
);

/// Lua that stores the larger of the stored generation at `$key` and `$given`, with TTL
/// `$ttl`, leaving it in `current`. [`SET_MAX_SCRIPT`] and the login's success script
/// (`crate::login_guard::SUCCESS_SCRIPT`) both embed it, so the never-lower rule is
/// written once.
macro_rules! store_larger_generation_lua {
    ($key:literal, $given:literal, $ttl:literal) => {
        concat!(
            "local current = tonumber(redis.call('GET', ",
            $key,
            ") or '-1')\n",
            "local given = tonumber(",
            $given,
            ")\n",
            "if given > current then\n  current = given\nend\n",
            "redis.call('SET', ",
            $key,
            ", tostring(current), 'EX', tonumber(",
            $ttl,
            "))\n",
        )
    };
}
pub(crate) use store_larger_generation_lua;

/// The Redis key of a user's generation copy.
pub fn key(prefix: &str, user: &Uuid) -> String {
    format!("{prefix}:tokgen:{user}")
}

/// The arguments of [`SET_MAX_SCRIPT`].
pub fn set_max_arguments(prefix: &str, user: &Uuid, generation: i64) -> (Vec<String>, Vec<String>) {
    (
        vec![key(prefix, user)],
        vec![generation.to_string(), GENERATION_TTL_SECONDS.to_string()],
    )
}

/// What the rate-limit round trip said about the generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Redis holds this generation.
    Current(i64),
    /// No copy (absent, unreadable) or Redis failed: ask PostgreSQL.
    Unknown,
}

impl Seen {
    /// From the value the script read (`None`: absent or Redis failed).
    pub fn from_reply(value: Option<&[u8]>) -> Self {
        value
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok())
            .map_or(Seen::Unknown, Seen::Current)
    }
}

/// Whether a token issued at `token_generation` is revoked given the `current` one.
pub fn is_revoked(token_generation: i64, current: i64) -> bool {
    token_generation < current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert!(!is_revoked(3, 3));
        assert!(is_revoked(2, 3));
        assert!(
            !is_revoked(4, 3),
            "a stale copy below the token never refuses"
        );
        assert_eq!(Seen::from_reply(Some(b"12")), Seen::Current(12));
        assert_eq!(Seen::from_reply(Some(b"x")), Seen::Unknown);
        assert_eq!(Seen::from_reply(None), Seen::Unknown);
    }

    #[test]
    fn key_and_arguments() {
        let user = Uuid::parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap();
        assert_eq!(
            set_max_arguments("todo", &user, 5),
            (
                vec!["todo:tokgen:3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_string()],
                vec!["5".to_string(), "86400".to_string()]
            )
        );
    }
}
