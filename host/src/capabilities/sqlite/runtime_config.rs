//! This capability's runtime-config table: Spin's `[sqlite_database.<label>]` (unknown
//! fields and types are errors with file and line), as Spin documents it
//! (spinframework.dev, "Runtime Configuration", SQLite storage; spinframework/spin
//! `crates/sqlite/src/lib.rs`):
//!
//! - `type = "spin"`, optional `path`: a SQLite file, relative paths taken from the
//!   runtime-config file's directory. Without `path` the database is in memory, as in
//!   Spin (gone when the host stops).
//! - `[sqlite_database.default]` replaces the built-in `default` (a file in the state
//!   directory).
//!
//! Spin's remote `type = "libsql"` is refused by name: edge-host has no libSQL client.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[sqlite_database.*]`, keyed by label; put into `[edge_host]`'s config by the loader.
#[derive(Debug, Default, Clone)]
pub struct SqliteConfig {
    pub databases: BTreeMap<String, SqliteDatabaseConfig>,
    /// The directory relative `path`s are taken from (the runtime-config file's).
    pub base_dir: Option<PathBuf>,
}

/// One `[sqlite_database.<label>]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SqliteDatabaseConfig {
    /// A local file (or memory without `path`), Spin's built-in kind.
    Spin {
        #[serde(default)]
        path: Option<PathBuf>,
    },
}
