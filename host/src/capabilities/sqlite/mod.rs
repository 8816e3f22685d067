//! Spin SQLite: `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0` (spin-sdk 5.2's
//! `sqlite::Connection`; 3.0 adds `last-insert-rowid` and `changes`), labelled databases
//! a component opens by name.
//!
//! Spin's rules (spinframework/spin `crates/factor-sqlite`): a component may open only the
//! labels in its `sqlite_databases` (anything else is `access-denied`, whether or not the
//! database exists); `default` always exists, a file in the app's state directory
//! (`.spin/sqlite_db.db` beside the manifest, `crates/sqlite/src/lib.rs`); every other
//! label a component lists must be defined by `[sqlite_database.<label>]` in the runtime
//! config ([`runtime_config`]), or the app does not start. Each `open` is a new SQLite
//! connection, as in Spin (`crates/sqlite-inproc`), so `changes` and `last-insert-rowid`
//! are the handle's own and a transaction a guest leaves open dies with its handle
//! instead of reaching another request. Results are capped at [`MAX_RESULT_BYTES`]
//! (Spin's `MAX_HOST_BUFFERED_BYTES`); at most [`MAX_OPEN_CONNECTIONS`] handles per
//! instance (Spin's resource table size).
//!
//! Where edge-host is deliberately stricter than Spin:
//! - a guest cannot `ATTACH` other files, nor `VACUUM INTO` one (SQLite's attached-database
//!   limit is 0): with Spin, SQL can create or read any file the host process can reach;
//! - writers wait for each other for up to [`BUSY_TIMEOUT`] (Spin sets no busy timeout, so
//!   two requests writing at once get `database is locked`);
//! - without a state directory (tests) `default` is one in-memory database shared by every
//!   connection of the app (Spin gives each `open` its own empty one).
//!
//! No pool: a pooled connection would carry a guest's pragmas and temporary tables into
//! the next request. Opening one is a file open and a lock-free header read; its cost per
//! request is not measured yet (a pool is the step to take if a profile shows it).

mod host;
mod runtime_config;
#[cfg(test)]
mod tests;

pub(crate) use host::add_to_linker;
pub use runtime_config::{SqliteConfig, SqliteDatabaseConfig};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::bindings::spin::sqlite::sqlite as v3;

/// The label every app has.
pub const DEFAULT_DATABASE: &str = "default";

/// The default database's file name in the state directory (Spin's).
pub const DEFAULT_FILE: &str = "sqlite_db.db";

/// Connection handles one instance may hold at once.
pub const MAX_OPEN_CONNECTIONS: usize = 256;

/// The largest result a statement may return, counted as Spin counts it (each value's
/// in-memory size): 128 MiB.
pub const MAX_RESULT_BYTES: usize = 128 << 20;

/// How long a statement waits for another connection's write lock before `database is
/// locked`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the SQLite databases could not be set up at load time (the app does not start).
#[derive(Debug, thiserror::Error)]
pub enum SqliteSetupError {
    #[error(
        "component `{component}` lists SQLite database `{label}` in sqlite_databases, but no \
         `[sqlite_database.{label}]` in the runtime config defines it (only `default` is built in)"
    )]
    Undefined { component: String, label: String },
    #[error("SQLite database `{label}`: cannot open {location}: {reason}")]
    Open {
        label: String,
        location: String,
        reason: String,
    },
    #[error("--sqlite {statement:?}: {reason}")]
    Statement { statement: String, reason: String },
}

/// Where one label's database lives.
enum Location {
    File(PathBuf),
    /// An in-memory database shared by the app's connections (SQLite's `memdb` VFS), alive
    /// as long as `keeper` is.
    Memory {
        uri: String,
        keeper: Mutex<Option<Connection>>,
    },
}

/// One labelled database.
pub struct Database {
    label: String,
    location: Location,
}

/// Every database the app can open, by label.
pub struct SqliteDatabases {
    databases: HashMap<String, Arc<Database>>,
}

impl SqliteDatabases {
    /// The databases of `config` plus `default`, whose file is `state_dir/sqlite_db.db`
    /// unless the runtime config defines `default` itself (in memory without a state
    /// directory). Nothing is opened yet.
    pub fn new(config: &SqliteConfig, state_dir: Option<&Path>) -> Self {
        let mut databases = HashMap::new();
        let default = state_dir.map(|dir| dir.join(DEFAULT_FILE));
        databases.insert(
            DEFAULT_DATABASE.to_owned(),
            Arc::new(Database::new(DEFAULT_DATABASE, default)),
        );
        for (label, database) in &config.databases {
            let SqliteDatabaseConfig::Spin { path } = database;
            let base = config.base_dir.as_deref().unwrap_or(Path::new("."));
            let path = path.as_ref().map(|path| base.join(path));
            databases.insert(label.clone(), Arc::new(Database::new(label, path)));
        }
        Self { databases }
    }

