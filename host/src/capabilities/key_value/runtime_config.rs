//! This capability's runtime-config table: Spin's `[key_value_store.<label>]` (unknown
//! fields and types are errors with file and line), as Spin documents it
//! (spinframework.dev, "Runtime Configuration", key-value):
//!
//! - `type = "spin"`, optional `path`: a SQLite file with Spin's own schema (one
//!   `spin_key_value (store, key, value)` table, spinframework/spin
//!   `crates/key-value-spin/src/store.rs`), so a file Spin wrote is read here and the other
//!   way round. A relative `path` is taken from the runtime-config file's directory. Without
//!   `path`, the store lives in the app's state directory, where the built-in `default`
//!   store is: `<manifest dir>/.spin/sqlite_key_value.db`, as `spin up` puts it.
//! - `type = "redis"`, `url`: keys and values in that Redis, one Redis key per store key
//!   (Spin's `key-value-redis`), over the redis capability's connections (so
//!   `[edge_host.redis]` timeouts and `ca_cert_path` apply).
//!
//! Spin's cloud store types (`azure_cosmos`, `aws_dynamo`) are refused by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[key_value_store.*]`, keyed by label; put into `[edge_host]`'s config by the loader.
#[derive(Debug, Default, Clone)]
pub struct KeyValueConfig {
    pub stores: BTreeMap<String, KeyValueStoreConfig>,
    /// The directory relative `path`s are taken from (the runtime-config file's).
    pub base_dir: Option<PathBuf>,
}

/// One `[key_value_store.<label>]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyValueStoreConfig {
    /// SQLite, Spin's built-in store.
    Spin {
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// A Redis server.
    Redis { url: String },
}
