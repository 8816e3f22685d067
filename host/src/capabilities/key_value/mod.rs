//! Spin key-value (`fermyon:spin/key-value@2.0.0`, what spin-sdk 2-5's `key_value::Store`
//! calls): labelled stores a component opens by name.
//!
//! Spin's rules (spinframework/spin `crates/factor-key-value`): a component may open only
//! the labels in its `key_value_stores` (anything else is `access-denied`, whether or not
//! the store exists); `default` always exists; every other label a component lists must
//! be defined by the runtime config, or the app does not start. Backends: SQLite
//! ([`runtime_config`]: Spin's schema and default location) and Redis. At most
//! [`MAX_OPEN_STORES`] handles per instance (`store-table-full` beyond).
//!
//! Not served yet (they answer as unsupported): Spin 3's `spin:key-value@3.0.0` and
//! `wasi:keyvalue`.

mod host;
mod runtime_config;
#[cfg(test)]
mod tests;

pub(crate) use host::add_to_linker;
pub use runtime_config::{KeyValueConfig, KeyValueStoreConfig};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::{Connection, OptionalExtension};

/// The label every app has.
pub const DEFAULT_STORE: &str = "default";

/// Store handles one instance may hold at once.
pub const MAX_OPEN_STORES: usize = 256;

/// Why a store could not be set up at load time (the app does not start).
#[derive(Debug, thiserror::Error)]
pub enum KeyValueSetupError {
    #[error(
        "component `{component}` lists key-value store `{label}` in key_value_stores, but no \
         `[key_value_store.{label}]` in the runtime config defines it (only `default` is built in)"
    )]
    Undefined { component: String, label: String },
    #[error("key-value store `{label}`: cannot open the SQLite file {}: {reason}", path.display())]
    Open {
        label: String,
        path: PathBuf,
        reason: String,
    },
}

/// A failed store operation; the guest sees it as `error::other` with this text (which
/// never carries a Redis URL's credentials).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailure(pub String);

/// Where one label's data lives.
pub enum Backend {
    Sqlite(SqliteStore),
    Redis { url: String },
}

/// A SQLite file (or, without a state directory, memory), opened on first use.
pub struct SqliteStore {
    /// `None`: in memory (a host built without a state directory, e.g. in tests).
    path: Option<PathBuf>,
    connection: OnceLock<Arc<Mutex<Connection>>>,
}

/// Every store the app can open, by label.
pub struct KeyValueStores {
    stores: HashMap<String, Arc<Backend>>,
}

impl KeyValueStores {
    /// The stores of `config` plus `default`, whose file (and that of every `spin` store
    /// without a `path`) is `state_dir/sqlite_key_value.db`, or memory without a state
    /// directory. Nothing is opened yet.
    pub fn new(config: &KeyValueConfig, state_dir: Option<&Path>) -> Self {
        let state_file = state_dir.map(|dir| dir.join("sqlite_key_value.db"));
        let sqlite = |path: Option<PathBuf>| {
            Backend::Sqlite(SqliteStore {
                path,
                connection: OnceLock::new(),
            })
        };
        let mut stores = HashMap::new();
        stores.insert(
            DEFAULT_STORE.to_owned(),
            Arc::new(sqlite(state_file.clone())),
        );
        for (label, store) in &config.stores {
            let backend = match store {
                KeyValueStoreConfig::Spin { path: Some(path) } => {
                    let base = config.base_dir.as_deref().unwrap_or(Path::new("."));
                    sqlite(Some(base.join(path)))
                }
                KeyValueStoreConfig::Spin { path: None } => sqlite(state_file.clone()),
                KeyValueStoreConfig::Redis { url } => Backend::Redis { url: url.clone() },
            };
            stores.insert(label.clone(), Arc::new(backend));
        }
        Self { stores }
    }

    /// The store behind a label, if the app has one.
    pub fn get(&self, label: &str) -> Option<Arc<Backend>> {
        self.stores.get(label).cloned()
    }

