//! Outbound Redis: `fermyon:spin/redis@2.0.0`.
//!
//! - **App state** ([`RedisConnections`]): one multiplexed connection per address, shared
//!   by every request of every component (Spin 3.6 opens a connection per request). It is
//!   opened on first use and reconnects by itself after Redis goes away (a restart, a
//!   failover). A command that finds the connection broken is sent once more on the new
//!   connection when sending it twice cannot change anything ([`Retry`]: reads, `SET`):
//!   so the first command after a restart does not fail. Any other command (`INCR`,
//!   `PUBLISH`, `EVAL`, ...) fails with the broken connection, because it may have been
//!   applied before the connection broke, and the next call reconnects.
//! - **Instance state**: a guest `connection` handle is a cheap clone of the shared
//!   connection.
//! - Because the connection is shared, `execute` refuses the commands that would change
//!   it for everyone (`SELECT`, `AUTH`, `CLIENT …`, `MULTI`/`EXEC`/`WATCH`, subscriptions,
//!   `MONITOR`) or stall it for everyone (blocking pops, `WAIT`, `XREAD … BLOCK`): use
//!   `EVAL` for atomic multi-step work.
//! - `execute` maps replies as Spin does: nested arrays (what Lua scripts return) are
//!   flattened into one list, `OK` and other status replies become `status`, integers
//!   `int64`, bulk strings `binary`, nil `nil`.

mod host;
mod readiness;
mod runtime_config;
#[cfg(test)]
mod tests;

pub(crate) use host::add_to_linker;
pub use runtime_config::{OutboundRedisConfig, RedisConfig};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::OnceCell;
use wasmtime::component::{Linker, Resource};

use super::{CapabilityView, HasCapabilities, ViewGetter};
use crate::bindings::fermyon::spin2_0_0::redis as v2;
use crate::capabilities::InstanceState;

/// At most this many distinct addresses get a connection (addresses are guest strings).
const MAX_ADDRESSES: usize = 32;

/// Commands that change or monopolise the shared connection.
const CONNECTION_COMMANDS: &[&str] = &[
    "AUTH",
    "HELLO",
    "SELECT",
    "RESET",
    "QUIT",
    "CLIENT",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "SYNC",
    "PSYNC",
    "REPLCONF",
    "READONLY",
    "READWRITE",
];

/// Commands that block the connection until something happens elsewhere.
const BLOCKING_COMMANDS: &[&str] = &[
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "WAIT",
    "WAITAOF",
];

/// Whether a command may be sent a second time after the connection broke under it.
///
/// A broken connection does not tell whether the server applied the command before it
/// went away, so only a command that gives the same data *and the same reply* when
/// applied twice is repeated: reads, and `SET` without `NX`/`XX`/`GET` (its reply is `OK`
/// either way). Counting replies (`DEL`, `SADD`, `SREM`: 1 the first time, 0 the second)
/// are not, because apps use them to decide (a first `SADD` sends the e-mail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Send again once, on the reconnected connection.
    Once,
    /// Fail with the broken connection; the next call reconnects.
    Never,
}

/// Commands `execute` repeats after a broken connection: they only read (scripts only
/// with the `_RO` variants, which Redis refuses to let write).
const REPEATABLE_COMMANDS: &[&str] = &[
    "PING",
    "ECHO",
    "TIME",
    "DBSIZE",
    "EXISTS",
    "TYPE",
    "TTL",
    "PTTL",
    "EXPIRETIME",
    "PEXPIRETIME",
    "GET",
    "MGET",
    "GETRANGE",
    "STRLEN",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "LRANGE",
    "LLEN",
    "LINDEX",
    "LPOS",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANGEBYLEX",
    "ZSCORE",
    "ZMSCORE",
    "ZCARD",
    "ZCOUNT",
    "ZLEXCOUNT",
    "ZRANK",
    "ZREVRANK",
    "XRANGE",
    "XREVRANGE",
    "XLEN",
    "PFCOUNT",
    "SCAN",
    "SSCAN",
    "HSCAN",
    "ZSCAN",
    "KEYS",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL_RO",
    // Writes whose data and reply (`OK`) are the same when applied twice.
    "MSET",
    "SETEX",
    "PSETEX",
];

/// [`Retry`] for `execute(command, arguments)`: [`REPEATABLE_COMMANDS`], and `SET` unless
/// an option makes its reply depend on what was there (`NX`, `XX`, `GET`).
pub(crate) fn execute_retry(command: &str, arguments: &[v2::RedisParameter]) -> Retry {
    let name = command.trim().to_ascii_uppercase();
    let conditional = || {
        arguments.iter().skip(2).any(|argument| {
            matches!(argument, v2::RedisParameter::Binary(bytes)
                if [&b"NX"[..], b"XX", b"GET"].iter().any(|o| bytes.eq_ignore_ascii_case(o)))
        })
    };
    if REPEATABLE_COMMANDS.contains(&name.as_str()) || (name == "SET" && !conditional()) {
        Retry::Once
    } else {
        Retry::Never
    }
}

