//! This capability's runtime-config table, `[edge_host.redis]` (unknown fields are errors).
//! Spin 3.6 has no such table; Spin 4.1's `[outbound_redis] max_connections` is the
//! nearest equivalent, which edge-host does not read yet.

use serde::Deserialize;

/// `[edge_host.redis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Timeout for connecting and for each command, so a dead server fails fast.
    #[serde(default = "RedisConfig::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl RedisConfig {
    fn default_timeout_ms() -> u64 {
        2_000
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            timeout_ms: Self::default_timeout_ms(),
        }
    }
}
