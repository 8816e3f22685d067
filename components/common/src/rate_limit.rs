//! Fixed-window rate limiting in Redis, atomic and in one round trip.
//!
//! The tutorial's limiter did `GET`, `INCR`, `EXPIRE` as three commands: two clients could
//! both read "under the limit", and a crash between `INCR` and `EXPIRE` left a counter that
//! never expired. Here one Lua script (sent with `EVAL` through spin-sdk's `execute`) does
//! every counter's `INCR` and first-hit `EXPIRE` atomically, and can also read one cache
//! entry in the same round trip, so an authenticated `GET /todos` cache hit costs a single
//! Redis round trip.
//!
//! This module is pure (script text, keys, decoding the reply); `crate::store::redis`
//! runs it.

/// The script. `KEYS[1..n]` are counters, `KEYS[n+1..]` keys to read (`GET`) when the
/// request is allowed (a cache entry, the token generation: `crate::revocation`).
/// `ARGV[1]` = n, then `limit, window_seconds` per counter.
/// Reply (flat, because Spin flattens nested arrays): `count_1, ttl_1, ..., count_n, ttl_n`
/// and, when the request is allowed, each read key's value (nil if absent).
pub const SCRIPT: &str = r#"
local n = tonumber(ARGV[1])
local out = {}
local allowed = true
for i = 1, n do
  local count = redis.call('INCR', KEYS[i])
  local ttl = redis.call('TTL', KEYS[i])
  if ttl < 0 then
    ttl = tonumber(ARGV[2 * i + 1])
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
  if count > tonumber(ARGV[2 * i]) then allowed = false end
end
if allowed then
  for i = n + 1, #KEYS do
    out[#out + 1] = redis.call('GET', KEYS[i])
  end
end
return out
"#;

/// A limit: at most `max_requests` per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// Window length in seconds.
    pub window_seconds: u32,
}

/// One counter to check: its Redis key and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Full Redis key, e.g. `todo:rl:login-user:alice`.
    pub key: String,
    /// The limit that applies to it.
    pub limit: Limit,
}

impl Counter {
    /// A counter named `{prefix}:rl:{scope}:{subject}`.
    pub fn new(prefix: &str, scope: &str, subject: &str, limit: Limit) -> Self {
        Self {
            key: format!("{prefix}:rl:{scope}:{subject}"),
            limit,
        }
    }
}

/// The outcome for one request, with what the `RateLimit-*` headers report: the most
/// constraining counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// `RateLimit-Limit`.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset` and, when refused, `Retry-After` (seconds, at least 1).
    pub reset_seconds: u32,
}

impl RateLimitDecision {
    /// The response headers that describe this decision.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_seconds.to_string()),
        ];
        if !self.allowed {
            headers.push(("retry-after", self.reset_seconds.to_string()));
        }
        headers
    }
}

/// The arguments of the `EVAL` call: keys (counters, then the keys to read) and argv.
pub fn eval_arguments(counters: &[Counter], reads: &[String]) -> (Vec<String>, Vec<String>) {
    let mut keys: Vec<String> = counters.iter().map(|c| c.key.clone()).collect();
    keys.extend(reads.iter().cloned());
    let mut argv = vec![counters.len().to_string()];
    for c in counters {
        argv.push(c.limit.max_requests.to_string());
        argv.push(c.limit.window_seconds.to_string());
    }
    (keys, argv)
}

/// A reply value, independent of the spin-sdk type so this module stays testable natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyValue {
    /// Integer reply.
    Int(i64),
    /// Bulk string reply.
    Bytes(Vec<u8>),
    /// Nil (Lua `false`).
    Nil,
}

/// What the script said: the decision and, for an allowed request, the values read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// The limiter's decision.
    pub decision: RateLimitDecision,
    /// One value per key asked to read, in order (`None`: absent), when allowed; empty
    /// when refused.
    pub reads: Vec<Option<Vec<u8>>>,
}

