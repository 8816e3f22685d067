//! End-to-end tests: the real `edge-host` running the real components against the real
//! PostgreSQL and Redis (`scripts/services`). One test binary, one module per topic.
//!
//! Run them with `scripts/test` (which prepares everything), or after `scripts/services start`,
//! `scripts/build-components`, `scripts/migrate` and `cargo build -p edge-host` with
//! `cargo test -p e2e-tests`. With `BASE_URL=https://...` the suite tests that server instead
//! (tests that need a host of their own skip themselves).

mod harness;

mod abuse;
mod accounts;
mod api;
mod auth;
mod conditional;
mod health;
mod idempotency;
mod jobs;
mod migrations;
mod openapi;
mod tls;
mod todo_fields;
mod todos;
mod web;
