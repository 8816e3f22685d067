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

    async fn redis_call<T>(
        &mut self,
        connection: &Resource<v2::Connection>,
        call: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> wasmtime::Result<Result<T, v2::Error>> {
        let (manager, address) = self.redis_handle(connection)?;
        let app = self.state.app.clone();
        let result = app.redis.bounded(call(manager)).await;
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
        match app.redis.connection(&address).await {
            Ok(connection) => Ok(Ok(self.push_resource(RedisHandle {
                connection,
                address: redacted(&address).into(),
            })?)),
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
        self.redis_call(&connection, async move |mut c| {
            c.publish::<_, _, ()>(channel, payload).await
        })
        .await
    }

    async fn get(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<v2::Payload>, v2::Error>> {
        self.redis_call(&connection, async move |mut c| {
            c.get::<_, Option<Vec<u8>>>(key).await
        })
        .await
    }

    async fn set(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
        value: v2::Payload,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        self.redis_call(&connection, async move |mut c| {
            c.set::<_, _, ()>(key, value).await
        })
        .await
    }

    async fn incr(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v2::Error>> {
        self.redis_call(&connection, async move |mut c| {
            c.incr::<_, _, i64>(key, 1).await
        })
        .await
    }

    async fn del(
        &mut self,
        connection: Resource<v2::Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        self.redis_call(&connection, async move |mut c| c.del::<_, u32>(keys).await)
            .await
    }

    async fn sadd(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        self.redis_call(&connection, async move |mut c| {
            c.sadd::<_, _, u32>(key, values).await
        })
        .await
    }

    async fn smembers(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        self.redis_call(&connection, async move |mut c| {
            c.smembers::<_, Vec<String>>(key).await
        })
        .await
    }

    async fn srem(
        &mut self,
        connection: Resource<v2::Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        self.redis_call(&connection, async move |mut c| {
            c.srem::<_, _, u32>(key, values).await
        })
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
        let mut cmd = redis::cmd(command.trim());
        for argument in arguments {
            match argument {
                v2::RedisParameter::Int64(v) => cmd.arg(v),
                v2::RedisParameter::Binary(bytes) => cmd.arg(bytes),
            };
        }
        let reply = self
            .redis_call(&connection, async move |mut c| {
                cmd.query_async::<Value>(&mut c).await
            })
            .await?;
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
