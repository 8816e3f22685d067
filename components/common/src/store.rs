//! Thin wrappers over the host's PostgreSQL (`spin_sdk::pg4`), Redis (`spin_sdk::redis`)
//! and variables (`spin_sdk::variables`) interfaces. What to do with them per request
//! (the rate-limit check, degrading without Redis) is the HTTP layer's
//! (`crate::http::check_rate_limit`); the SQL is in `crate::repo`.
//!
//! Conventions that keep the SQL portable across hosts (ours and real Spin):
//! every parameter is cast in the statement (`$1::text::uuid`, `$2::int8`, `$3::bytea`) so
//! PostgreSQL infers a type the host can bind from a plain string/integer/bytes value, and
//! every result column is cast to `text`, `bool` or `int8`, so no host needs to map UUID or
//! timestamp types. Atomic multi-step writes are single statements with data-modifying
//! CTEs, which are atomic without relying on a transaction spanning several host calls.

use std::cell::OnceCell;

use spin_sdk::pg4::{self, DbValue, ParameterValue, QueryError, RowSet};
use spin_sdk::redis::{self, RedisParameter, RedisResult};

use crate::error::ApiError;
use crate::log;
use crate::rate_limit::ReplyValue;

/// An open PostgreSQL connection (pooled by the host).
pub struct Db(pg4::Connection);

fn pg_error(context: &str, e: pg4::PgError) -> ApiError {
    match e {
        pg4::PgError::ConnectionFailed(m) => {
            ApiError::Unavailable(format!("postgres {context}: connection failed: {m}"))
        }
        pg4::PgError::QueryFailed(QueryError::DbError(d)) => {
            ApiError::Internal(format!("postgres {context}: {} {}", d.code, d.message))
        }
        pg4::PgError::QueryFailed(QueryError::Text(t)) => {
            ApiError::Internal(format!("postgres {context}: {t}"))
        }
        other => ApiError::Internal(format!("postgres {context}: {other:?}")),
    }
}

impl Db {
    /// Opens a connection; failure is a 503 (the database is a hard dependency).
    pub fn open(url: &str) -> Result<Self, ApiError> {
        pg4::Connection::open(url)
            .map(Db)
            .map_err(|e| pg_error("connect", e))
    }

    /// Runs a query returning rows.
    pub fn query(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, ApiError> {
        self.0.query(sql, params).map_err(|e| pg_error("query", e))
    }

    /// As [`Db::query`], but a unique violation (SQLSTATE 23505, the whole statement rolled
    /// back) is `Ok(None)`, for statements whose conflict is an expected answer.
    pub fn query_unless_unique_violation(
        &self,
        sql: &str,
        params: &[ParameterValue],
    ) -> Result<Option<RowSet>, ApiError> {
        match self.0.query(sql, params) {
            Ok(rows) => Ok(Some(rows)),
            Err(pg4::PgError::QueryFailed(QueryError::DbError(d))) if d.code == "23505" => Ok(None),
            Err(e) => Err(pg_error("query", e)),
        }
    }

    /// Runs a statement returning the affected row count.
    pub fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, ApiError> {
        self.0
            .execute(sql, params)
            .map_err(|e| pg_error("execute", e))
    }
}

/// Typed access to a result row's columns, with decoding failures as 500s.
pub struct RowReader<'a>(pub &'a [DbValue]);

