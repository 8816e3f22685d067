//! `fermyon:spin/variables@2.0.0` and `wasi:config/store@0.2.0-draft-2024-09-27`: a
//! component reads its own `[component.X.variables]`, whose `{{ app_variable }}` templates
//! are expanded with the application's resolved variables on each call.
//!
//! The two interfaces answer the same question with different error conventions, as in
//! Spin: `variables.get` fails with `undefined` / `invalid-name`, `wasi:config` answers
//! `none` for both.

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

impl From<VariableLookupError> for spin_variables::Error {
    fn from(error: VariableLookupError) -> Self {
        let text = error.to_string();
        match error {
            VariableLookupError::InvalidName(_) => Self::InvalidName(text),
            VariableLookupError::Undefined(_) => Self::Undefined(text),
            VariableLookupError::Provider { .. } => Self::Provider(text),
        }
    }
}

impl CapabilityView<'_> {
    /// The value of the component variable `name`.
    pub fn component_variable(&self, name: &str) -> Result<String, VariableLookupError> {
        if !crate::template::is_variable_name(name) {
            return Err(VariableLookupError::InvalidName(name.to_owned()));
        }
        let component = &self.state.component;
        let template = component
            .variables
            .get(name)
            .ok_or_else(|| VariableLookupError::Undefined(name.to_owned()))?;
        template
            .render(&component.app_variables)
            .map_err(|err| VariableLookupError::Provider {
                name: name.to_owned(),
                reason: err.to_string(),
            })
    }
}

impl spin_variables::Host for CapabilityView<'_> {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<String, spin_variables::Error>> {
        Ok(self.component_variable(&name).map_err(Into::into))
    }
}

impl wasi_config::Host for CapabilityView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(match self.component_variable(&key) {
            Ok(value) => Ok(Some(value)),
            // wasi:config's guidance: a missing or malformed key is simply absent.
            Err(VariableLookupError::Undefined(_) | VariableLookupError::InvalidName(_)) => {
                Ok(None)
            }
            Err(err @ VariableLookupError::Provider { .. }) => {
                Err(wasi_config::Error::Upstream(err.to_string()))
            }
        })
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        let mut names: Vec<&String> = self.state.component.variables.keys().collect();
        names.sort();
        let mut all = Vec::with_capacity(names.len());
        for name in names {
            match self.component_variable(name) {
                Ok(value) => all.push((name.clone(), value)),
                Err(err) => return Ok(Err(wasi_config::Error::Upstream(err.to_string()))),
            }
        }
        Ok(Ok(all))
    }
}

/// Links both variable interfaces.
pub(crate) fn add_to_linker(
    linker: &mut Linker<InstanceState>,
    view: ViewGetter,
) -> anyhow::Result<()> {
    spin_variables::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    wasi_config::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::capabilities::test_support::{app_capabilities, component_with};
    use crate::capabilities::CapabilityState;
    use wasmtime::component::ResourceTable;

    #[tokio::test]
    async fn variables_expand_templates_and_name_errors() {
        let component = component_with(
            &[],
            HashMap::from([
                ("greeting".to_owned(), "hello {{ who }}!".to_owned()),
                ("plain".to_owned(), "x".to_owned()),
            ]),
            &[("who", "world")],
        );
        let mut state = CapabilityState::new(Arc::new(app_capabilities()), component);
        let mut table = ResourceTable::new();
        let mut view = CapabilityView {
            state: &mut state,
            table: &mut table,
        };

        let got = spin_variables::Host::get(&mut view, "greeting".into())
            .await
            .unwrap();
        assert_eq!(got.unwrap(), "hello world!");
        let missing = spin_variables::Host::get(&mut view, "absent".into())
            .await
            .unwrap();
        assert!(
            matches!(missing, Err(spin_variables::Error::Undefined(_))),
            "{missing:?}"
        );
        let invalid = spin_variables::Host::get(&mut view, "Bad-Name".into())
            .await
            .unwrap();
        assert!(
            matches!(invalid, Err(spin_variables::Error::InvalidName(_))),
            "{invalid:?}"
        );

        let config = wasi_config::Host::get(&mut view, "greeting".into())
            .await
            .unwrap();
        assert_eq!(config.unwrap().as_deref(), Some("hello world!"));
        let config_missing = wasi_config::Host::get(&mut view, "absent".into())
            .await
            .unwrap();
        assert_eq!(config_missing.unwrap(), None);
        let all = wasi_config::Host::get_all(&mut view)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            all,
            vec![
                ("greeting".to_owned(), "hello world!".to_owned()),
                ("plain".to_owned(), "x".to_owned())
            ]
        );
    }
}
