//! The Todo API's shared library: everything the `auth`, `todos` and `health` components
//! have in common, organised like a conventional Rust web backend so each component crate
//! is only its routes.
//!
//! - [`error`]: the one error type and its problem+json form.
//! - [`domain`]: values that can only be built valid (username, e-mail, title, ids).
//! - [`config`]: every variable the app reads, per component, and the typed settings;
//!   read once per request through [`config::Config`].
//! - [`http`]: the request pipeline (request id, CORS, security headers, logs), the JSON
//!   body reader, authentication and the rate-limit check.
//! - [`tokens`]: EdDSA access tokens, JWKS, refresh tokens (feature `tokens`).
//! - [`passwords`]: argon2id (feature `passwords`); [`password_policy`]: the rules for a
//!   new password (common-password list, username/e-mail, control characters).
//! - [`rate_limit`], [`login_guard`], [`todo_list`], [`jobs`]: pure logic of the limiter
//!   (script and reply decoding), the login throttle, the list cache and the background-job
//!   outbox; [`revocation`]: the token generation that ends access tokens.
//! - [`store`], [`repo`]: the host's PostgreSQL, Redis and variables, and every SQL
//!   statement.
//!
//! Everything except `store`/`repo` (and the pipeline's host calls) is plain Rust, tested
//! natively with `cargo test -p common`.

mod common_passwords;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod log;
pub mod login_guard;
pub mod password_policy;
#[cfg(feature = "passwords")]
pub mod passwords;
pub mod rate_limit;
pub mod repo;
pub mod revocation;
pub mod store;
pub mod todo_list;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use error::ApiError;