/// A Redis failure, at the boundary; converts into the WIT error.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("invalid Redis address")]
    InvalidAddress,
    #[error("Redis value has the wrong type: {0}")]
    TypeError(String),
    #[error("{0}")]
    Other(String),
}

impl From<redis::RedisError> for RedisFailure {
    /// `type-error` covers what the WIT promises: a value of the wrong type (`WRONGTYPE`)
    /// or one that is not an integer where one is needed (`INCR` on text).
    fn from(error: redis::RedisError) -> Self {
        let wrong_type = error.kind() == redis::ErrorKind::TypeError
            || error.code() == Some("WRONGTYPE")
            || (error.kind() == redis::ErrorKind::ResponseError
                && error.to_string().contains("not an integer"));
        if wrong_type {
            Self::TypeError(error.to_string())
        } else {
            Self::Other(error.to_string())
        }
    }
}

impl From<RedisFailure> for v2::Error {
    fn from(failure: RedisFailure) -> Self {
        match failure {
            RedisFailure::InvalidAddress => Self::InvalidAddress,
            RedisFailure::TypeError(_) => Self::TypeError,
            RedisFailure::Other(text) => Self::Other(text),
        }
    }
}

/// The shared connections, one per address, opened lazily.
pub struct RedisConnections {
    connections: Mutex<HashMap<String, Arc<OnceCell<ConnectionManager>>>>,
    timeout: Duration,
    /// `[outbound_redis] max_connections`: guest handles open at once.
    limit: super::ConnectionLimit,
    /// `[edge_host.redis] ca_cert_path`, for `rediss://` addresses.
    ca_cert_path: Option<std::path::PathBuf>,
}

impl RedisConnections {
    /// Empty; connections open on first use.
    pub fn new(config: &RedisConfig) -> Self {
        Self {
            connections: Mutex::new(HashMap::new()),
            timeout: Duration::from_millis(config.timeout_ms),
            limit: super::ConnectionLimit::new(
                "outbound_redis",
                config.outbound.max_connections,
                Duration::from_millis(config.acquire_timeout_ms),
            ),
            ca_cert_path: config.ca_cert_path.clone(),
        }
    }

    /// The shared connection to `address`, connecting if this is the first use.
    pub async fn connection(&self, address: &str) -> Result<ConnectionManager, RedisFailure> {
        let cell = {
            let mut connections = self
                .connections
                .lock()
                .map_err(|_| RedisFailure::Other("connection registry is poisoned".into()))?;
            if !connections.contains_key(address) && connections.len() >= MAX_ADDRESSES {
                return Err(RedisFailure::Other(format!(
                    "too many distinct Redis addresses (at most {MAX_ADDRESSES})"
                )));
            }
            match connections.get(address) {
                // The common case: connected already, no parsing, no allocation.
                Some(cell) if cell.initialized() => cell.clone(),
                _ => {
                    // Validate before registering, so bad addresses take no slot.
                    redis::Client::open(address).map_err(|_| RedisFailure::InvalidAddress)?;
                    connections.entry(address.to_owned()).or_default().clone()
                }
            }
        };
        if let Some(manager) = cell.get() {
            return Ok(manager.clone());
        }
        let client = self.client(address)?;
        let timeout = self.timeout;
        let destination = redacted(address);
        let manager = cell
            .get_or_try_init(|| async move {
                // No reconnect retries inside a command: while Redis is down every call
                // fails fast, and the call after it comes back reconnects.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                match tokio::time::timeout(
                    timeout,
                    ConnectionManager::new_with_config(client, config),
                )
                .await
                {
                    Ok(result) => result.map_err(|err| {
                        RedisFailure::Other(format!(
                            "cannot connect to Redis at {destination}: {err}"
                        ))
                    }),
                    Err(_) => Err(RedisFailure::Other(format!(
                        "timed out connecting to Redis at {destination}"
                    ))),
                }
            })
            .await?;
        Ok(manager.clone())
    }

    /// The client for `address`. `rediss://` is TLS through rustls (redis-rs's
    /// `tokio-rustls-comp`): the certificate chain and host name are verified against the
    /// system's roots (rustls-native-certs), or `ca_cert_path`'s when set, as Spin's
    /// `redis::Client::open` does for `rediss://` (spinframework/spin
    /// `crates/factor-outbound-redis/src/host.rs`). redis-rs's `#insecure` fragment, which
    /// turns verification off, is refused. The Redis trigger's subscriber connections are
    /// made here too, so `rediss://` trigger addresses are verified the same way.
    pub fn client(&self, address: &str) -> Result<redis::Client, RedisFailure> {
        let info = redis::IntoConnectionInfo::into_connection_info(address)
            .map_err(|_| RedisFailure::InvalidAddress)?;
        let tls = matches!(info.addr, redis::ConnectionAddr::TcpTls { .. });
        if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = info.addr {
            return Err(RedisFailure::Other(format!(
                "{}: `#insecure` (no certificate verification) is not allowed",
                redacted(address)
            )));
        }
        match (&self.ca_cert_path, tls) {
            (Some(path), true) => {
                let root_cert = std::fs::read(path).map_err(|err| {
                    RedisFailure::Other(format!(
                        "cannot read [edge_host.redis] ca_cert_path {}: {err}",
                        path.display()
                    ))
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(info, certificates).map_err(|err| {
                    RedisFailure::Other(format!(
                        "[edge_host.redis] ca_cert_path {}: {err}",
                        path.display()
                    ))
                })
            }
            _ => redis::Client::open(info).map_err(|_| RedisFailure::InvalidAddress),
        }
    }

    /// Runs `command` on `connection`, once more when it found the connection broken and
    /// [`Retry::Once`] allows it (the connection manager has started reconnecting by
    /// then, so the second call waits for the new connection). Both attempts together
    /// are bounded by the command timeout, whatever state the connection is in.
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &ConnectionManager,
        retry: Retry,
        command: &redis::Cmd,
    ) -> Result<T, RedisFailure> {
        let attempts = async {
            match command.query_async::<T>(&mut connection.clone()).await {
                Err(error) if retry == Retry::Once && error.is_unrecoverable_error() => {
                    tracing::debug!("Redis connection broke under a command; sending it again");
                    command.query_async::<T>(&mut connection.clone()).await
                }
                result => result,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result.map_err(RedisFailure::from),
            Err(_) => Err(RedisFailure::Other("Redis command timed out".into())),
        }
    }
}

/// What a guest `connection` handle holds.
pub struct RedisHandle {
    connection: ConnectionManager,
    /// The redacted address, the `address` label of the command metrics.
    address: Arc<str>,
    /// The `[outbound_redis] max_connections` permit, held until the guest drops the
    /// handle (or the request ends).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl RedisConnections {
    /// A handle on the shared connection to `address`, once a `max_connections` permit
    /// is free (waiting at most `acquire_timeout_ms`).
    pub async fn handle(&self, address: &str) -> Result<RedisHandle, RedisFailure> {
        let permit = self
            .limit
            .acquire()
            .await
            .map_err(|err| RedisFailure::Other(format!("Redis: {err}")))?;
        Ok(RedisHandle {
            connection: self.connection(address).await?,
            address: redacted(address).into(),
            _permit: permit,
        })
    }
}

/// `scheme://host:port` of a Redis address, for logs: never the password.
fn redacted(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(url) => format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().unwrap_or(6379)
        ),
        Err(_) => "<invalid Redis address>".to_owned(),
    }
}

