//! Outbound Redis: `fermyon:spin/redis@2.0.0`.
//!
//! - **App state** ([`RedisConnections`]): one multiplexed connection per address, shared
//!   by every request of every component (Spin 3.6 opens a connection per request). It is
//!   opened on first use and reconnects by itself after Redis goes away: a command that
//!   finds the connection broken fails at once, and the next one reconnects.
//! - **Instance state**: a guest `connection` handle is a cheap clone of the shared
//!   connection.
//! - Because the connection is shared, `execute` refuses the commands that would change
//!   it for everyone (`SELECT`, `AUTH`, `CLIENT …`, `MULTI`/`EXEC`/`WATCH`, subscriptions,
//!   `MONITOR`) or stall it for everyone (blocking pops, `WAIT`, `XREAD … BLOCK`): use
//!   `EVAL` for atomic multi-step work.
//! - `execute` maps replies as Spin does: nested arrays (what Lua scripts return) are
//!   flattened into one list, `OK` and other status replies become `status`, integers
//!   `int64`, bulk strings `binary`, nil `nil`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Value};
use tokio::sync::OnceCell;
use wasmtime::component::{Linker, Resource};

use super::{CapabilityView, HasCapabilities, ViewGetter};
use crate::bindings::fermyon::spin2_0_0::redis as v2;
use crate::capabilities::InstanceState;
use crate::runtime_config::RedisConfig;

/// At most this many distinct addresses get a connection (addresses are guest strings).
const MAX_ADDRESSES: usize = 32;

/// Commands that change or monopolise the shared connection.
const CONNECTION_COMMANDS: &[&str] = &[
    "AUTH",
    "HELLO",
    "SELECT",
    "RESET",
    "QUIT",
    "CLIENT",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "SYNC",
    "PSYNC",
    "REPLCONF",
    "READONLY",
    "READWRITE",
];

/// Commands that block the connection until something happens elsewhere.
const BLOCKING_COMMANDS: &[&str] = &[
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "WAIT",
    "WAITAOF",
];

/// A Redis failure, at the boundary; converts into the WIT error.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("invalid Redis address")]
    InvalidAddress,
    #[error("Redis value has the wrong type: {0}")]
    TypeError(String),
    #[error("{0}")]
    Other(String),
}

impl From<redis::RedisError> for RedisFailure {
    /// `type-error` covers what the WIT promises: a value of the wrong type (`WRONGTYPE`)
    /// or one that is not an integer where one is needed (`INCR` on text).
    fn from(error: redis::RedisError) -> Self {
        let wrong_type = error.kind() == redis::ErrorKind::TypeError
            || error.code() == Some("WRONGTYPE")
            || (error.kind() == redis::ErrorKind::ResponseError
                && error.to_string().contains("not an integer"));
        if wrong_type {
            Self::TypeError(error.to_string())
        } else {
            Self::Other(error.to_string())
        }
    }
}

impl From<RedisFailure> for v2::Error {
    fn from(failure: RedisFailure) -> Self {
        match failure {
            RedisFailure::InvalidAddress => Self::InvalidAddress,
            RedisFailure::TypeError(_) => Self::TypeError,
            RedisFailure::Other(text) => Self::Other(text),
        }
    }
}

/// The shared connections, one per address, opened lazily.
pub struct RedisConnections {
    connections: Mutex<HashMap<String, Arc<OnceCell<ConnectionManager>>>>,
    timeout: Duration,
}

impl RedisConnections {
    /// Empty; connections open on first use.
    pub fn new(config: &RedisConfig) -> Self {
        Self {
            connections: Mutex::new(HashMap::new()),
            timeout: Duration::from_millis(config.timeout_ms),
        }
    }

