//! Outbound PostgreSQL: `spin:postgres/postgres@4.0.0` and `@3.0.0`, and the older
//! `fermyon:spin/postgres@2.0.0`.
//!
//! - **App state** ([`PostgresPools`]): one connection pool per connection string, shared
//!   by every request (tokio-postgres with deadpool). A pooled connection is handed out
//!   without any check query (deadpool's `Fast` recycling only looks at whether the
//!   socket is closed), so a checkout costs no round trip.
//! - **Instance state**: each guest `connection` handle owns one pooled connection
//!   ([`PgSession`]) until the guest drops it or the request ends.
//! - **Session hygiene**: a connection goes back to the pool only when it is known to
//!   carry nothing from its last user. [`PgSession`] classifies every statement it runs;
//!   plain `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`WITH`… in autocommit, and complete
//!   `BEGIN` … `COMMIT`/`ROLLBACK` blocks, leave the session clean, so the connection is
//!   returned as it is. Anything that may leave session state behind (an open or aborted
//!   transaction, `SET`, `set_config`, temporary tables, `LISTEN`, session advisory locks,
//!   a statement still running when the request ended, or any statement it does not
//!   recognise) marks it dirty, and the connection is reset off the request path (the
//!   equivalent of `DISCARD ALL`, see [`RESET_SESSION`]) before it can be reused. A
//!   guest's own prepared statements (`PREPARE`, `DEALLOCATE`, `DISCARD`), `LOAD` and
//!   `COPY` retire the connection instead (it is closed), because resetting those would
//!   also invalidate the driver's own cached statements.
//! - **Statements** are sent with the extended protocol as one unnamed statement with
//!   declared parameter types (Parse/Bind/Describe/Execute/Sync in one write): one round
//!   trip per call and no server-side prepared statement to clean up.
//!
//! Sessions start with `TimeZone=UTC` (unless the connection string sets `options` with a
//! time zone) because the WIT treats date-times as UTC: a `datetime` written to a
//! `timestamptz` column and read back is the same instant whatever the server's default.

mod convert;
mod host;
mod runtime_config;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::NoTls;

pub(crate) use host::add_to_linker;
pub use runtime_config::PostgresConfig;

use crate::bindings::spin::postgres4_0_0::postgres as v4;
use convert::PgParam;

/// At most this many distinct connection strings get a pool; a guest that invents more
/// (they are guest-controlled strings) is refused rather than exhausting the server.
const MAX_POOLS: usize = 32;

/// How long a dirty connection's reset may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Restores a session to its just-connected state. This is what `DISCARD ALL` does,
/// except `DEALLOCATE ALL`, which would also destroy the driver's cached type-lookup
/// statements (connections whose guest used prepared statements are retired instead).
/// It runs as one implicit transaction, which all of these statements allow.
pub const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; \
     DISCARD SEQUENCES";

/// [`RESET_SESSION`] after ending an open or aborted transaction block; used only when
/// one may be open, because `ROLLBACK` outside a block draws a warning.
pub const ROLLBACK_AND_RESET_SESSION: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION \
     DEFAULT; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; \
     DISCARD TEMP; DISCARD SEQUENCES";

/// What a guest sees when a PostgreSQL call fails; converts into each interface's WIT
/// error.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    ConnectionFailed(String),
    #[error("{0}")]
    BadParameter(String),
    #[error("{}", query_error_text(.0))]
    QueryFailed(Box<v4::QueryError>),
    #[error("{0}")]
    ValueConversionFailed(String),
    #[error("{0}")]
    Other(String),
}

fn query_error_text(error: &v4::QueryError) -> &str {
    match error {
        v4::QueryError::Text(text) => text,
        v4::QueryError::DbError(db) => &db.as_text,
    }
}

impl PgError {
    /// A failed statement, with PostgreSQL's structured fields (SQLSTATE `code`,
    /// constraint, …) when the server sent them.
    fn from_query(error: tokio_postgres::Error) -> Self {
        let as_text = error.to_string();
        Self::QueryFailed(Box::new(match error.as_db_error() {
            None => v4::QueryError::Text(as_text),
            Some(db) => {
                let mut extras = Vec::new();
                let mut extra = |name: &str, value: Option<&str>| {
                    if let Some(value) = value {
                        extras.push((name.to_owned(), value.to_owned()));
                    }
                };
                extra("schema", db.schema());
                extra("table", db.table());
                extra("column", db.column());
                extra("datatype", db.datatype());
                extra("constraint", db.constraint());
                extra("hint", db.hint());
                extra("where", db.where_());
                extra("routine", db.routine());
                v4::QueryError::DbError(v4::DbError {
                    as_text,
                    severity: db.severity().to_owned(),
                    code: db.code().code().to_owned(),
                    message: db.message().to_owned(),
                    detail: db.detail().map(str::to_owned),
                    extras,
                })
            }
        }))
    }
}

