//! Host capabilities: the Spin interfaces a component can import, one module each.
//!
//! Every capability has the same shape and lifecycle:
//! - **app state** (`AppCapabilities`): built once when the app loads and shared by all
//!   requests; expensive things live here (connection pools, multiplexed connections);
//! - **component state** (`ComponentCapabilities`): built once per component from the
//!   manifest (allowed outbound hosts, component variables);
//! - **instance state** (`CapabilityState`): built per instance (one per request), cheap,
//!   holding the guest's resource handles;
//! - **linking**: `add_to_linker` adds the capability's WIT imports to the linker.
//!
//! Every capability is a folder with the same files, so a reader who knows one knows
//! all (the shape of Spin's factors):
//! - `mod.rs`: the capability itself, its app/component state and its `thiserror`
//!   boundary error;
//! - `host.rs`: the WIT `Host` implementations on [`CapabilityView`] and its
//!   `add_to_linker` (or, for `outbound_hosts`, a note on who asks it);
//! - `runtime_config.rs`: its runtime-config table (or why it has none);
//! - `tests.rs`: its tests, against the real service where there is one.
//!
//! The folders: `postgres`, `redis`, `key_value`, `sqlite`, `variables`, `outbound_http`, `outbound_hosts` (the
//! `allowed_outbound_hosts` check the others ask before connecting) and `unsupported`.
//!
//! The guest only ever sees WIT errors (for example `error::connection-failed` or
//! `access-denied`); host-side problems are logged with the component id.

pub mod key_value;
pub mod outbound_hosts;
pub mod outbound_http;
pub mod postgres;
pub mod redis;
pub mod sqlite;
pub mod unsupported;
pub mod variables;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::variables::{ResolvedVariables, Template};
use outbound_hosts::AllowedHosts;
use outbound_http::OutboundHttp;
use serde::Deserialize;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What each instance's `Store` holds: the WASI contexts, the resource table and the
/// capability state of one request or message. It lives here, beside the capability
/// state it embeds, so the capabilities can name it in their linker functions without
/// importing a module that imports them back.
pub struct InstanceState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    /// Memory and table budget across all of the instance's memories
    /// (`--max-instance-memory-mb`), with refused growths counted
    /// (`edge_host_memory_limit_hits_total`).
    pub limits: crate::metrics::CountingLimiter<crate::engine::InstanceLimits>,
    pub outbound_http: OutboundHttp,
    pub capabilities: CapabilityState,
}

impl InstanceState {
    /// Ends a request on an instance that will serve another: releases the host state the
    /// request may have left behind, so the next request starts as it would on a fresh
    /// instance. Only PostgreSQL connections carry per-connection state (a transaction,
    /// `SET`s, temporary tables, locks): they go back to their pool through the same reset
    /// as a dropped handle. Redis handles share one multiplexed connection per address on
    /// which commands that would change connection state are refused, and outbound HTTP
    /// keeps nothing between requests, so neither needs anything here.
    pub fn end_request(&mut self) {
        self.capabilities
            .postgres_sessions
            .release_all(&mut self.table);
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound_http,
        }
    }
}

/// `[edge_host]` in the runtime config: each capability's own table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeHostConfig {
    #[serde(default)]
    pub postgres: postgres::PostgresConfig,
    #[serde(default)]
    pub redis: redis::RedisConfig,
    /// `[edge_host.admission]`: the HTTP trigger's per-component caps (read by
    /// `triggers::http` through [`crate::admission`], not by a capability).
    #[serde(default)]
    pub admission: crate::admission::AdmissionConfig,
    /// `[edge_host.component.<id>]`: per-component overrides of host-wide limits (not a
    /// capability, but it lives under `[edge_host]` like all of edge-host's own tuning).
    #[serde(default)]
    pub component: std::collections::BTreeMap<String, ComponentOverrides>,
    /// Spin's `[key_value_store.*]`, put here by the runtime-config loader.
    #[serde(skip)]
    pub key_value: key_value::KeyValueConfig,
    /// Spin's `[sqlite_database.*]`, put here by the runtime-config loader.
    #[serde(skip)]
    pub sqlite: sqlite::SqliteConfig,
}

/// `[edge_host.component.<id>]` in the runtime config. Spin has no per-component request
/// timeout (its `--request-timeout` is one value for the whole trigger), so this table is
/// edge-host's own.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentOverrides {
    /// This component's request timeout in milliseconds, instead of `--request-timeout`
    /// (HTTP requests and Redis messages alike).
    pub request_timeout_ms: Option<u64>,
}

/// Spin 4.1's connection cap of one capability (`[outbound_pg]` / `[outbound_redis]`
/// `max_connections`): at most `max` guest connections open at once across all
/// addresses, each holding a permit until it is released (Spin's `ConnectionSemaphore`,
/// spinframework/spin `crates/factor-outbound-networking`). Unlike Spin, which waits for a
/// permit without limit, a waiter gives up after `wait`.
pub struct ConnectionLimit {
    semaphore: Option<Arc<tokio::sync::Semaphore>>,
    max: usize,
    wait: std::time::Duration,
    table: &'static str,
}

