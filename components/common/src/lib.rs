//! The Todo API's shared library: everything the `auth`, `todos` and `health` components
//! have in common, organised like a conventional Rust web backend so each component crate
//! is only its routes.
//!
//! - [`error`]: the one error type and its problem+json form.
//! - [`domain`]: values that can only be built valid (username, e-mail, title, ids).
//! - [`config`]: typed settings from Spin variables.
//! - [`http`]: the request pipeline (request id, CORS, security headers, logs).
//! - [`tokens`]: EdDSA access tokens, JWKS, refresh tokens (feature `tokens`).
//! - [`passwords`]: argon2id (feature `passwords`).
//! - [`rate_limit`], [`todo_list`]: the pure logic of the limiter and the list cache.
//! - [`store`], [`repo`]: the host's PostgreSQL and Redis, and every SQL statement.
//! - [`jobs`]: the background-job outbox shared by `auth` (producer) and `notifier`.
//!
//! Everything except `store`/`repo` (and the pipeline's host calls) is plain Rust, tested
//! natively with `cargo test -p common`.

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod log;
#[cfg(feature = "passwords")]
pub mod passwords;
pub mod rate_limit;
pub mod repo;
pub mod store;
pub mod todo_list;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use error::ApiError;