/// Counters of what happened to connections at release, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Connections returned to the pool as they were (no reset needed).
    pub returned_clean: AtomicU64,
    /// Connections reset before being returned.
    pub reset: AtomicU64,
    /// Connections closed instead of returned.
    pub retired: AtomicU64,
}

/// One pool per connection string, created on first use.
pub struct PostgresPools {
    pools: RwLock<HashMap<String, Pool>>,
    max_connections: usize,
    acquire_timeout: Duration,
    stats: Arc<SessionStats>,
}

impl PostgresPools {
    /// Empty; pools are created lazily.
    pub fn new(config: &PostgresConfig) -> Self {
        Self {
            pools: RwLock::new(HashMap::new()),
            max_connections: config.max_connections,
            acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
            stats: Arc::default(),
        }
    }

    /// What happened to released connections so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Checks out a connection to `address` (connecting when the pool has none idle).
    pub async fn checkout(&self, address: &str) -> Result<PgSession, PgError> {
        let pool = self.pool(address)?;
        let object = pool.get().await.map_err(|err| {
            PgError::ConnectionFailed(format!("cannot connect to PostgreSQL: {err}"))
        })?;
        Ok(PgSession {
            object: Some(object),
            hygiene: Hygiene::default(),
            stats: self.stats.clone(),
        })
    }

    fn pool(&self, address: &str) -> Result<Pool, PgError> {
        if let Some(pool) = self
            .pools
            .read()
            .ok()
            .and_then(|pools| pools.get(address).cloned())
        {
            return Ok(pool);
        }
        let mut pools = self
            .pools
            .write()
            .map_err(|_| PgError::Other("connection pool registry is poisoned".into()))?;
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        if pools.len() >= MAX_POOLS {
            return Err(PgError::ConnectionFailed(format!(
                "too many distinct PostgreSQL connection strings (at most {MAX_POOLS})"
            )));
        }
        let mut config = parse_config(address)?;
        let has_time_zone = config
            .get_options()
            .is_some_and(|options| options.to_ascii_lowercase().contains("timezone"));
        if !has_time_zone {
            let options = match config.get_options() {
                Some(existing) => format!("{existing} -c TimeZone=UTC"),
                None => "-c TimeZone=UTC".to_owned(),
            };
            config.options(options);
        }
        if config.get_application_name().is_none() {
            config.application_name("edge-host");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .wait_timeout(Some(self.acquire_timeout))
            .create_timeout(Some(self.acquire_timeout))
            .recycle_timeout(Some(self.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| PgError::Other(format!("cannot build a connection pool: {err}")))?;
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }
}

/// Parses a connection string (URL or `key=value` form).
fn parse_config(address: &str) -> Result<tokio_postgres::Config, PgError> {
    address
        .parse::<tokio_postgres::Config>()
        .map_err(|err| PgError::ConnectionFailed(format!("invalid connection string: {err}")))
}

/// `postgres://host:port[,host:port]/dbname` of a connection string, for logs: never the
/// user or password.
pub fn redacted(address: &str) -> String {
    let Ok(config) = address.parse::<tokio_postgres::Config>() else {
        return "<invalid connection string>".to_owned();
    };
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            }
        })
        .collect();
    format!(
        "postgres://{}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// Every `host:port` a connection string may connect to; `None` for a Unix socket, which
/// `allowed_outbound_hosts` cannot grant.
fn destinations(config: &tokio_postgres::Config) -> Vec<Option<(String, u16)>> {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| match host {
            tokio_postgres::config::Host::Tcp(name) => Some((
                name.clone(),
                ports.get(index).or(ports.first()).copied().unwrap_or(5432),
            )),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => None,
        })
        .collect()
}

/// What a statement may do to the session, judged from its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementEffect {
    /// Leaves no session state behind (in autocommit, or inside a transaction).
    Plain,
    /// Opens a transaction block.
    Begin,
    /// Ends the transaction block.
    End,
    /// May leave session state behind: reset before reuse.
    SessionState,
    /// Creates state a reset cannot remove without breaking the driver: retire.
    Retire,
}

/// Functions whose effects outlive the statement (session settings, session-level
/// advisory locks, the random seed, remote connections).
const SESSION_FUNCTIONS: &[&str] = &[
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "setseed",
    "dblink_connect",
    "dblink_connect_u",
];

