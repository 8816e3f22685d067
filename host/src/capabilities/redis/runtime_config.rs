//! This capability's runtime-config tables (unknown fields are errors):
//!
//! - `[outbound_redis]`, Spin 4.1's own table. Spin reads one field, `max_connections`
//!   (spinframework/spin `crates/factor-outbound-redis/src/runtime_config/spin.rs`:
//!   optional, unlimited when absent): the Redis connections the app has open at once,
//!   across all addresses, each guest `connection` holding a permit until it is dropped
//!   (the same `ConnectionSemaphore` as `[outbound_pg]`). edge-host does the same with its
//!   guest handles; on the wire it has one multiplexed connection per address whatever the
//!   setting. Spin waits for a permit without limit; edge-host at most
//!   `[edge_host.redis] acquire_timeout_ms`, then `open` fails with `error::other` naming
//!   the limit.
//! - `[edge_host.redis]`, edge-host's own tuning, which Spin does not have.

use serde::Deserialize;

/// `[outbound_redis]`, as Spin 4.1 reads it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRedisConfig {
    /// Guest Redis connections open at once for the whole app; `None`: no limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// `[edge_host.redis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Timeout for connecting and for each command, so a dead server fails fast.
    #[serde(default = "RedisConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long `open` waits for an `[outbound_redis] max_connections` permit.
    #[serde(default = "RedisConfig::default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// A PEM file of CA certificates that `rediss://` servers' certificates must chain to,
    /// instead of the system's roots (for a private CA; read at the first connection).
    #[serde(default)]
    pub ca_cert_path: Option<std::path::PathBuf>,
    /// Spin's `[outbound_redis]` table, put here by the runtime-config loader.
    #[serde(skip)]
    pub outbound: OutboundRedisConfig,
}

impl RedisConfig {
    fn default_timeout_ms() -> u64 {
        2_000
    }
    fn default_acquire_timeout_ms() -> u64 {
        5_000
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.outbound.max_connections == Some(0) {
            return Err("field `outbound_redis.max_connections` must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            timeout_ms: Self::default_timeout_ms(),
            acquire_timeout_ms: Self::default_acquire_timeout_ms(),
            ca_cert_path: None,
            outbound: OutboundRedisConfig::default(),
        }
    }
}