/// All connections a `max_connections` allows were in use for the whole wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "all {max} connections allowed by `[{table}] max_connections` are in use (waited {} ms)",
    .waited.as_millis()
)]
pub struct LimitReached {
    table: &'static str,
    max: usize,
    waited: std::time::Duration,
}

impl ConnectionLimit {
    /// `max: None` is no limit (every acquire succeeds at once).
    pub fn new(table: &'static str, max: Option<usize>, wait: std::time::Duration) -> Self {
        Self {
            semaphore: max.map(|max| Arc::new(tokio::sync::Semaphore::new(max))),
            max: max.unwrap_or(usize::MAX),
            wait,
            table,
        }
    }

    /// A permit (none when unlimited), waiting at most the configured time for one.
    pub async fn acquire(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, LimitReached> {
        let Some(semaphore) = &self.semaphore else {
            return Ok(None);
        };
        let reached = || LimitReached {
            table: self.table,
            max: self.max,
            waited: self.wait,
        };
        match tokio::time::timeout(self.wait, semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // The semaphore is never closed; treat it as full if it ever is.
            Ok(Err(_)) | Err(_) => Err(reached()),
        }
    }
}

/// Per-application state shared by every request of every component.
pub struct AppCapabilities {
    /// PostgreSQL connection pools, one per connection string.
    pub postgres: postgres::PostgresPools,
    /// Redis multiplexed connections, one per address.
    pub redis: redis::RedisConnections,
    /// Key-value stores by label.
    pub key_value: key_value::KeyValueStores,
    /// SQLite databases by label.
    pub sqlite: sqlite::SqliteDatabases,
    /// `(component id, interface)` pairs already warned about, so an unsupported
    /// interface is logged once per component instead of once per call.
    warned_unsupported: Mutex<HashSet<(String, &'static str)>>,
}

impl AppCapabilities {
    /// Builds the shared state; connections are opened lazily, on first use. Without a
    /// state directory the `default` key-value store is in memory ([`Self::with_state_dir`]).
    pub fn new(config: &EdgeHostConfig) -> anyhow::Result<Self> {
        Self::with_state_dir(config, None)
    }

    /// The shared state of an app whose state (the `default` key-value store's and SQLite
    /// database's files) lives in `state_dir`.
    pub fn with_state_dir(
        config: &EdgeHostConfig,
        state_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            postgres: postgres::PostgresPools::new(&config.postgres),
            redis: redis::RedisConnections::new(&config.redis),
            key_value: key_value::KeyValueStores::new(&config.key_value, state_dir),
            sqlite: sqlite::SqliteDatabases::new(&config.sqlite, state_dir),
            warned_unsupported: Mutex::new(HashSet::new()),
        })
    }

    /// Every backing service the app has used, probed now (PostgreSQL `SELECT 1` through
    /// its pool, Redis `PING`), with redacted addresses, errors and pool state: the
    /// details for the metrics listener's `GET /ready`, never for the app's public port.
    /// Ready when every probe is up (and when none has been opened yet).
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        let (postgres, redis) = tokio::join!(self.postgres.readiness(), self.redis.readiness());
        let ready = postgres
            .iter()
            .chain(&redis)
            .all(|check| check["status"] == "up");
        let status = if ready { "ready" } else { "unavailable" };
        (
            ready,
            serde_json::json!({ "status": status, "postgres": postgres, "redis": redis }),
        )
    }

    /// Logs, once per component, that it called an interface edge-host does not serve.
    pub(crate) fn warn_unsupported(&self, component: &str, interface: &'static str) {
        let first = self
            .warned_unsupported
            .lock()
            .map(|mut warned| warned.insert((component.to_owned(), interface)))
            .unwrap_or(true);
        if first {
            tracing::warn!(
                component,
                interface,
                "component called an interface edge-host does not implement; it gets the interface's error (logged once per component)"
            );
        }
    }
}

/// Per-component configuration taken from the manifest.
pub struct ComponentCapabilities {
    /// The component id, for logs.
    pub id: String,
    /// `allowed_outbound_hosts`, templates resolved.
    pub allowed_hosts: AllowedHosts,
    /// `[component.X.variables]` templates, expanded on each `get`.
    pub variables: std::collections::HashMap<String, Template>,
    /// The application's variables, for template expansion.
    pub app_variables: Arc<ResolvedVariables>,
    /// `key_value_stores`: the labels the component may open.
    pub key_value_stores: HashSet<String>,
    /// `sqlite_databases`: the labels the component may open.
    pub sqlite_databases: HashSet<String>,
}

/// Per-instance state: what one request's guest holds. Resource handles (connections)
/// live in the store's `ResourceTable`, so dropping the store releases them; a reused
/// instance releases them at the end of each request instead ([`InstanceState::end_request`]).
pub struct CapabilityState {
    pub app: Arc<AppCapabilities>,
    pub component: Arc<ComponentCapabilities>,
    /// PostgreSQL connections the guest opened (each holds a pooled connection).
    pub postgres_sessions: postgres::OpenedSessions,
    /// Key-value store handles the guest holds (at most `key_value::MAX_OPEN_STORES`).
    pub key_value_open: usize,
    /// SQLite connections the guest holds (at most `sqlite::MAX_OPEN_CONNECTIONS`).
    pub sqlite_open: usize,
}