/// Classifies `statement` conservatively: anything not recognised as harmless may
/// leave state behind. Runs before every statement, so it only scans, never allocates
/// per word.
pub fn classify(statement: &str) -> StatementEffect {
    let mut words = Words::new(statement);
    let Some(first) = words.next() else {
        return StatementEffect::Plain;
    };
    let first = first.to_ascii_lowercase();
    let second = words.clone().next();
    let has = |word: &str| Words::new(statement).any(|w| w.eq_ignore_ascii_case(word));
    match first.as_str() {
        "select" | "insert" | "update" | "delete" | "with" | "values" | "table" | "merge" => {
            let leaves_state = Words::new(statement).any(|w| {
                w.eq_ignore_ascii_case("temp")
                    || w.eq_ignore_ascii_case("temporary")
                    || w.eq_ignore_ascii_case("pg_temp")
                    || SESSION_FUNCTIONS.iter().any(|f| w.eq_ignore_ascii_case(f))
            });
            if leaves_state {
                StatementEffect::SessionState
            } else {
                StatementEffect::Plain
            }
        }
        // Locks and savepoints live and die with the transaction.
        "lock" | "savepoint" | "release" => StatementEffect::Plain,
        "begin" | "start" => StatementEffect::Begin,
        "commit" | "end" | "rollback" | "abort" => {
            if has("prepared") {
                StatementEffect::SessionState
            } else if has("chain") && !has("no") {
                // `COMMIT AND CHAIN` starts the next transaction at once.
                StatementEffect::Begin
            } else if first == "rollback" && has("to") {
                // `ROLLBACK TO SAVEPOINT` stays inside the transaction.
                StatementEffect::Plain
            } else {
                StatementEffect::End
            }
        }
        // `SET LOCAL` and `SET TRANSACTION` end with the transaction.
        "set"
            if second.is_some_and(|w| {
                w.eq_ignore_ascii_case("local") || w.eq_ignore_ascii_case("transaction")
            }) =>
        {
            StatementEffect::Plain
        }
        "prepare" | "deallocate" | "discard" | "load" | "copy" => StatementEffect::Retire,
        _ => StatementEffect::SessionState,
    }
}

/// The identifier-like words of a statement, comments skipped. String literals are not
/// skipped: a word inside one can only make the judgement more conservative.
#[derive(Clone)]
struct Words<'a> {
    statement: &'a str,
    at: usize,
}

impl<'a> Words<'a> {
    fn new(statement: &'a str) -> Self {
        Self { statement, at: 0 }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.statement.as_bytes();
        while self.at < bytes.len() {
            let rest = &bytes[self.at..];
            if rest.starts_with(b"--") {
                self.at += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            } else if rest.starts_with(b"/*") {
                self.at += rest
                    .windows(2)
                    .skip(2)
                    .position(|w| w == b"*/")
                    .map_or(rest.len(), |p| p + 4);
            } else if rest[0].is_ascii_alphabetic() || rest[0] == b'_' {
                // Starts at an ASCII byte, so the slice is on character boundaries.
                let len = rest
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$'))
                    .unwrap_or(rest.len());
                let word = &self.statement[self.at..self.at + len];
                self.at += len;
                return Some(word);
            } else {
                self.at += 1;
            }
        }
        None
    }
}

/// What may be left on a connection by the statements run on it so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Hygiene {
    /// A statement was sent and its result not yet received.
    in_flight: bool,
    /// A transaction block may be open (or aborted).
    in_transaction: bool,
    /// Session state may have changed.
    session_changed: bool,
    /// The connection must be closed rather than reused.
    retire: bool,
}

/// What to do with a connection when its guest handle goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    Return,
    Reset,
    Retire,
}

impl Hygiene {
    fn before(&mut self, effect: StatementEffect) {
        self.in_flight = true;
        match effect {
            StatementEffect::SessionState => self.session_changed = true,
            StatementEffect::Retire => self.retire = true,
            // Set before the result: a BEGIN whose answer is lost still opened a block.
            StatementEffect::Begin => self.in_transaction = true,
            StatementEffect::Plain | StatementEffect::End => {}
        }
    }

    fn after(&mut self, effect: StatementEffect, succeeded: bool) {
        self.in_flight = false;
        if effect == StatementEffect::End && succeeded {
            self.in_transaction = false;
        }
    }

    fn release(&self) -> Release {
        if self.retire {
            Release::Retire
        } else if self.in_flight || self.in_transaction || self.session_changed {
            Release::Reset
        } else {
            Release::Return
        }
    }
}

/// The connection handles an instance's guest has opened, so that the end of a request
/// on a reused instance can release the ones still open (dropping the store does it for
/// instances that serve one request).
#[derive(Default)]
pub struct OpenedSessions(Vec<u32>);

impl OpenedSessions {
    pub(crate) fn record(&mut self, rep: u32) {
        self.0.push(rep);
    }

