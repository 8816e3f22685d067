//! The runtime configuration file (`--runtime-config-file`).
//!
//! Spin's runtime configuration binds platform resources (key-value stores, SQLite
//! databases, LLMs, variable providers) to an app. edge-host reads the same file; of those
//! bindings it implements `[key_value_store.*]` (`crate::capabilities::key_value`) and
//! `[sqlite_database.*]` (`crate::capabilities::sqlite`), and any other such table is an
//! error that names it;
//! its own tuning lives under `[edge_host.*]`, which real Spin would reject, so keep it
//! out of files shared with Spin. Unknown fields are errors with file and line.
//!
//! Spin 4.1's `[outbound_pg]` and `[outbound_redis]` tables (`max_connections`) are read
//! as Spin reads them and handed to their capabilities inside [`EdgeHostConfig`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::capabilities::key_value::{KeyValueConfig, KeyValueStoreConfig};
pub use crate::capabilities::postgres::{OutboundPgConfig, PostgresConfig};
pub use crate::capabilities::redis::{OutboundRedisConfig, RedisConfig};
pub use crate::capabilities::sqlite::{SqliteConfig, SqliteDatabaseConfig};
pub use crate::capabilities::EdgeHostConfig;

/// A runtime configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error("cannot read runtime config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The parsed file; every field has a default so no file means defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub edge_host: EdgeHostConfig,
    /// Spin 4.1's `[outbound_pg]`; moved into `edge_host.postgres.outbound` on load.
    #[serde(default)]
    outbound_pg: Option<OutboundPgConfig>,
    /// Spin 4.1's `[outbound_redis]`; moved into `edge_host.redis.outbound` on load.
    #[serde(default)]
    outbound_redis: Option<OutboundRedisConfig>,
    /// Spin's `[key_value_store.<label>]`; moved into `edge_host.key_value` on load.
    #[serde(default)]
    key_value_store: BTreeMap<String, KeyValueStoreConfig>,
    /// Spin's `[sqlite_database.<label>]`; moved into `edge_host.sqlite` on load.
    #[serde(default)]
    sqlite_database: BTreeMap<String, SqliteDatabaseConfig>,
    #[serde(default)]
    llm_compute: Option<toml::Value>,
    #[serde(default)]
    variables_provider: Option<toml::Value>,
    #[serde(default)]
    config_provider: Option<toml::Value>,
    #[serde(default)]
    outbound_networking: Option<toml::Value>,
    #[serde(default)]
    client_tls: Option<toml::Value>,
}

impl RuntimeConfig {
    /// Loads `path`, or returns defaults when no file was given.
    pub fn load(path: Option<&Path>) -> Result<Self, RuntimeConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, RuntimeConfigError> {
        let invalid = |message: String| RuntimeConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut config: Self =
            toml::from_str(text).map_err(|err| invalid(err.to_string().trim_end().to_owned()))?;
        let unsupported = [
            ("llm_compute", config.llm_compute.is_some()),
            ("variables_provider", config.variables_provider.is_some()),
            ("config_provider", config.config_provider.is_some()),
            ("outbound_networking", config.outbound_networking.is_some()),
            ("client_tls", config.client_tls.is_some()),
        ];
        if let Some((table, _)) = unsupported.iter().find(|(_, present)| *present) {
            return Err(invalid(format!(
                "table `{table}` is not supported by edge-host yet"
            )));
        }
        let base_dir = path.parent().map(Path::to_owned);
        config.edge_host.key_value = KeyValueConfig {
            stores: std::mem::take(&mut config.key_value_store),
            base_dir: base_dir.clone(),
        };
        config.edge_host.sqlite = SqliteConfig {
            databases: std::mem::take(&mut config.sqlite_database),
            base_dir,
        };
        if let Some(outbound) = config.outbound_pg.take() {
            config.edge_host.postgres.outbound = outbound;
        }
        if let Some(outbound) = config.outbound_redis.take() {
            config.edge_host.redis.outbound = outbound;
        }
        config.edge_host.postgres.validate().map_err(invalid)?;
        config.edge_host.redis.validate().map_err(invalid)?;
        config.edge_host.admission.validate().map_err(invalid)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig, RuntimeConfigError> {
        RuntimeConfig::parse(Path::new("runtime-config.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.edge_host.postgres.max_connections, 32);
    }

    #[test]
    fn tuning_is_read() {
        let config = parse("[edge_host.postgres]\nmax_connections = 8\n").unwrap();
        assert_eq!(config.edge_host.postgres.max_connections, 8);
    }

    #[test]
    fn typo_names_file_line_and_field() {
        let err = parse("[edge_host.postgres]\nmax_conections = 8\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime-config.toml"), "{err}");
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn spin_connection_caps_are_read() {
        let config =
            parse("[outbound_pg]\nmax_connections = 4\n[outbound_redis]\nmax_connections = 2\n")
                .unwrap();
        assert_eq!(config.edge_host.postgres.outbound.max_connections, Some(4));
        assert_eq!(config.edge_host.postgres.pool_size(), 4);
        assert_eq!(config.edge_host.redis.outbound.max_connections, Some(2));
        let defaults = parse("").unwrap();
        assert_eq!(defaults.edge_host.postgres.outbound.max_connections, None);
        assert_eq!(defaults.edge_host.postgres.pool_size(), 32);
        let err = parse("[outbound_pg]\nmax_connections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("outbound_pg.max_connections"), "{err}");
        let err = parse("[outbound_redis]\nmax_conections = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_conections") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn spin_tables_we_do_not_implement_are_named() {
        let err = parse("[llm_compute]\ntype = \"spin\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("llm_compute") && err.contains("not supported"),
            "{err}"
        );
    }

    #[test]
    fn sqlite_databases_are_read_and_libsql_is_refused_by_name() {
        let config = RuntimeConfig::parse(
            Path::new("/srv/app/runtime-config.toml"),
            "[sqlite_database.default]\ntype = \"spin\"\npath = \"data/app.db\"\n\
             [sqlite_database.scratch]\ntype = \"spin\"\n",
        )
        .unwrap();
        let sqlite = &config.edge_host.sqlite;
        assert_eq!(sqlite.base_dir.as_deref(), Some(Path::new("/srv/app")));
        assert_eq!(
            sqlite.databases["default"],
            SqliteDatabaseConfig::Spin {
                path: Some("data/app.db".into())
            }
        );
        assert_eq!(
            sqlite.databases["scratch"],
            SqliteDatabaseConfig::Spin { path: None }
        );
        let err = parse("[sqlite_database.remote]\ntype = \"libsql\"\nurl = \"https://db\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("libsql") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn key_value_stores_are_read_with_paths_from_the_files_directory() {
        let config = RuntimeConfig::parse(
            Path::new("/srv/app/runtime-config.toml"),
            "[key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n\
             [key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n",
        )
        .unwrap();
        let kv = &config.edge_host.key_value;
        assert_eq!(kv.base_dir.as_deref(), Some(Path::new("/srv/app")));
        assert_eq!(
            kv.stores["default"],
            KeyValueStoreConfig::Spin {
                path: Some("data/kv.db".into())
            }
        );
        assert_eq!(
            kv.stores["cache"],
            KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379".into()
            }
        );
        // Spin's cloud stores and typos are named, with the line.
        let err = parse("[key_value_store.x]\ntype = \"azure_cosmos\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("azure_cosmos") && err.contains("line 2"),
            "{err}"
        );
        let err = parse("[key_value_store.x]\ntype = \"redis\"\nurll = \"redis://h\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
    }
}