impl RowReader<'_> {
    fn get(&self, i: usize) -> Result<&DbValue, ApiError> {
        self.0
            .get(i)
            .ok_or_else(|| ApiError::Internal(format!("row has no column {i}")))
    }

    /// A non-null text column.
    pub fn text(&self, i: usize) -> Result<String, ApiError> {
        match self.get(i)? {
            DbValue::Str(s) => Ok(s.clone()),
            other => Err(ApiError::Internal(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    /// A nullable text column.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, ApiError> {
        match self.get(i)? {
            DbValue::DbNull => Ok(None),
            DbValue::Str(s) => Ok(Some(s.clone())),
            other => Err(ApiError::Internal(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    /// A non-null boolean column.
    pub fn boolean(&self, i: usize) -> Result<bool, ApiError> {
        match self.get(i)? {
            DbValue::Boolean(b) => Ok(*b),
            other => Err(ApiError::Internal(format!(
                "column {i}: expected bool, got {other:?}"
            ))),
        }
    }

    /// A non-null integer column (any width).
    pub fn int(&self, i: usize) -> Result<i64, ApiError> {
        match self.get(i)? {
            DbValue::Int64(n) => Ok(*n),
            DbValue::Int32(n) => Ok(i64::from(*n)),
            DbValue::Int16(n) => Ok(i64::from(*n)),
            other => Err(ApiError::Internal(format!(
                "column {i}: expected int, got {other:?}"
            ))),
        }
    }

    /// Whether the column is NULL.
    pub fn is_null(&self, i: usize) -> Result<bool, ApiError> {
        Ok(matches!(self.get(i)?, DbValue::DbNull))
    }
}

/// A text parameter.
pub fn text(s: &str) -> ParameterValue {
    ParameterValue::Str(s.to_owned())
}

/// Redis, used as an optimisation only: every failure is reported to the caller, which
/// logs it and carries on without Redis ("fail open").
///
/// The connection is opened on the first command, at most once per handle: under Spin
/// every `Connection::open` is a new TCP connection, so a handle that is made but never
/// used (a notifier run that arms no retry timer) costs nothing, and one handle per
/// request means at most one connection per request. A failed open is kept and returned
/// by every later call on the handle (no second connection attempt in the same request).
pub struct Redis {
    url: String,
    conn: OnceCell<Result<redis::Connection, String>>,
}

impl Redis {
    /// A handle on `url`; nothing is opened until the first command.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            conn: OnceCell::new(),
        }
    }

    fn conn(&self) -> Result<&redis::Connection, String> {
        self.conn
            .get_or_init(|| {
                redis::Connection::open(&self.url).map_err(|e| format!("connect: {e:?}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `EVAL script numkeys keys... args...`, reply flattened.
    pub fn eval(
        &self,
        script: &str,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<ReplyValue>, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.eval_bytes(script, keys, &args)
    }

    /// As [`Redis::eval`], with binary arguments (a cache entry).
    pub fn eval_bytes(
        &self,
        script: &str,
        keys: &[String],
        args: &[&[u8]],
    ) -> Result<Vec<ReplyValue>, String> {
        let conn = self.conn()?;
        let mut params = Vec::with_capacity(2 + keys.len() + args.len());
        params.push(RedisParameter::Binary(script.as_bytes().to_vec()));
        params.push(RedisParameter::Int64(keys.len() as i64));
        params.extend(
            keys.iter()
                .map(|k| RedisParameter::Binary(k.as_bytes().to_vec())),
        );
        params.extend(args.iter().map(|a| RedisParameter::Binary(a.to_vec())));
        let reply = conn
            .execute("EVAL", &params)
            .map_err(|e| format!("EVAL: {e:?}"))?;
        Ok(reply
            .into_iter()
            .map(|r| match r {
                RedisResult::Int64(n) => ReplyValue::Int(n),
                RedisResult::Binary(b) => ReplyValue::Bytes(b),
                RedisResult::Status(s) => ReplyValue::Bytes(s.into_bytes()),
                RedisResult::Nil => ReplyValue::Nil,
            })
            .collect())
    }

    /// `PUBLISH channel message`; the number of subscribers that received it is not
    /// interesting to the outbox (zero is normal while no notifier listens).
    pub fn publish(&self, channel: &str, message: &[u8]) -> Result<(), String> {
        let conn = self.conn()?;
        conn.publish(channel, message)
            .map_err(|e| format!("PUBLISH: {e:?}"))
    }

    /// `SET key value PX ttl_ms`: a timer whose expiry Redis announces as a keyspace event.
    pub fn set_px(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
        let conn = self.conn()?;
        conn.execute(
            "SET",
            &[
                RedisParameter::Binary(key.as_bytes().to_vec()),
                RedisParameter::Binary(value.to_vec()),
                RedisParameter::Binary(b"PX".to_vec()),
                RedisParameter::Int64(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
            ],
        )
        .map(|_| ())
        .map_err(|e| format!("SET: {e:?}"))
    }
}

/// Spin's variables interface as a [`crate::config::VariableSource`]. `Undefined` (the
/// component's `[component.X.variables]` does not map the name) is `Ok(None)`, which the
/// configuration turns into a 503 naming the variable.
pub struct SpinVariables;

impl crate::config::VariableSource for SpinVariables {
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        match spin_sdk::variables::get(name) {
            Ok(v) => Ok(Some(v)),
            Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
            Err(e) => Err(log::sanitize(&format!("{e:?}"))),
        }
    }
}