    /// The shared connection to `address`, connecting if this is the first use.
    pub async fn connection(&self, address: &str) -> Result<ConnectionManager, RedisFailure> {
        let cell = {
            let mut connections = self
                .connections
                .lock()
                .map_err(|_| RedisFailure::Other("connection registry is poisoned".into()))?;
            if !connections.contains_key(address) && connections.len() >= MAX_ADDRESSES {
                return Err(RedisFailure::Other(format!(
                    "too many distinct Redis addresses (at most {MAX_ADDRESSES})"
                )));
            }
            match connections.get(address) {
                // The common case: connected already, no parsing, no allocation.
                Some(cell) if cell.initialized() => cell.clone(),
                _ => {
                    // Validate before registering, so bad addresses take no slot.
                    redis::Client::open(address).map_err(|_| RedisFailure::InvalidAddress)?;
                    connections.entry(address.to_owned()).or_default().clone()
                }
            }
        };
        if let Some(manager) = cell.get() {
            return Ok(manager.clone());
        }
        let client = redis::Client::open(address).map_err(|_| RedisFailure::InvalidAddress)?;
        let timeout = self.timeout;
        let manager = cell
            .get_or_try_init(|| async move {
                // No reconnect retries inside a command: while Redis is down every call
                // fails fast, and the call after it comes back reconnects.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                match tokio::time::timeout(
                    timeout,
                    ConnectionManager::new_with_config(client, config),
                )
                .await
                {
                    Ok(result) => result.map_err(RedisFailure::from),
                    Err(_) => Err(RedisFailure::Other("timed out connecting to Redis".into())),
                }
            })
            .await?;
        Ok(manager.clone())
    }

    /// Bounds a command's time, whatever state the connection is in.
    async fn bounded<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisFailure> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(result) => result.map_err(RedisFailure::from),
            Err(_) => Err(RedisFailure::Other("Redis command timed out".into())),
        }
    }
}

/// What a guest `connection` handle holds.
pub struct RedisHandle {
    connection: ConnectionManager,
}

/// `scheme://host:port` of a Redis address, for logs: never the password.
fn redacted(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(url) => format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().unwrap_or(6379)
        ),
        Err(_) => "<invalid Redis address>".to_owned(),
    }
}

/// Refuses commands that would change or stall the shared connection.
fn check_shareable(command: &str, arguments: &[v2::RedisParameter]) -> Result<(), RedisFailure> {
    let name = command.trim().to_ascii_uppercase();
    let blocking_stream_read = matches!(name.as_str(), "XREAD" | "XREADGROUP")
        && arguments.iter().any(|argument| {
            matches!(argument, v2::RedisParameter::Binary(bytes) if bytes.eq_ignore_ascii_case(b"BLOCK"))
        });
    if CONNECTION_COMMANDS.contains(&name.as_str()) {
        Err(RedisFailure::Other(format!(
            "`{name}` is not supported: edge-host shares one Redis connection between requests \
             (use EVAL for atomic multi-step work)"
        )))
    } else if BLOCKING_COMMANDS.contains(&name.as_str()) || blocking_stream_read {
        Err(RedisFailure::Other(format!(
            "blocking command `{name}` is not supported on edge-host's shared Redis connection"
        )))
    } else {
        Ok(())
    }
}