/// Refuses commands that would change or stall the shared connection.
pub fn check_shareable(
    command: &str,
    arguments: &[v2::RedisParameter],
) -> Result<(), RedisFailure> {
    let name = command.trim().to_ascii_uppercase();
    let blocking_stream_read = matches!(name.as_str(), "XREAD" | "XREADGROUP")
        && arguments.iter().any(|argument| {
            matches!(argument, v2::RedisParameter::Binary(bytes) if bytes.eq_ignore_ascii_case(b"BLOCK"))
        });
    if CONNECTION_COMMANDS.contains(&name.as_str()) {
        Err(RedisFailure::Other(format!(
            "`{name}` is not supported: edge-host shares one Redis connection between requests \
             (use EVAL for atomic multi-step work)"
        )))
    } else if BLOCKING_COMMANDS.contains(&name.as_str()) || blocking_stream_read {
        Err(RedisFailure::Other(format!(
            "blocking command `{name}` is not supported on edge-host's shared Redis connection"
        )))
    } else {
        Ok(())
    }
}

/// Flattens a reply into the WIT's list of results, as Spin does.
pub fn flatten_reply(value: Value, out: &mut Vec<v2::RedisResult>) -> Result<(), RedisFailure> {
    match value {
        Value::Nil => out.push(v2::RedisResult::Nil),
        Value::Int(v) => out.push(v2::RedisResult::Int64(v)),
        Value::BulkString(bytes) => out.push(v2::RedisResult::Binary(bytes)),
        Value::SimpleString(text) => out.push(v2::RedisResult::Status(text)),
        Value::Okay => out.push(v2::RedisResult::Status("OK".into())),
        Value::Array(values) | Value::Set(values) => {
            for value in values {
                flatten_reply(value, out)?;
            }
        }
        Value::Map(pairs) => {
            for (key, value) in pairs {
                flatten_reply(key, out)?;
                flatten_reply(value, out)?;
            }
        }
        Value::Attribute { data, .. } => flatten_reply(*data, out)?,
        Value::Double(v) => out.push(v2::RedisResult::Binary(v.to_string().into_bytes())),
        Value::Boolean(v) => out.push(v2::RedisResult::Int64(i64::from(v))),
        Value::BigNumber(v) => out.push(v2::RedisResult::Binary(v.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => out.push(v2::RedisResult::Binary(text.into_bytes())),
        Value::ServerError(err) => {
            return Err(RedisFailure::Other(format!(
                "{}{}",
                err.code(),
                err.details().map(|d| format!(" {d}")).unwrap_or_default()
            )))
        }
        Value::Push { .. } => {
            return Err(RedisFailure::Other(
                "pub/sub replies are not supported".into(),
            ))
        }
    }
    Ok(())
}
