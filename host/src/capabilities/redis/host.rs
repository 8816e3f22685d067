//! The WIT host implementation of `fermyon:spin/redis@2.0.0` on [`CapabilityView`].

use super::*;

impl CapabilityView<'_> {
    fn redis_handle(
        &mut self,
        connection: &Resource<v2::Connection>,
    ) -> wasmtime::Result<(ConnectionManager, Arc<str>)> {
        let handle: &mut RedisHandle = self.resource_mut(connection)?;
        Ok((handle.connection.clone(), handle.address.clone()))
    }

    /// Runs one command on the handle's shared connection; see [`Retry`].
    async fn redis_call<T>(
        &mut self,
        connection: &Resource<v2::Connection>,
        retry: Retry,
        command: redis::Cmd,
    ) -> wasmtime::Result<Result<T, v2::Error>>
    where
        T: redis::FromRedisValue,
    {
        let (manager, address) = self.redis_handle(connection)?;
        let app = self.state.app.clone();
        let result = app.redis.run(&manager, retry, &command).await;
        crate::metrics::redis_command(&address, result.is_ok());
        Ok(result.map_err(Into::into))
    }
}

impl v2::Host for CapabilityView<'_> {}

impl v2::HostConnection for CapabilityView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<v2::Connection>, v2::Error>> {
        if !self.state.component.allowed_hosts.allows_url(&address) {
            tracing::warn!(
                component = self.component_id(),
                destination = redacted(&address),
                "Redis connection denied: not in allowed_outbound_hosts"
            );
            // Spin answers a denied address with `invalid-address` too.
            return Ok(Err(v2::Error::InvalidAddress));
        }
        let app = self.state.app.clone();
        match app.redis.handle(&address).await {
            Ok(handle) => Ok(Ok(self.push_resource(handle)?)),
            Err(err) => {
                tracing::warn!(
                    component = self.component_id(),
                    destination = redacted(&address),
                    "Redis connection failed: {err}"
                );
                Ok(Err(err.into()))
            }
        }
    }

    async fn publish(
        &mut self,
        connection: Resource<v2::Connection>,
        channel: String,
        payload: v2::Payload,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        // Not repeated: subscribers would get the message twice.
        let command = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
        self.redis_call::<()>(&connection, Retry::Never, command)
            .await
    }

    async fn get(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<v2::Payload>, v2::Error>> {
        let command = redis::cmd("GET").arg(key).to_owned();
        self.redis_call::<Option<Vec<u8>>>(&connection, Retry::Once, command)
            .await
    }

    async fn set(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
        value: v2::Payload,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let command = redis::cmd("SET").arg(key).arg(value).to_owned();
        self.redis_call::<()>(&connection, Retry::Once, command)
            .await
    }

    async fn incr(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v2::Error>> {
        // Not repeated: the key would count twice.
        let command = redis::cmd("INCR").arg(key).to_owned();
        self.redis_call::<i64>(&connection, Retry::Never, command)
            .await
    }

    async fn del(
        &mut self,
        connection: Resource<v2::Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        // Not repeated: the second reply would count the keys the first deleted as absent.
        let command = redis::cmd("DEL").arg(keys).to_owned();
        self.redis_call::<u32>(&connection, Retry::Never, command)
            .await
    }

    async fn sadd(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        // Not repeated: the reply (how many were new) would change.
        let command = redis::cmd("SADD").arg(key).arg(values).to_owned();
        self.redis_call::<u32>(&connection, Retry::Never, command)
            .await
    }

    async fn smembers(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        let command = redis::cmd("SMEMBERS").arg(key).to_owned();
        self.redis_call::<Vec<String>>(&connection, Retry::Once, command)
            .await
    }

    async fn srem(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        // Not repeated: the reply (how many were removed) would change.
        let command = redis::cmd("SREM").arg(key).arg(values).to_owned();
        self.redis_call::<u32>(&connection, Retry::Never, command)
            .await
    }

    async fn execute(
        &mut self,
        connection: Resource<v2::Connection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v2::RedisResult>, v2::Error>> {
        if let Err(err) = check_shareable(&command, &arguments) {
            return Ok(Err(err.into()));
        }
        let retry = execute_retry(&command, &arguments);
        let mut cmd = redis::cmd(command.trim());
        for argument in arguments {
            match argument {
                v2::RedisParameter::Int64(v) => cmd.arg(v),
                v2::RedisParameter::Binary(bytes) => cmd.arg(bytes),
            };
        }
        let reply = self.redis_call::<Value>(&connection, retry, cmd).await?;
        Ok(reply.and_then(|value| {
            let mut results = Vec::new();
            flatten_reply(value, &mut results).map_err(v2::Error::from)?;
            Ok(results)
        }))
    }

    async fn drop(&mut self, connection: Resource<v2::Connection>) -> wasmtime::Result<()> {
        self.delete_resource::<RedisHandle, _>(connection)?;
        Ok(())
    }
}

/// Links `fermyon:spin/redis@2.0.0`.
pub(crate) fn add_to_linker(
    linker: &mut Linker<InstanceState>,
    view: ViewGetter,
) -> anyhow::Result<()> {
    v2::add_to_linker::<InstanceState, HasCapabilities>(linker, view)?;
    Ok(())
}
