//! edge-host as a library: the pieces the `edge-host` binary puts together, public so
//! that tests and benchmarks can drive them directly.
//!
//! Imports run one way (see host/README.md, "Architecture"):
//!
//! ```text
//! main ─▶ triggers ─▶ app ─▶ engine
//!                      │  ─▶ capabilities ─▶ variables ─▶ manifest ─▶ {template, routes}
//!                      └──────────────────────────────────▶ runtime_config, logs
//! ```
//!
//! - [`template`], [`routes`]: leaf modules (`{{ var }}` templates, Spin route matching);
//! - [`manifest`], [`variables`], [`runtime_config`]: what the app asks for; the manifest
//!   yields typed trigger specs;
//! - [`engine`]: wasmtime, the pooling allocator and the compile cache;
//! - [`capabilities`]: the Spin host interfaces, one module each, and the per-instance
//!   state a `Store` holds;
//! - [`app`]: components compiled, linked and pre-instantiated, and the one instance
//!   runner ([`app::InstanceRun`]) every trigger goes through;
//! - [`triggers`]: what runs a component (HTTP requests, Redis messages).

pub mod app;
pub mod bindings;
pub mod capabilities;
pub mod engine;
pub mod logs;
pub mod manifest;
pub mod routes;
pub mod runtime_config;
pub mod template;
pub mod triggers;
pub mod variables;