    /// The database behind a label, if the app has one.
    pub fn get(&self, label: &str) -> Option<Arc<Database>> {
        self.databases.get(label).cloned()
    }

    /// Checks a component's `sqlite_databases` and opens each once now, so a missing label
    /// or an unwritable path stops start-up instead of failing requests. Every label is
    /// checked before any file is created.
    pub fn prepare(&self, component: &str, labels: &[String]) -> Result<(), SqliteSetupError> {
        let databases = labels
            .iter()
            .map(|label| {
                self.get(label).ok_or_else(|| SqliteSetupError::Undefined {
                    component: component.to_owned(),
                    label: label.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for database in databases {
            database
                .connect()
                .map_err(|reason| database.open_error(reason))?;
        }
        Ok(())
    }

    /// Spin's `--sqlite` start-up statements, in order: a plain statement runs on
    /// `default`; `@FILE` runs the file's statements on `default` and `@FILE:LABEL` on
    /// that label's database (spinframework/spin `crates/trigger/src/cli/sqlite_statements.rs`).
    /// A failing statement stops start-up with its error.
    pub fn run_startup_statements(&self, statements: &[String]) -> Result<(), SqliteSetupError> {
        for statement in statements {
            let failed = |reason: String| SqliteSetupError::Statement {
                statement: statement.clone(),
                reason,
            };
            let (sql, label) = match statement.strip_prefix('@') {
                Some(reference) => {
                    let (file, label) = file_and_label(reference).map_err(failed)?;
                    let sql = std::fs::read_to_string(file)
                        .map_err(|err| failed(format!("cannot read {file}: {err}")))?;
                    (sql, label)
                }
                None => (statement.clone(), DEFAULT_DATABASE),
            };
            let database = self.get(label).ok_or_else(|| {
                failed(format!(
                    "no SQLite database `{label}`: define it with [sqlite_database.{label}]"
                ))
            })?;
            let connection = database.connect().map_err(&failed)?;
            connection
                .execute_batch(&sql)
                .map_err(|err| failed(err.to_string()))?;
        }
        Ok(())
    }
}

/// `FILE` or `FILE:LABEL` of an `@` statement (split at the first `:`, as Spin does).
fn file_and_label(reference: &str) -> Result<(&str, &str), String> {
    let reference = reference.trim();
    let (file, label) = match reference.split_once(':') {
        Some((file, label)) => (file.trim(), label.trim()),
        None => (reference, DEFAULT_DATABASE),
    };
    if file.is_empty() {
        return Err("the file path is empty".into());
    }
    if label.is_empty() {
        return Err("the database label after `:` is empty".into());
    }
    Ok((file, label))
}

/// Names the app's in-memory databases apart (one process may load several apps in tests).
static MEMORY_DATABASES: AtomicU64 = AtomicU64::new(0);

impl Database {
    fn new(label: &str, path: Option<PathBuf>) -> Self {
        let location = match path {
            Some(path) => Location::File(path),
            None => Location::Memory {
                uri: format!(
                    "file:/edge-host-sqlite-{}-{}?vfs=memdb",
                    std::process::id(),
                    MEMORY_DATABASES.fetch_add(1, Ordering::Relaxed)
                ),
                keeper: Mutex::new(None),
            },
        };
        Self {
            label: label.to_owned(),
            location,
        }
    }

    /// Where the database is, for messages.
    fn describe(&self) -> String {
        match &self.location {
            Location::File(path) => path.display().to_string(),
            Location::Memory { .. } => "an in-memory database".to_owned(),
        }
    }

    fn open_error(&self, reason: String) -> SqliteSetupError {
        SqliteSetupError::Open {
            label: self.label.clone(),
            location: self.describe(),
            reason,
        }
    }

    /// A new connection (creating the file and its directory on first use), with the busy
    /// timeout and no way to attach other files.
    pub fn connect(&self) -> Result<Connection, String> {
        let connection = match &self.location {
            Location::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
                }
                Connection::open(path).map_err(|err| err.to_string())?
            }
            Location::Memory { uri, keeper } => {
                let open = || {
                    Connection::open_with_flags(
                        uri,
                        rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                    )
                    .map_err(|err| err.to_string())
                };
                let mut keeper = keeper.lock().map_err(|_| "poisoned".to_owned())?;
                if keeper.is_none() {
                    *keeper = Some(open()?);
                }
                open()?
            }
        };
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|err| err.to_string())?;
        connection
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(|err| err.to_string())?;
        Ok(connection)
    }
}

/// A guest's open connection. The mutex is only ever taken by one blocking task at a
/// time (a guest's calls are sequential); it is there so the connection can move to the
/// blocking pool and back.
#[derive(Clone)]
pub struct OpenConnection {
    connection: Arc<Mutex<Connection>>,
}

/// Why a statement failed: the text the guest gets in `error::io`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StatementFailure(pub String);

impl OpenConnection {
    /// Opens `database` on a blocking thread (opening may create the file).
    pub async fn open(database: Arc<Database>) -> Result<Self, StatementFailure> {
        let connection = tokio::task::spawn_blocking(move || database.connect())
            .await
            .map_err(|err| StatementFailure(format!("the open task failed: {err}")))?
            .map_err(StatementFailure)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection on a blocking thread (SQLite calls block).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StatementFailure> + Send + 'static,
    ) -> Result<T, StatementFailure> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .map_err(|_| StatementFailure("the connection is poisoned".into()))?;
            work(&connection)
        })
        .await
        .map_err(|err| StatementFailure(format!("the statement task failed: {err}")))?
    }

    /// Runs one statement with its parameters and returns its columns and rows.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> Result<v3::QueryResult, StatementFailure> {
        self.run(move |connection| query(connection, &statement, parameters))
            .await
    }

    /// The rowid of the connection's most recent successful `INSERT` (0 before any).
    pub async fn last_insert_rowid(&self) -> Result<i64, StatementFailure> {
        self.run(|connection| Ok(connection.last_insert_rowid()))
            .await
    }

    /// Rows changed by the connection's most recent `INSERT`, `UPDATE` or `DELETE`.
    pub async fn changes(&self) -> Result<u64, StatementFailure> {
        self.run(|connection| Ok(connection.changes())).await
    }
}