/// Flattens a reply into the WIT's list of results, as Spin does.
fn flatten_reply(value: Value, out: &mut Vec<v2::RedisResult>) -> Result<(), RedisFailure> {
    match value {
        Value::Nil => out.push(v2::RedisResult::Nil),
        Value::Int(v) => out.push(v2::RedisResult::Int64(v)),
        Value::BulkString(bytes) => out.push(v2::RedisResult::Binary(bytes)),
        Value::SimpleString(text) => out.push(v2::RedisResult::Status(text)),
        Value::Okay => out.push(v2::RedisResult::Status("OK".into())),
        Value::Array(values) | Value::Set(values) => {
            for value in values {
                flatten_reply(value, out)?;
            }
        }
        Value::Map(pairs) => {
            for (key, value) in pairs {
                flatten_reply(key, out)?;
                flatten_reply(value, out)?;
            }
        }
        Value::Attribute { data, .. } => flatten_reply(*data, out)?,
        Value::Double(v) => out.push(v2::RedisResult::Binary(v.to_string().into_bytes())),
        Value::Boolean(v) => out.push(v2::RedisResult::Int64(i64::from(v))),
        Value::BigNumber(v) => out.push(v2::RedisResult::Binary(v.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => out.push(v2::RedisResult::Binary(text.into_bytes())),
        Value::ServerError(err) => {
            return Err(RedisFailure::Other(format!(
                "{}{}",
                err.code(),
                err.details().map(|d| format!(" {d}")).unwrap_or_default()
            )))
        }
        Value::Push { .. } => {
            return Err(RedisFailure::Other(
                "pub/sub replies are not supported".into(),
            ))
        }
    }
    Ok(())
}

impl CapabilityView<'_> {
    fn redis_handle(
        &mut self,
        connection: &Resource<v2::Connection>,
    ) -> wasmtime::Result<ConnectionManager> {
        let handle: &mut RedisHandle = self.resource_mut(connection)?;
        Ok(handle.connection.clone())
    }

    async fn redis_call<T>(
        &mut self,
        connection: &Resource<v2::Connection>,
        call: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> wasmtime::Result<Result<T, v2::Error>> {
        let manager = self.redis_handle(connection)?;
        let app = self.state.app.clone();
        Ok(app.redis.bounded(call(manager)).await.map_err(Into::into))
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
            Ok(connection) => Ok(Ok(self.push_resource(RedisHandle { connection })?)),
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

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;

    use wasmtime::component::ResourceTable;

    use super::*;
    use crate::capabilities::test_support::{component_with, env_url, origin_of};
    use crate::capabilities::{AppCapabilities, CapabilityState, ComponentCapabilities};
    use v2::HostConnection as _;

    struct Request {
        state: CapabilityState,
        table: ResourceTable,
    }

    impl Request {
        fn new(app: &Arc<AppCapabilities>, component: &Arc<ComponentCapabilities>) -> Self {
            Self {
                state: CapabilityState::new(app.clone(), component.clone()),
                table: ResourceTable::new(),
            }
        }

        fn view(&mut self) -> CapabilityView<'_> {
            CapabilityView {
                state: &mut self.state,
                table: &mut self.table,
            }
        }
    }

    fn app() -> Arc<AppCapabilities> {
        Arc::new(crate::capabilities::test_support::app_capabilities())
    }

    fn borrow(connection: &Resource<v2::Connection>) -> Resource<v2::Connection> {
        Resource::new_borrow(connection.rep())
    }

    fn bin(text: &str) -> v2::RedisParameter {
        v2::RedisParameter::Binary(text.as_bytes().to_vec())
    }

    fn debug<D: std::fmt::Debug>(value: D) -> String {
        format!("{value:?}")
    }

    #[tokio::test]
    async fn commands_and_replies_map_like_spin() {
        let Some(url) = env_url("REDIS_URL") else {
            return;
        };
        let app = app();
        let component = component_with(&[origin_of(&url).as_str()], Default::default(), &[]);
        let mut request = Request::new(&app, &component);
        let mut view = request.view();
        let c = view.open(url.clone()).await.unwrap().unwrap();
        let key = format!("edge-host-test:{}", std::process::id());
        let set_key = format!("{key}:set");

        view.set(borrow(&c), key.clone(), b"41".to_vec())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            view.incr(borrow(&c), key.clone()).await.unwrap().unwrap(),
            42
        );
        let got = view.get(borrow(&c), key.clone()).await.unwrap().unwrap();
        assert_eq!(got.as_deref(), Some(&b"42"[..]));
        let missing = view
            .get(borrow(&c), format!("{key}:absent"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(missing, None);
        view.set(borrow(&c), key.clone(), b"text".to_vec())
            .await
            .unwrap()
            .unwrap();
        let not_integer = view.incr(borrow(&c), key.clone()).await.unwrap();
        assert!(
            matches!(not_integer, Err(v2::Error::TypeError)),
            "{not_integer:?}"
        );

        let added = view.sadd(
            borrow(&c),
            set_key.clone(),
            vec!["a".into(), "b".into(), "a".into()],
        );
        assert_eq!(added.await.unwrap().unwrap(), 2);
        let mut members = view
            .smembers(borrow(&c), set_key.clone())
            .await
            .unwrap()
            .unwrap();
        members.sort();
        assert_eq!(members, ["a", "b"]);
        let wrong = view.smembers(borrow(&c), key.clone()).await.unwrap();
        assert!(matches!(wrong, Err(v2::Error::TypeError)), "{wrong:?}");
        let removed = view.srem(borrow(&c), set_key.clone(), vec!["a".into(), "z".into()]);
        assert_eq!(removed.await.unwrap().unwrap(), 1);
        view.publish(borrow(&c), "edge-host-test".into(), b"hi".to_vec())
            .await
            .unwrap()
            .unwrap();

        // Lua's nested tables come back flattened; status replies stay statuses.
        let script = "return {1, {ARGV[1], {2}}, redis.status_reply('FINE'), false}";
        let results = view
            .execute(
                borrow(&c),
                "EVAL".into(),
                vec![bin(script), v2::RedisParameter::Int64(0), bin("a")],
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            debug(results),
            debug(vec![
                v2::RedisResult::Int64(1),
                v2::RedisResult::Binary(b"a".to_vec()),
                v2::RedisResult::Int64(2),
                v2::RedisResult::Status("FINE".into()),
                v2::RedisResult::Nil,
            ])
        );
        let ok = view
            .execute(borrow(&c), "set".into(), vec![bin(&key), bin("v")])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(debug(ok), debug(vec![v2::RedisResult::Status("OK".into())]));
        let failing = view
            .execute(
                borrow(&c),
                "EVAL".into(),
                vec![
                    bin("return redis.error_reply('NOPE bad')"),
                    v2::RedisParameter::Int64(0),
                ],
            )
            .await
            .unwrap();
        assert!(
            matches!(&failing, Err(v2::Error::Other(m)) if m.contains("NOPE")),
            "{failing:?}"
        );

        // Commands that would change or stall the shared connection are refused.
        for (command, args) in [
            ("MULTI", vec![]),
            ("select", vec![bin("1")]),
            ("CLIENT", vec![bin("SETNAME"), bin("x")]),
            ("BLPOP", vec![bin(&key), v2::RedisParameter::Int64(1)]),
            (
                "XREAD",
                vec![bin("BLOCK"), bin("0"), bin("STREAMS"), bin("s"), bin("$")],
            ),
        ] {
            let refused = view
                .execute(borrow(&c), command.into(), args)
                .await
                .unwrap();
            assert!(
                matches!(&refused, Err(v2::Error::Other(m)) if m.contains("not supported")),
                "{command}: {refused:?}"
            );
        }

        let deleted = view.del(
            borrow(&c),
            vec![key.clone(), set_key.clone(), format!("{key}:absent")],
        );
        assert_eq!(deleted.await.unwrap().unwrap(), 2);
        v2::HostConnection::drop(&mut view, c).await.unwrap();

        // Every request shares the one connection per address.
        assert_eq!(app.redis.connections.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn denied_and_invalid_addresses() {
        let app = app();
        let component = component_with(&["redis://127.0.0.1:6379"], Default::default(), &[]);
        let mut request = Request::new(&app, &component);
        let mut view = request.view();
        let denied = view
            .open("redis://:secret@10.0.0.1:6379".into())
            .await
            .unwrap();
        assert!(
            matches!(denied, Err(v2::Error::InvalidAddress)),
            "{denied:?}"
        );
        let invalid = view.open("not a url".into()).await.unwrap();
        assert!(
            matches!(invalid, Err(v2::Error::InvalidAddress)),
            "{invalid:?}"
        );
        assert_eq!(
            redacted("redis://:secret@10.0.0.1:6379/0"),
            "redis://10.0.0.1:6379"
        );
    }

    /// A throwaway redis-server on a free loopback port, stopped on drop.
    struct TestRedis {
        port: u16,
        child: Option<Child>,
    }

    impl TestRedis {
        fn start(port: u16) -> Option<Self> {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            Some(Self {
                port,
                child: Some(child),
            })
        }

        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        async fn wait_ready(&self) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            self.stop();
        }
    }

    async fn ping(
        app: &Arc<AppCapabilities>,
        component: &Arc<ComponentCapabilities>,
        url: &str,
    ) -> Result<(), String> {
        let mut request = Request::new(app, component);
        let mut view = request.view();
        let connection = view
            .open(url.to_owned())
            .await
            .unwrap()
            .map_err(|e| format!("{e:?}"))?;
        let reply = view
            .execute(borrow(&connection), "PING".into(), vec![])
            .await
            .unwrap();
        reply.map(|_| ()).map_err(|e| format!("{e:?}"))
    }

    #[tokio::test]
    async fn the_shared_connection_fails_fast_and_recovers() {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: redis-server is not installed");
            return;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let app = app();
        let component = component_with(&[origin_of(&url).as_str()], Default::default(), &[]);

        let mut server = TestRedis::start(port).expect("redis-server starts");
        server.wait_ready().await;
        ping(&app, &component, &url).await.unwrap();

        server.stop();
        let started = std::time::Instant::now();
        let mut failures = 0;
        for _ in 0..3 {
            if ping(&app, &component, &url).await.is_err() {
                failures += 1;
            }
        }
        assert!(failures >= 2, "calls fail while Redis is down");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "and they fail fast: {:?}",
            started.elapsed()
        );

        let server = TestRedis::start(port).expect("redis-server restarts");
        server.wait_ready().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match ping(&app, &component, &url).await {
                Ok(()) => break,
                Err(err) => assert!(std::time::Instant::now() < deadline, "no recovery: {err}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