impl CapabilityState {
    /// Fresh state for a new instance.
    pub fn new(app: Arc<AppCapabilities>, component: Arc<ComponentCapabilities>) -> Self {
        Self {
            app,
            component,
            postgres_sessions: postgres::OpenedSessions::default(),
            key_value_open: 0,
            sqlite_open: 0,
        }
    }
}

/// What the generated `Host` traits are implemented on: the instance's capability state
/// together with its resource table, borrowed from the store for one call.
pub struct CapabilityView<'a> {
    pub state: &'a mut CapabilityState,
    pub table: &'a mut ResourceTable,
}

impl CapabilityView<'_> {
    /// The component id, for logs.
    pub(crate) fn component_id(&self) -> &str {
        &self.state.component.id
    }

    /// Logs once per component that `interface` is not served here.
    pub(crate) fn unsupported(&self, interface: &'static str) {
        self.state
            .app
            .warn_unsupported(&self.state.component.id, interface);
    }

    /// Stores a host object for the guest and returns the guest's handle to it. The
    /// generated bindings name each WIT resource with an uninhabited marker type `W`; the
    /// table keeps the real object `T` under the same index.
    pub(crate) fn push_resource<T: Send + 'static, W: 'static>(
        &mut self,
        value: T,
    ) -> wasmtime::Result<Resource<W>> {
        let handle = self.table.push(value)?;
        Ok(Resource::new_own(handle.rep()))
    }

    /// The host object behind a guest handle.
    pub(crate) fn resource_mut<T: Send + 'static, W: 'static>(
        &mut self,
        handle: &Resource<W>,
    ) -> wasmtime::Result<&mut T> {
        Ok(self
            .table
            .get_mut(&Resource::<T>::new_borrow(handle.rep()))?)
    }

    /// Removes (and drops) the host object behind a guest handle the guest dropped.
    pub(crate) fn delete_resource<T: Send + 'static, W: 'static>(
        &mut self,
        handle: Resource<W>,
    ) -> wasmtime::Result<T> {
        Ok(self.table.delete(Resource::<T>::new_own(handle.rep()))?)
    }
}

/// The `HasData` marker that tells the generated `add_to_linker` functions to hand the
/// host implementations a [`CapabilityView`].
pub struct HasCapabilities;

impl HasData for HasCapabilities {
    type Data<'a> = CapabilityView<'a>;
}

/// Borrows the capability view out of the store's data.
fn view(state: &mut InstanceState) -> CapabilityView<'_> {
    CapabilityView {
        state: &mut state.capabilities,
        table: &mut state.table,
    }
}

/// Adds every Spin platform import to the linker.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    postgres::add_to_linker(linker, view)?;
    redis::add_to_linker(linker, view)?;
    key_value::add_to_linker(linker, view)?;
    sqlite::add_to_linker(linker, view)?;
    variables::add_to_linker(linker, view)?;
    unsupported::add_to_linker(linker, view)?;
    Ok(())
}

/// How each capability's `add_to_linker` gets at its view.
pub(crate) type ViewGetter = fn(&mut InstanceState) -> CapabilityView<'_>;

/// Builders shared by the capability tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    /// App state with default tuning.
    pub fn app_capabilities() -> AppCapabilities {
        AppCapabilities::new(&EdgeHostConfig::default()).unwrap()
    }

    /// A component with the given allowed hosts, component variables (templates) and
    /// application variable values.
    pub fn component_with(
        allowed_hosts: &[&str],
        variables: HashMap<String, String>,
        app_variables: &[(&str, &str)],
    ) -> Arc<ComponentCapabilities> {
        Arc::new(ComponentCapabilities {
            id: "test-component".into(),
            allowed_hosts: AllowedHosts::parse(allowed_hosts.iter().copied()).unwrap(),
            variables: variables
                .into_iter()
                .map(|(name, template)| (name, Template::parse(&template).unwrap()))
                .collect(),
            app_variables: Arc::new(ResolvedVariables::from_pairs(app_variables)),
            key_value_stores: Default::default(),
            sqlite_databases: Default::default(),
        })
    }

    /// A service URL from the environment (`DATABASE_URL`, `REDIS_URL`: `scripts/services
    /// env` exports them). The tests that call this are `#[ignore]`d, since a plain `cargo
    /// test` lacks the services, and `scripts/test` runs them with `--include-ignored`; run
    /// without the variable, they fail naming it instead of passing without testing anything.
    pub fn env_url(name: &str) -> String {
        match std::env::var(name) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{name} is not set: run the tests through scripts/test, or \
                 `eval \"$(scripts/services env)\"` first"
            ),
        }
    }

    /// `scheme://host:port` of a URL, for `allowed_outbound_hosts`.
    pub fn origin_of(url: &str) -> String {
        let parsed = url::Url::parse(url).unwrap();
        format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap(),
            parsed.port().unwrap()
        )
    }
}
