//! The WIT host implementation of `fermyon:spin/key-value@2.0.0` on [`CapabilityView`].

use wasmtime::component::{Linker, Resource};

use super::{OpenStore, Operation, Outcome, MAX_OPEN_STORES};
use crate::bindings::fermyon::spin2_0_0::key_value;
use crate::capabilities::{CapabilityView, HasCapabilities, InstanceState, ViewGetter};

type Answer<T> = wasmtime::Result<Result<T, key_value::Error>>;

impl CapabilityView<'_> {
    /// Runs one operation on an open store; a backend failure is logged and answered
    /// with `error::other`.
    async fn kv(
        &mut self,
        store: &Resource<key_value::Store>,
        operation: Operation,
    ) -> Answer<Outcome> {
        let open: &mut OpenStore = self.resource_mut(store)?;
        let (label, backend) = (open.label.clone(), open.backend.clone());
        let app = self.state.app.clone();
        match backend.run(&app.redis, &label, operation).await {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(failure) => {
                tracing::warn!(component = %self.component_id(), store = %label, error = %failure, "key-value operation failed");
                Ok(Err(key_value::Error::Other(failure.to_string())))
            }
        }
    }
}

/// An outcome of the wrong kind for its operation: a host bug, so a trap.
fn mismatch() -> wasmtime::Error {
    wasmtime::Error::msg("key-value backend answered with the wrong kind of outcome")
}

impl key_value::Host for CapabilityView<'_> {}

impl key_value::HostStore for CapabilityView<'_> {
    async fn open(&mut self, label: String) -> Answer<Resource<key_value::Store>> {
        // Access first, as Spin does: an unlisted label is access-denied whether or not
        // the app has such a store.
        if !self.state.component.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        let Some(backend) = self.state.app.key_value.get(&label) else {
            return Ok(Err(key_value::Error::NoSuchStore));
        };
        if self.state.key_value_open >= MAX_OPEN_STORES {
            return Ok(Err(key_value::Error::StoreTableFull));
        }
        self.state.key_value_open += 1;
        Ok(Ok(self.push_resource(OpenStore { label, backend })?))
    }

    async fn get(
        &mut self,
        store: Resource<key_value::Store>,
        key: String,
    ) -> Answer<Option<Vec<u8>>> {
        Ok(match self.kv(&store, Operation::Get(key)).await? {
            Ok(Outcome::Value(value)) => Ok(value),
            Ok(_) => return Err(mismatch()),
            Err(err) => Err(err),
        })
    }

    async fn set(
        &mut self,
        store: Resource<key_value::Store>,
        key: String,
        value: Vec<u8>,
    ) -> Answer<()> {
        Ok(self.kv(&store, Operation::Set(key, value)).await?.map(drop))
    }

    async fn delete(&mut self, store: Resource<key_value::Store>, key: String) -> Answer<()> {
        Ok(self.kv(&store, Operation::Delete(key)).await?.map(drop))
    }

    async fn exists(&mut self, store: Resource<key_value::Store>, key: String) -> Answer<bool> {
        Ok(match self.kv(&store, Operation::Exists(key)).await? {
            Ok(Outcome::Exists(found)) => Ok(found),
            Ok(_) => return Err(mismatch()),
            Err(err) => Err(err),
        })
    }

    async fn get_keys(&mut self, store: Resource<key_value::Store>) -> Answer<Vec<String>> {
        Ok(match self.kv(&store, Operation::Keys).await? {
            Ok(Outcome::Keys(keys)) => Ok(keys),
            Ok(_) => return Err(mismatch()),
            Err(err) => Err(err),
        })
    }

    async fn drop(&mut self, store: Resource<key_value::Store>) -> wasmtime::Result<()> {
        self.delete_resource::<OpenStore, _>(store)?;
        self.state.key_value_open = self.state.key_value_open.saturating_sub(1);
        Ok(())
    }
}

pub(crate) fn add_to_linker(
    linker: &mut Linker<InstanceState>,
    view: ViewGetter,
) -> anyhow::Result<()> {
    key_value::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    Ok(())
}
