//! The WIT host implementations of `fermyon:spin/variables` and `wasi:config/store`, and
//! how a lookup error becomes each interface's own error.

use super::*;

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
