//! Outbound PostgreSQL: `spin:postgres/postgres@4.0.0` and `@3.0.0`, and the older
//! `fermyon:spin/postgres@2.0.0`.
//!
//! - **App state** ([`PostgresPools`]): one connection pool per connection string, shared
//!   by every request (tokio-postgres with deadpool). A pooled connection is handed out
//!   without any check query (deadpool's `Fast` recycling only looks at whether the
//!   socket is closed), so a checkout costs no round trip.
//! - **Instance state**: each guest `connection` handle owns one pooled connection
//!   ([`PgSession`]) until the guest drops it or the request ends.
//! - **Session hygiene**: a connection goes back to the pool only when it carries
//!   nothing from its last user, and no statement is inspected to decide it. One on which
//!   the guest ran no statement goes back as it is. Any other is reset off the request
//!   path (in a task spawned by [`PgSession::release`]) with `DISCARD ALL`
//!   ([`RESET_SESSION`]): settings (also those a function changed with `set_config`), the
//!   role, open cursors, prepared statements, `LISTEN`, session advisory locks, temporary
//!   objects and sequence state (`lastval()`, `currval()`) all go, in one round trip. An
//!   open or failed transaction block makes PostgreSQL refuse it; only then a second round
//!   trip sends `ROLLBACK` and `DISCARD ALL` again. A statement still running when the
//!   request ended is cancelled first. A connection whose reset fails or takes longer than
//!   [`RESET_TIMEOUT`] is closed, and so is one whose driver had prepared its type-lookup
//!   statements (after a result with an enum, a domain or another type tokio-postgres
//!   does not know): `DISCARD ALL` deallocates those too, and tokio-postgres cannot be
//!   told to prepare them again. The reset asks the server whether the driver has such
//!   statements only after a result showed such a type (the catalog query cost a fifth
//!   of the throughput of `SELECT 1` + Redis `GET` when it ran on every reset); a lookup
//!   it could not see (a result with no rows, or one read through `execute`) shows up as
//!   SQLSTATE 26000 on that connection's next lookup, which fails that one statement and
//!   closes the connection. Not undone, as by any reset: a library loaded with
//!   `LOAD` (which needs a superuser for anything outside `$libdir/plugins`), `setseed`,
//!   `dblink` connections.
//! - **Statements** are sent with the extended protocol as one unnamed statement with
//!   declared parameter types (Parse/Bind/Describe/Execute/Sync in one write): one round
//!   trip per call and no server-side prepared statement to clean up.
//!
//! Sessions start with `TimeZone=UTC` (unless the connection string sets `options` with a
//! time zone) because the WIT treats date-times as UTC: a `datetime` written to a
//! `timestamptz` column and read back is the same instant whatever the server's default.

pub mod convert;
mod host;
mod readiness;
mod runtime_config;
mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::NoTls;

pub(crate) use host::add_to_linker;
pub use runtime_config::{OutboundPgConfig, PostgresConfig};

use crate::bindings::spin::postgres4_0_0::postgres as v4;
use convert::PgParam;

/// At most this many distinct connection strings get a pool; a guest that invents more
/// (they are guest-controlled strings) is refused rather than exhausting the server.
const MAX_POOLS: usize = 32;

/// How long a dirty connection's reset may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns a session to its just-connected state: closes cursors, resets the role and
/// every setting (to the connection's start-up values, so `TimeZone=UTC` and
/// `application_name` stay), deallocates prepared statements, unlistens, releases
/// session advisory locks, drops temporary objects and forgets sequence state (`lastval`,
/// `currval`). One statement, no server warning; PostgreSQL refuses it inside a
/// transaction block (SQLSTATE 25001, or 25P02 when the block has failed), which is how
/// [`reset`] learns that one is open.
pub const RESET_SESSION: &str = "DISCARD ALL";