    /// Checks a component's `key_value_stores` and opens their SQLite files now, so a
    /// missing label or an unwritable path stops start-up instead of failing requests.
    /// Every label is checked before any file is created.
    pub fn prepare(&self, component: &str, labels: &[String]) -> Result<(), KeyValueSetupError> {
        let backends = labels
            .iter()
            .map(|label| {
                self.get(label)
                    .map(|backend| (label, backend))
                    .ok_or_else(|| KeyValueSetupError::Undefined {
                        component: component.to_owned(),
                        label: label.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (label, backend) in backends {
            if let Backend::Sqlite(store) = &*backend {
                store
                    .connection()
                    .map_err(|reason| KeyValueSetupError::Open {
                        label: label.clone(),
                        path: store.path.clone().unwrap_or_else(|| ":memory:".into()),
                        reason: reason.0,
                    })?;
            }
        }
        Ok(())
    }
}

impl SqliteStore {
    /// The shared connection, opening the file (and its directory) on first use.
    fn connection(&self) -> Result<Arc<Mutex<Connection>>, StoreFailure> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let failure = |err: &dyn std::fmt::Display| StoreFailure(err.to_string());
        let connection = match &self.path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| failure(&e))?;
                }
                Connection::open(path)
            }
            None => Connection::open_in_memory(),
        }
        .map_err(|e| failure(&e))?;
        // Writers from several instances wait for each other instead of failing.
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| failure(&e))?;
        connection
            .execute(
                "CREATE TABLE IF NOT EXISTS spin_key_value (
                     store TEXT NOT NULL,
                     key   TEXT NOT NULL,
                     value BLOB NOT NULL,
                     PRIMARY KEY (store, key)
                 )",
                [],
            )
            .map_err(|e| failure(&e))?;
        // A racing first use may have opened one too; keep whichever won.
        Ok(self
            .connection
            .get_or_init(|| Arc::new(Mutex::new(connection)))
            .clone())
    }

    /// Runs `work` on the connection on a blocking thread (SQLite calls block).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreFailure> {
        let connection = self.connection()?;
        tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .map_err(|_| StoreFailure("the store's connection is poisoned".into()))?;
            work(&connection).map_err(|e| StoreFailure(e.to_string()))
        })
        .await
        .map_err(|e| StoreFailure(format!("the store task failed: {e}")))?
    }
}

/// One operation on a store, whatever its backend.
pub enum Operation {
    Get(String),
    Set(String, Vec<u8>),
    Delete(String),
    Exists(String),
    Keys,
}

/// What an [`Operation`] returns.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Value(Option<Vec<u8>>),
    Done,
    Exists(bool),
    Keys(Vec<String>),
}

impl Backend {
    /// Runs one operation on the store `label` of this backend.
    pub async fn run(
        &self,
        redis: &super::redis::RedisConnections,
        label: &str,
        operation: Operation,
    ) -> Result<Outcome, StoreFailure> {
        match self {
            Backend::Sqlite(store) => sqlite_run(store, label.to_owned(), operation).await,
            Backend::Redis { url } => redis_run(redis, url, operation).await,
        }
    }
}

async fn sqlite_run(
    store: &SqliteStore,
    label: String,
    operation: Operation,
) -> Result<Outcome, StoreFailure> {
    store
        .run(move |db| match operation {
            Operation::Get(key) => db
                .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((&label, &key), |row| row.get(0))
                .optional()
                .map(Outcome::Value),
            Operation::Set(key, value) => db
                .prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                )?
                .execute((&label, &key, &value))
                .map(|_| Outcome::Done),
            Operation::Delete(key) => db
                .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((&label, &key))
                .map(|_| Outcome::Done),
            Operation::Exists(key) => db
                .prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists((&label, &key))
                .map(Outcome::Exists),
            Operation::Keys => {
                let mut keys = db.prepare_cached(
                    "SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key",
                )?;
                let found = keys
                    .query_map([&label], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>();
                found.map(Outcome::Keys)
            }
        })
        .await
}

async fn redis_run(
    redis: &super::redis::RedisConnections,
    url: &str,
    operation: Operation,
) -> Result<Outcome, StoreFailure> {
    use redis::AsyncCommands;
    let failure = |err: &dyn std::fmt::Display| StoreFailure(err.to_string());
    let mut connection = redis.connection(url).await.map_err(|e| failure(&e))?;
    let outcome = match operation {
        Operation::Get(key) => Outcome::Value(connection.get(key).await.map_err(|e| failure(&e))?),
        Operation::Set(key, value) => {
            let () = connection.set(key, value).await.map_err(|e| failure(&e))?;
            Outcome::Done
        }
        Operation::Delete(key) => {
            let _: i64 = connection.del(key).await.map_err(|e| failure(&e))?;
            Outcome::Done
        }
        Operation::Exists(key) => {
            Outcome::Exists(connection.exists(key).await.map_err(|e| failure(&e))?)
        }
        // Spin's Redis store lists keys with KEYS *: a store is the whole database.
        Operation::Keys => Outcome::Keys(connection.keys("*").await.map_err(|e| failure(&e))?),
    };
    Ok(outcome)
}

/// A guest's open store: its label and backend.
pub struct OpenStore {
    pub label: String,
    pub backend: Arc<Backend>,
}
