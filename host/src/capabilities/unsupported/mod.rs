//! The Spin platform interfaces edge-host links but does not serve yet: LLM, MQTT, MySQL
//! and `wasi:keyvalue` (draft2). (Spin key-value 2.0 is served by `key_value`, SQLite 2.0
//! and 3.0 by `sqlite`.)
//!
//! Components built against Spin's full platform world import all of them, so they must
//! link; a call answers with the interface's own error (never a trap), and the first call
//! per component and interface is logged. Opening is the only way to get a handle, and
//! every `open` fails, so the per-handle methods below are unreachable in practice and
//! answer with an error too.

mod host;
mod runtime_config;
#[cfg(test)]
mod tests;

pub(crate) use host::add_to_linker;

use wasmtime::component::{Linker, Resource};

use super::{CapabilityView, HasCapabilities, ViewGetter};
use crate::bindings::fermyon::spin2_0_0::{llm, mqtt, mysql, rdbms_types};
use crate::bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use crate::capabilities::InstanceState;