/// Whether the driver holds prepared statements of its own on this connection: the
/// type-lookup statements tokio-postgres prepares (by protocol, so `from_sql` is false)
/// the first time a result has a type it does not know (an enum, a domain, ...). A guest
/// can only create statements with SQL `PREPARE`. Sent with [`RESET_SESSION`] in the same
/// round trip.
const DRIVER_STATEMENTS: &str =
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql)";

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
    /// Connections returned to the pool as they were: the guest ran no statement.
    pub returned_clean: AtomicU64,
    /// Connections reset (`DISCARD ALL`) and returned.
    pub reset: AtomicU64,
    /// Connections closed instead of returned: the reset failed or timed out, cost the
    /// driver its type-lookup statements, or found no runtime to run on.
    pub retired: AtomicU64,
}

/// One pool per connection string, created on first use.
pub struct PostgresPools {
    pools: RwLock<HashMap<String, Pool>>,
    /// Each pool's size ([`PostgresConfig::pool_size`]).
    max_connections: usize,
    /// `[outbound_pg] max_connections`, across all pools.
    limit: super::ConnectionLimit,
    acquire_timeout: Duration,
    stats: Arc<SessionStats>,
    /// Each connection string's redacted form, the `address` label of its metrics.
    labels: RwLock<HashMap<String, Arc<str>>>,
}

