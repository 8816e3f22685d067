//! The WIT host implementations: every call answers with its interface's error.

use super::*;

/// The message every unsupported connection-style interface answers with.
pub(super) const NOT_SUPPORTED: &str = "not supported by edge-host";

type Outcome<T, E> = wasmtime::Result<Result<T, E>>;

impl llm::Host for CapabilityView<'_> {
    async fn infer(
        &mut self,
        _model: llm::InferencingModel,
        _prompt: String,
        _params: Option<llm::InferencingParams>,
    ) -> Outcome<llm::InferencingResult, llm::Error> {
        self.unsupported("fermyon:spin/llm");
        Ok(Err(llm::Error::ModelNotSupported))
    }

    async fn generate_embeddings(
        &mut self,
        _model: llm::EmbeddingModel,
        _text: Vec<String>,
    ) -> Outcome<llm::EmbeddingsResult, llm::Error> {
        self.unsupported("fermyon:spin/llm");
        Ok(Err(llm::Error::ModelNotSupported))
    }
}

impl mqtt::Host for CapabilityView<'_> {}

impl mqtt::HostConnection for CapabilityView<'_> {
    async fn open(
        &mut self,
        _address: String,
        _username: String,
        _password: String,
        _keep_alive_interval_in_secs: u64,
    ) -> Outcome<Resource<mqtt::Connection>, mqtt::Error> {
        self.unsupported("fermyon:spin/mqtt");
        Ok(Err(mqtt::Error::ConnectionFailed(NOT_SUPPORTED.into())))
    }

    async fn publish(
        &mut self,
        _connection: Resource<mqtt::Connection>,
        _topic: String,
        _payload: mqtt::Payload,
        _qos: mqtt::Qos,
    ) -> Outcome<(), mqtt::Error> {
        Ok(Err(mqtt::Error::ConnectionFailed(NOT_SUPPORTED.into())))
    }

    async fn drop(&mut self, _connection: Resource<mqtt::Connection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl mysql::Host for CapabilityView<'_> {}

impl mysql::HostConnection for CapabilityView<'_> {
    async fn open(
        &mut self,
        _address: String,
    ) -> Outcome<Resource<mysql::Connection>, rdbms_types::Error> {
        self.unsupported("fermyon:spin/mysql");
        Ok(Err(rdbms_types::Error::ConnectionFailed(
            NOT_SUPPORTED.into(),
        )))
    }

    async fn query(
        &mut self,
        _connection: Resource<mysql::Connection>,
        _statement: String,
        _params: Vec<rdbms_types::ParameterValue>,
    ) -> Outcome<rdbms_types::RowSet, rdbms_types::Error> {
        Ok(Err(rdbms_types::Error::ConnectionFailed(
            NOT_SUPPORTED.into(),
        )))
    }

    async fn execute(
        &mut self,
        _connection: Resource<mysql::Connection>,
        _statement: String,
        _params: Vec<rdbms_types::ParameterValue>,
    ) -> Outcome<(), rdbms_types::Error> {
        Ok(Err(rdbms_types::Error::ConnectionFailed(
            NOT_SUPPORTED.into(),
        )))
    }

    async fn drop(&mut self, _connection: Resource<mysql::Connection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl wasi_kv::Host for CapabilityView<'_> {
    async fn open(
        &mut self,
        _identifier: String,
    ) -> Outcome<Resource<wasi_kv::Bucket>, wasi_kv::Error> {
        self.unsupported("wasi:keyvalue/store@0.2.0-draft2");
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }
}

impl wasi_kv::HostBucket for CapabilityView<'_> {
    async fn get(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key: String,
    ) -> Outcome<Option<Vec<u8>>, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn set(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key: String,
        _value: Vec<u8>,
    ) -> Outcome<(), wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn delete(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key: String,
    ) -> Outcome<(), wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn exists(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key: String,
    ) -> Outcome<bool, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn list_keys(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _cursor: Option<String>,
    ) -> Outcome<wasi_kv::KeyResponse, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn drop(&mut self, _bucket: Resource<wasi_kv::Bucket>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl atomics::Host for CapabilityView<'_> {
    async fn increment(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key: String,
        _delta: i64,
    ) -> Outcome<i64, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn swap(
        &mut self,
        _cas: Resource<atomics::Cas>,
        _value: Vec<u8>,
    ) -> Outcome<(), atomics::CasError> {
        Ok(Err(atomics::CasError::StoreError(
            wasi_kv::Error::NoSuchStore,
        )))
    }
}

impl atomics::HostCas for CapabilityView<'_> {
    async fn new(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key: String,
    ) -> Outcome<Resource<atomics::Cas>, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn current(
        &mut self,
        _cas: Resource<atomics::Cas>,
    ) -> Outcome<Option<Vec<u8>>, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn drop(&mut self, _cas: Resource<atomics::Cas>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl batch::Host for CapabilityView<'_> {
    async fn get_many(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _keys: Vec<String>,
    ) -> Outcome<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn set_many(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _key_values: Vec<(String, Vec<u8>)>,
    ) -> Outcome<(), wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }

    async fn delete_many(
        &mut self,
        _bucket: Resource<wasi_kv::Bucket>,
        _keys: Vec<String>,
    ) -> Outcome<(), wasi_kv::Error> {
        Ok(Err(wasi_kv::Error::NoSuchStore))
    }
}

/// Links every interface this module answers for.
pub(crate) fn add_to_linker(
    linker: &mut Linker<InstanceState>,
    view: ViewGetter,
) -> anyhow::Result<()> {
    llm::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    mqtt::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    mysql::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    wasi_kv::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    atomics::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    batch::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    Ok(())
}
