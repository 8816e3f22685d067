//! This capability's runtime-config tables (unknown fields are errors):
//!
//! - `[outbound_pg]`, Spin 4.1's own table. Spin reads one field, `max_connections`
//!   (spinframework/spin `crates/factor-outbound-pg/src/runtime_config/spin.rs`: optional,
//!   unlimited when absent), and caps with it the PostgreSQL connections the app has open
//!   at once, across all addresses: each guest `connection` holds a permit from one
//!   semaphore until it is dropped (`crates/factor-outbound-pg/src/lib.rs`,
//!   `build_connection_semaphore(.., "pg", config.max_connections, ..)`). edge-host does
//!   the same, and also sizes each address's pool to it, so no address ever has more open.
//!   Spin waits for a permit without limit (its TOML sets no `wait_timeout`); edge-host
//!   waits at most `[edge_host.postgres] acquire_timeout_ms`, then the guest gets
//!   `connection-failed` naming the limit (the app answers 503).
//! - `[edge_host.postgres]`, edge-host's own tuning, which Spin does not have.

use serde::Deserialize;

/// `[outbound_pg]`, as Spin 4.1 reads it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundPgConfig {
    /// PostgreSQL connections open at once for the whole app; `None`: only the per-address
    /// pool size (`[edge_host.postgres] max_connections`) limits them.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// `[edge_host.postgres]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Pool size per connection string; requests beyond it wait for a free connection.
    #[serde(default = "PostgresConfig::default_max_connections")]
    pub max_connections: usize,
    /// How long a guest waits for a pooled connection (and for an `[outbound_pg]` permit)
    /// before `connection-failed`.
    #[serde(default = "PostgresConfig::default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Spin's `[outbound_pg]` table, put here by the runtime-config loader so the
    /// capability gets all its settings from one place.
    #[serde(skip)]
    pub outbound: OutboundPgConfig,
}

impl PostgresConfig {
    fn default_max_connections() -> usize {
        32
    }
    fn default_acquire_timeout_ms() -> u64 {
        5_000
    }

    /// Connections one address's pool may have open: the pool size, lowered to
    /// `[outbound_pg] max_connections` when that is smaller.
    pub fn pool_size(&self) -> usize {
        match self.outbound.max_connections {
            Some(cap) => cap.min(self.max_connections),
            None => self.max_connections,
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: Self::default_max_connections(),
            acquire_timeout_ms: Self::default_acquire_timeout_ms(),
            outbound: OutboundPgConfig::default(),
        }
    }
}

impl PostgresConfig {
    /// Checks what serde cannot: a pool needs at least one connection.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("field `edge_host.postgres.max_connections` must be at least 1".into());
        }
        if self.outbound.max_connections == Some(0) {
            return Err("field `outbound_pg.max_connections` must be at least 1".into());
        }
        Ok(())
    }
}
