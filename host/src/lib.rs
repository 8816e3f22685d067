//! edge-host as a library: the pieces the `edge-host` binary puts together, public so
//! that tests and benchmarks can drive them directly.
//!
//! - [`manifest`], [`variables`], [`runtime_config`]: what the app asks for;
//! - [`engine`]: wasmtime, the pooling allocator and the compile cache;
//! - [`app`]: components compiled, linked and pre-instantiated;
//! - [`capabilities`]: the Spin host interfaces, one module each;
//! - [`triggers`]: what runs a component (HTTP requests, Redis messages).

pub mod app;
pub mod bindings;
pub mod capabilities;
pub mod engine;
pub mod logs;
pub mod manifest;
pub mod runtime_config;
pub mod state;
pub mod triggers;
pub mod variables;
