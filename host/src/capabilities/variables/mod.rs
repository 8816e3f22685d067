//! `fermyon:spin/variables@2.0.0` and `wasi:config/store@0.2.0-draft-2024-09-27`: a
//! component reads its own `[component.X.variables]`, whose `{{ app_variable }}` templates
//! are expanded with the application's resolved variables on each call.
//!
//! The two interfaces answer the same question with different error conventions, as in
//! Spin: `variables.get` fails with `undefined` / `invalid-name`, `wasi:config` answers
//! `none` for both.

mod host;
mod runtime_config;
#[cfg(test)]
mod tests;

pub(crate) use host::add_to_linker;

use wasmtime::component::Linker;

use super::{CapabilityView, HasCapabilities, ViewGetter};
use crate::bindings::fermyon::spin2_0_0::variables as spin_variables;
use crate::bindings::wasi::config::store as wasi_config;
use crate::capabilities::InstanceState;

/// Why a variable could not be read; becomes the WIT error of the interface asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VariableLookupError {
    #[error(
        "`{0}` is not a variable name (lower-case letters, digits and `_`, starting with a letter)"
    )]
    InvalidName(String),
    #[error("the component has no variable `{0}`")]
    Undefined(String),
    #[error("variable `{name}` cannot be expanded: {reason}")]
    Provider { name: String, reason: String },
}
