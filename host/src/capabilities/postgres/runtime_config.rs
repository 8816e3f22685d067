//! This capability's runtime-config table, `[edge_host.postgres]` (unknown fields are errors).
//! Spin 3.6 has no such table; Spin 4.1's `[outbound_pg] max_connections` is the
//! nearest equivalent, which edge-host does not read yet.

use serde::Deserialize;

/// `[edge_host.postgres]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Pool size per connection string; requests beyond it wait for a free connection.
    #[serde(default = "PostgresConfig::default_max_connections")]
    pub max_connections: usize,
    /// How long a guest waits for a pooled connection before `connection-failed`.
    #[serde(default = "PostgresConfig::default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

impl PostgresConfig {
    fn default_max_connections() -> usize {
        32
    }
    fn default_acquire_timeout_ms() -> u64 {
        5_000
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: Self::default_max_connections(),
            acquire_timeout_ms: Self::default_acquire_timeout_ms(),
        }
    }
}

impl PostgresConfig {
    /// Checks what serde cannot: a pool needs at least one connection.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("field `edge_host.postgres.max_connections` must be at least 1".into());
        }
        Ok(())
    }
}