impl PostgresPools {
    /// Empty; pools are created lazily.
    pub fn new(config: &PostgresConfig) -> Self {
        Self {
            pools: RwLock::new(HashMap::new()),
            max_connections: config.pool_size(),
            acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
            limit: super::ConnectionLimit::new(
                "outbound_pg",
                config.outbound.max_connections,
                Duration::from_millis(config.acquire_timeout_ms),
            ),
            stats: Arc::default(),
            labels: RwLock::default(),
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
        // The acquire latency includes the wait for a `max_connections` permit.
        let (label, started) = (self.label(address), std::time::Instant::now());
        let permit = self
            .limit
            .acquire()
            .await
            .map_err(|err| PgError::ConnectionFailed(format!("PostgreSQL: {err}")));
        let permit = match permit {
            Ok(permit) => permit,
            Err(err) => {
                crate::metrics::pg_acquired(&label, started, false);
                return Err(err);
            }
        };
        let object = pool.get().await;
        crate::metrics::pg_acquired(&label, started, object.is_ok());
        let object = object.map_err(|err| {
            PgError::ConnectionFailed(format!(
                "cannot connect to PostgreSQL at {}: {}",
                redacted(address),
                error_chain(&err)
            ))
        })?;
        Ok(PgSession {
            object: Some(object),
            permit,
            ran_statement: false,
            in_flight: false,
            looked_up_types: false,
            lost_driver_statements: false,
            stats: self.stats.clone(),
            address: label,
        })
    }

    /// The `address` label for `address` (redacted once per connection string).
    fn label(&self, address: &str) -> Arc<str> {
        if let Some(label) = self
            .labels
            .read()
            .ok()
            .and_then(|labels| labels.get(address).cloned())
        {
            return label;
        }
        let label: Arc<str> = redacted(address).into();
        if let Ok(mut labels) = self.labels.write() {
            labels.insert(address.to_owned(), label.clone());
        }
        label
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
        let (_, tls_mode) = tls::split(address)?;
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
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls_mode {
            tls::TlsMode::Off => Manager::from_config(config, NoTls, manager_config),
            tls::TlsMode::Verify {
                hostname,
                root_cert,
            } => {
                let client = tls::client_config(*hostname, root_cert.as_deref())?;
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client);
                Manager::from_config(config, connector, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .wait_timeout(Some(self.acquire_timeout))
            .create_timeout(Some(self.acquire_timeout))
            .recycle_timeout(Some(self.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| PgError::Other(format!("cannot build a connection pool: {err}")))?;
        crate::metrics::on_scrape(readiness::pool_sampler(
            pool.clone(),
            redacted(address).into(),
        ));
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }
}

/// An error and its sources, `: `-separated (a TLS failure is a source of the driver's
/// "error performing TLS handshake"). Driver errors carry no password.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Parses a connection string (URL or `key=value` form).
fn parse_config(address: &str) -> Result<tokio_postgres::Config, PgError> {
    let (address, _) = tls::split(address)?;
    address
        .parse::<tokio_postgres::Config>()
        .map_err(|err| PgError::ConnectionFailed(format!("invalid connection string: {err}")))
}

/// `postgres://host:port[,host:port]/dbname` of a connection string, for logs: never the
/// user or password.
pub fn redacted(address: &str) -> String {
    let Ok(config) = parse_config(address) else {
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
/// its pool: as it is when the guest ran no statement on it, otherwise after a reset.
pub struct PgSession {
    object: Option<deadpool_postgres::Object>,
    /// The `[outbound_pg] max_connections` permit, given back only once the connection is
    /// back in its pool (after its reset) or closed.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// A statement was sent on this connection (whatever it was, and whether it worked).
    ran_statement: bool,
    /// A statement was sent and its result not yet received.
    in_flight: bool,
    /// A result had a type the driver does not know built in (an enum, a domain...), so
    /// it may have prepared its type-lookup statements on this connection: only then
    /// does the reset pay for [`DRIVER_STATEMENTS`] (a catalog query that cost about a
    /// fifth of the throughput of `SELECT 1` + Redis `GET` when sent on every reset).
    looked_up_types: bool,
    /// The server said a prepared statement is gone (SQLSTATE 26000): the driver's
    /// type-lookup statements were deallocated by an earlier reset that could not see
    /// them (a lookup for a result with no rows, or through `execute`). The connection
    /// is closed on release, so this costs one failed statement, never wrong data.
    lost_driver_statements: bool,
    stats: Arc<SessionStats>,
    /// The pool's `address` label, for statement metrics.
    address: Arc<str>,
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

    /// Marks the session as used before a statement goes out; [`Self::release`] resets
    /// any session this was called on.
    fn sending(&mut self) -> Result<&deadpool_postgres::Object, PgError> {
        if self.object.is_some() {
            self.ran_statement = true;
            self.in_flight = true;
        }
        self.client()
    }

    /// Runs a statement that returns rows.
    pub async fn query(
        &mut self,
        statement: &str,
        params: &[PgParam],
    ) -> Result<v4::RowSet, PgError> {
        let (typed, started) = (typed_params(params), std::time::Instant::now());
        let result = self.sending()?.query_typed(statement, &typed).await;
        crate::metrics::pg_query(&self.address, started, result.is_ok());
        self.in_flight = false;
        let rows = self.checked(result)?;
        self.looked_up_types |= rows.first().is_some_and(|row| {
            row.columns()
                .iter()
                .any(|column| Type::from_oid(column.type_().oid()).is_none())
        });
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
        let (typed, started) = (typed_params(params), std::time::Instant::now());
        let result = self.sending()?.execute_typed(statement, &typed).await;
        crate::metrics::pg_query(&self.address, started, result.is_ok());
        self.in_flight = false;
        self.checked(result)
    }

    /// Maps a driver error for the guest, noting one that means the connection must go.
    fn checked<T>(&mut self, result: Result<T, tokio_postgres::Error>) -> Result<T, PgError> {
        result.map_err(|error| {
            if error.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                self.lost_driver_statements = true;
            }
            PgError::from_query(error)
        })
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
    /// Gives the connection back to its pool; later calls on this handle fail with
    /// `connection-failed`. A connection the guest ran no statement on goes back as it is;
    /// any other is reset off the request path first ([`reset`]), and closed instead when
    /// the reset fails, times out ([`RESET_TIMEOUT`]) or cost the driver its own
    /// statements. Runs when the guest drops the handle, when the store goes, and when a
    /// reused instance's request ends with the handle still open.
    pub fn release(&mut self) {
        // Declared first, so it is dropped after the connection on every path below.
        let permit = self.permit.take();
        let Some(object) = self.object.take() else {
            return;
        };
        let stats = self.stats.clone();
        if !self.ran_statement {
            stats.returned_clean.fetch_add(1, Ordering::Relaxed);
            drop(object);
            return;
        }
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !self.lost_driver_statements => runtime,
            _ => {
                stats.retired.fetch_add(1, Ordering::Relaxed);
                drop(deadpool_postgres::Object::take(object));
                return;
            }
        };
        let in_flight = self.in_flight;
        let probe = self.looked_up_types;
        runtime.spawn(async move {
            let _permit = permit;
            let reason =
                match tokio::time::timeout(RESET_TIMEOUT, reset(&object, in_flight, probe)).await {
                    Ok(Ok(Reset::Clean)) => {
                        stats.reset.fetch_add(1, Ordering::Relaxed);
                        drop(object);
                        return;
                    }
                    // Not worth a warning: the next connection simply starts afresh.
                    Ok(Ok(Reset::DriverStatementsLost)) => None,
                    Ok(Err(err)) => Some(err.to_string()),
                    Err(_) => Some("timed out".to_owned()),
                };
            if let Some(reason) = reason {
                tracing::warn!("closing a PostgreSQL connection that could not be reset: {reason}");
            }
            stats.retired.fetch_add(1, Ordering::Relaxed);
            drop(deadpool_postgres::Object::take(object));
        });
    }
}

/// How a [`reset`] that succeeded left the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// As just connected: it can go back to the pool.
    Clean,
    /// Reset, but the driver had type-lookup statements, which [`RESET_SESSION`]
    /// deallocated: tokio-postgres would keep using them (`Client::clear_type_cache`
    /// forgets the types it looked up, not these statements), so the connection is closed.
    DriverStatementsLost,
}

/// Resets a session the guest ran statements on. A statement still running is cancelled
/// first. Then one round trip: [`DRIVER_STATEMENTS`] and [`RESET_SESSION`], pipelined
/// (two simple-protocol messages: `DISCARD ALL` must be a message of its own). Only when
/// PostgreSQL refuses it because a transaction block is open or has failed does a second
/// round trip follow: `ROLLBACK` (which would warn outside a block), then both again.
async fn reset(
    client: &tokio_postgres::Client,
    in_flight: bool,
    probe: bool,
) -> Result<Reset, tokio_postgres::Error> {
    if in_flight {
        // The request ended mid-statement: stop the statement rather than wait for it.
        let _ = client.cancel_token().cancel_query(NoTls).await;
    }
    match discard_all(client, probe).await {
        Err(err)
            if err.code().is_some_and(|code| {
                *code == SqlState::ACTIVE_SQL_TRANSACTION
                    || *code == SqlState::IN_FAILED_SQL_TRANSACTION
            }) =>
        {
            let (rolled_back, discarded) =
                futures::join!(client.batch_execute("ROLLBACK"), discard_all(client, probe));
            rolled_back?;
            discarded
        }
        outcome => outcome,
    }
}

/// [`DRIVER_STATEMENTS`] (when `probe`) then [`RESET_SESSION`], sent together.
async fn discard_all(
    client: &tokio_postgres::Client,
    probe: bool,
) -> Result<Reset, tokio_postgres::Error> {
    if !probe {
        client.batch_execute(RESET_SESSION).await?;
        return Ok(Reset::Clean);
    }
    let (probe, discarded) = futures::join!(
        client.simple_query(DRIVER_STATEMENTS),
        client.batch_execute(RESET_SESSION)
    );
    discarded?;
    let driver_statements = probe?.iter().any(|message| {
        matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
    });
    Ok(if driver_statements {
        Reset::DriverStatementsLost
    } else {
        Reset::Clean
    })
}

#[cfg(test)]
mod tests;