/// Decodes the script's reply for `reads` keys read. An unexpected shape is an error (the
/// caller fails open).
pub fn decode_reply(
    counters: &[Counter],
    reads: usize,
    reply: &[ReplyValue],
) -> Result<ScriptOutcome, String> {
    if counters.is_empty() {
        return Err("no counters".into());
    }
    if reply.len() < counters.len() * 2 {
        return Err(format!("short reply: {} values", reply.len()));
    }
    let mut decision: Option<RateLimitDecision> = None;
    for (i, counter) in counters.iter().enumerate() {
        let (ReplyValue::Int(count), ReplyValue::Int(ttl)) = (&reply[2 * i], &reply[2 * i + 1])
        else {
            return Err("counter values are not integers".into());
        };
        let limit = counter.limit.max_requests;
        let count = u32::try_from((*count).max(0)).unwrap_or(u32::MAX);
        let this = RateLimitDecision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            reset_seconds: u32::try_from((*ttl).max(1)).unwrap_or(u32::MAX),
        };
        decision = Some(match decision {
            None => this,
            // A refusing counter beats an allowing one; among equals, the one with fewer
            // remaining requests is the one a client must respect.
            Some(prev) if prev.allowed != this.allowed => {
                if this.allowed {
                    prev
                } else {
                    this
                }
            }
            Some(prev) if this.remaining < prev.remaining => this,
            Some(prev) => prev,
        });
    }
    let decision = decision.ok_or("no decision")?;
    let reads = if decision.allowed {
        (0..reads)
            .map(|i| match reply.get(counters.len() * 2 + i) {
                Some(ReplyValue::Bytes(b)) => Some(b.clone()),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ScriptOutcome { decision, reads })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(key: &str, max: u32) -> Counter {
        Counter {
            key: key.into(),
            limit: Limit {
                max_requests: max,
                window_seconds: 60,
            },
        }
    }

    #[test]
    fn arguments_follow_the_script_contract() {
        let cs = [counter("a", 5), counter("b", 7)];
        let (keys, argv) = eval_arguments(&cs, &["cache".into(), "gen".into()]);
        assert_eq!(keys, ["a", "b", "cache", "gen"]);
        assert_eq!(argv, ["2", "5", "60", "7", "60"]);
    }

    #[test]
    fn allowed_with_cache_hit() {
        let cs = [counter("u", 10)];
        let out = decode_reply(
            &cs,
            3,
            &[
                ReplyValue::Int(3),
                ReplyValue::Int(42),
                ReplyValue::Bytes(b"7\n[]".to_vec()),
                ReplyValue::Nil,
            ],
        )
        .unwrap();
        assert!(out.decision.allowed);
        assert_eq!(out.decision.remaining, 7);
        assert_eq!(out.decision.reset_seconds, 42);
        assert_eq!(out.reads, [Some(b"7\n[]".to_vec()), None, None]);
        assert_eq!(out.decision.headers().len(), 3);
    }

    #[test]
    fn refused_when_any_counter_is_over() {
        let cs = [counter("ip", 100), counter("user", 2)];
        let out = decode_reply(
            &cs,
            0,
            &[
                ReplyValue::Int(5),
                ReplyValue::Int(50),
                ReplyValue::Int(3),
                ReplyValue::Int(20),
            ],
        )
        .unwrap();
        assert!(!out.decision.allowed);
        assert_eq!(out.decision.limit, 2);
        assert_eq!(out.decision.remaining, 0);
        let headers = out.decision.headers();
        assert!(headers.contains(&("retry-after", "20".to_string())));
    }

    #[test]
    fn most_constraining_counter_is_reported() {
        let cs = [counter("ip", 100), counter("user", 10)];
        let out = decode_reply(
            &cs,
            0,
            &[
                ReplyValue::Int(5),
                ReplyValue::Int(50),
                ReplyValue::Int(8),
                ReplyValue::Int(20),
            ],
        )
        .unwrap();
        assert!(out.decision.allowed);
        assert_eq!((out.decision.limit, out.decision.remaining), (10, 2));
    }

    #[test]
    fn malformed_replies_are_errors() {
        let cs = [counter("u", 10)];
        assert!(decode_reply(&cs, 0, &[ReplyValue::Int(1)]).is_err());
        assert!(decode_reply(&cs, 0, &[ReplyValue::Nil, ReplyValue::Int(1)]).is_err());
    }
}
