//! The one test-support library of the repository. edge-host's own integration tests
//! (`host/tests/host`, fixture apps) and the end-to-end suite (`tests/tests/e2e`, the Todo
//! app) both start the real `edge-host` binary and wait for real services through it, so
//! neither carries its own copy of process handling, ready-file parsing or Redis/PostgreSQL
//! set-up.
//!
//! - [`edge_host`]: launch `edge-host up` with a ready file, keep and forward its output;
//!   the binary path is passed in (host tests use `CARGO_BIN_EXE_edge-host`, the suite
//!   `$EDGE_HOST_BIN` or `target/debug/edge-host`), so this crate does not depend on the host.
//! - [`app`]: the Todo app from `spin.toml` on the project's services ([`TestApp`]).
//! - [`redis`], [`database`], [`services`]: a private `redis-server`, a throwaway
//!   database, and the settings `scripts/services env` exports.
//! - [`todo_api`]: the Todo API's users, authenticated client, whole replies and
//!   hand-made tokens.
//! - [`wait`]: bounded polling instead of sleeping and hoping.
//! - [`mail_sink`]: a mail webhook that records what it receives and fails on request.
//! - [`raw_http`]: a minimal HTTP/1.1 GET over a socket, for tests that must see exactly
//!   one request on one connection.
//!
//! Import graph (one way): `app` → `edge_host`, `services`, `redis`, `database` →
//! `paths`, `wait`; `todo_api` → `app`; `mail_sink` and `raw_http` stand alone.

pub mod app;
pub mod database;
pub mod edge_host;
pub mod mail_sink;
pub mod paths;
pub mod raw_http;
pub mod redis;
pub mod services;
pub mod tls_postgres;
pub mod tls_redis;
pub mod todo_api;
pub mod wait;

pub use app::{external_base_url, HostOptions, TestApp};
pub use database::{migrate_url, TestDatabase};
pub use edge_host::{EdgeHost, Launch};
pub use mail_sink::{MailSink, Received};
pub use paths::{free_port, repo_root, unique_temp_dir};
pub use raw_http::{raw_get, RawGet};
pub use redis::PrivateRedis;
pub use services::service_setting;
pub use tls_postgres::TlsPostgres;
pub use tls_redis::{TlsRedis, TLS_REDIS_PASSWORD};
pub use wait::eventually;