    /// Releases every connection still open. A handle the guest already dropped is no
    /// longer in the table (or its slot now holds another object), and is skipped.
    pub fn release_all(&mut self, table: &mut wasmtime::component::ResourceTable) {
        for rep in self.0.drain(..) {
            let handle = wasmtime::component::Resource::<PgSession>::new_borrow(rep);
            if let Ok(session) = table.get_mut(&handle) {
                session.release();
            }
        }
    }
}

/// A pooled connection held by one guest handle. Dropping it returns the connection to
/// its pool, after a reset when the guest may have left session state behind.
pub struct PgSession {
    object: Option<deadpool_postgres::Object>,
    hygiene: Hygiene,
    stats: Arc<SessionStats>,
}

/// A result value's raw bytes, whatever its type; decoded by `convert::db_value`.
struct RawValue<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl PgSession {
    fn client(&self) -> Result<&deadpool_postgres::Object, PgError> {
        self.object.as_ref().ok_or_else(|| {
            PgError::ConnectionFailed(
                "connection released: a connection lasts at most until the end of the \
                     request that opened it"
                    .into(),
            )
        })
    }

    /// Runs a statement that returns rows.
    pub async fn query(
        &mut self,
        statement: &str,
        params: &[PgParam],
    ) -> Result<v4::RowSet, PgError> {
        let typed = typed_params(params);
        let effect = classify(statement);
        self.hygiene.before(effect);
        let result = self.client()?.query_typed(statement, &typed).await;
        self.hygiene.after(effect, result.is_ok());
        let rows = result.map_err(PgError::from_query)?;
        let columns = rows
            .first()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|column| v4::Column {
                        name: column.name().to_owned(),
                        data_type: convert::data_type(column.type_()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rows = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|index| {
                        let raw = row
                            .try_get::<_, Option<RawValue>>(index)
                            .map_err(|err| PgError::ValueConversionFailed(err.to_string()))?;
                        Ok(convert::db_value(
                            row.columns()[index].type_(),
                            raw.map(|raw| raw.0),
                        ))
                    })
                    .collect::<Result<Vec<_>, PgError>>()
            })
            .collect::<Result<Vec<_>, PgError>>()?;
        Ok(v4::RowSet { columns, rows })
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute(&mut self, statement: &str, params: &[PgParam]) -> Result<u64, PgError> {
        let typed = typed_params(params);
        let effect = classify(statement);
        self.hygiene.before(effect);
        let result = self.client()?.execute_typed(statement, &typed).await;
        self.hygiene.after(effect, result.is_ok());
        result.map_err(PgError::from_query)
    }
}

fn typed_params(params: &[PgParam]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|param| (param as &(dyn ToSql + Sync), param.declared_type()))
        .collect()
}

impl Drop for PgSession {
    fn drop(&mut self) {
        self.release();
    }
}

impl PgSession {
    /// Gives the connection back to its pool (after a reset when the guest may have left
    /// session state behind); later calls on this handle fail with `connection-failed`.
    /// Runs when the guest drops the handle, when the store goes, and when a reused
    /// instance's request ends with the handle still open.
    pub fn release(&mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        let stats = self.stats.clone();
        match self.hygiene.release() {
            Release::Return => {
                stats.returned_clean.fetch_add(1, Ordering::Relaxed);
                drop(object);
            }
            Release::Retire => {
                stats.retired.fetch_add(1, Ordering::Relaxed);
                drop(deadpool_postgres::Object::take(object));
            }
            Release::Reset => {
                let in_flight = self.hygiene.in_flight;
                let reset_sql = if in_flight || self.hygiene.in_transaction {
                    ROLLBACK_AND_RESET_SESSION
                } else {
                    RESET_SESSION
                };
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    stats.retired.fetch_add(1, Ordering::Relaxed);
                    drop(deadpool_postgres::Object::take(object));
                    return;
                };
                runtime.spawn(async move {
                    let reset = async {
                        if in_flight {
                            // The request ended mid-statement: stop the statement rather
                            // than wait for it.
                            let _ = object.cancel_token().cancel_query(NoTls).await;
                        }
                        object.batch_execute(reset_sql).await
                    };
                    match tokio::time::timeout(RESET_TIMEOUT, reset).await {
                        Ok(Ok(())) => {
                            stats.reset.fetch_add(1, Ordering::Relaxed);
                            drop(object);
                        }
                        outcome => {
                            let reason = match outcome {
                                Ok(Err(err)) => err.to_string(),
                                _ => "timed out".to_owned(),
                            };
                            tracing::warn!(
                                "closing a PostgreSQL connection that could not be reset: {reason}"
                            );
                            stats.retired.fetch_add(1, Ordering::Relaxed);
                            drop(deadpool_postgres::Object::take(object));
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