/// Prepares and runs `statement`, collecting at most [`MAX_RESULT_BYTES`] of rows.
fn query(
    connection: &Connection,
    statement: &str,
    parameters: Vec<v3::Value>,
) -> Result<v3::QueryResult, StatementFailure> {
    query_within(connection, statement, parameters, MAX_RESULT_BYTES)
}

/// [`query`] with the result limit `limit`.
fn query_within(
    connection: &Connection,
    statement: &str,
    parameters: Vec<v3::Value>,
    limit: usize,
) -> Result<v3::QueryResult, StatementFailure> {
    let failure = |err: rusqlite::Error| StatementFailure(err.to_string());
    let mut prepared = connection.prepare(statement).map_err(failure)?;
    let columns: Vec<String> = prepared.column_names().map(str::to_owned).collect();
    let parameters = parameters.into_iter().map(to_sql);
    let mut rows = prepared
        .query(rusqlite::params_from_iter(parameters))
        .map_err(failure)?;
    let (mut result, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.next().map_err(failure)? {
        let values = (0..columns.len())
            .map(|index| row.get_ref(index).map(from_sql))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failure)?;
        bytes += values.iter().map(value_size).sum::<usize>();
        if bytes > limit {
            return Err(StatementFailure(format!(
                "query result exceeds limit of {limit} bytes"
            )));
        }
        result.push(v3::RowResult { values });
    }
    Ok(v3::QueryResult {
        columns,
        rows: result,
    })
}

fn to_sql(value: v3::Value) -> SqlValue {
    match value {
        v3::Value::Integer(integer) => SqlValue::Integer(integer),
        v3::Value::Real(real) => SqlValue::Real(real),
        v3::Value::Text(text) => SqlValue::Text(text),
        v3::Value::Blob(blob) => SqlValue::Blob(blob),
        v3::Value::Null => SqlValue::Null,
    }
}

/// A column value as the guest gets it. SQLite text that is not UTF-8 (SQLite does not
/// check what it stores) is given with its invalid bytes replaced, where Spin panics.
fn from_sql(value: ValueRef<'_>) -> v3::Value {
    match value {
        ValueRef::Null => v3::Value::Null,
        ValueRef::Integer(integer) => v3::Value::Integer(integer),
        ValueRef::Real(real) => v3::Value::Real(real),
        ValueRef::Text(text) => v3::Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(blob) => v3::Value::Blob(blob.to_vec()),
    }
}

/// A value's size as Spin counts it towards the result limit.
fn value_size(value: &v3::Value) -> usize {
    std::mem::size_of::<v3::Value>()
        + match value {
            v3::Value::Text(text) => text.len(),
            v3::Value::Blob(blob) => blob.len(),
            _ => 0,
        }
}
