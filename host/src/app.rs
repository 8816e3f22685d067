//! A loaded application: the manifest, its resolved variables, and every component
//! compiled, linked and pre-instantiated, ready to be instantiated per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::capabilities::outbound_hosts::AllowedHosts;
use crate::capabilities::outbound_http::OutboundHttp;
use crate::capabilities::InstanceState;
use crate::capabilities::{AppCapabilities, CapabilityState, ComponentCapabilities};
use crate::engine::{ComponentCompiler, EngineLimits};
use crate::logs::{ComponentOutput, Stream};
use crate::manifest::{LoadedManifest, Source};
use crate::runtime_config::RuntimeConfig;
use crate::variables::{ResolvedVariables, Template};

/// Everything needed to load an app.
pub struct AppOptions {
    pub manifest: LoadedManifest,
    pub variables: ResolvedVariables,
    pub runtime_config: RuntimeConfig,
    pub limits: EngineLimits,
    pub cache_dir: Option<std::path::PathBuf>,
    /// Longest a single request or message may run before it is cancelled.
    pub execution_timeout: Duration,
}

/// A loaded application.
pub struct App {
    pub engine: Engine,
    pub manifest: LoadedManifest,
    pub components: HashMap<String, Arc<AppComponent>>,
    pub capabilities: Arc<AppCapabilities>,
    pub variables: Arc<ResolvedVariables>,
    pub execution_timeout: Duration,
    /// One permit per instance the pooling allocator can hold: a request or message
    /// waits here for a free slot instead of failing when the pool is full.
    instance_slots: Arc<Semaphore>,
}

/// One component, pre-instantiated, with everything a fresh store for it needs (so
/// making one never reaches back to the [`App`]).
pub struct AppComponent {
    pub id: String,
    pub pre: InstancePre<InstanceState>,
    pub capabilities: Arc<ComponentCapabilities>,
    engine: Engine,
    app_capabilities: Arc<AppCapabilities>,
    environment: Vec<(String, String)>,
    stdout: ComponentOutput,
    stderr: ComponentOutput,
    max_memory: usize,
    /// `[edge_host.component.<id>] request_timeout_ms`, overriding `--request-timeout`.
    request_timeout: Option<Duration>,
    /// The component's `files`, preopened read-only at `/` in every instance.
    files: Option<crate::files::StagedFiles>,
    /// Its instance metrics (`component` label), resolved on first use.
    pub(crate) metrics: crate::metrics::ComponentSeries,
}

impl App {
    /// Compiles (or loads from cache), links and pre-instantiates every component that a
    /// trigger uses.
    pub fn load(options: AppOptions) -> anyhow::Result<Self> {
        let engine = crate::engine::build(&options.limits)?;
        let linker = build_linker(&engine)?;
        let compiler = ComponentCompiler::new(&engine, options.cache_dir.clone());
        let variables = Arc::new(options.variables);
        // Spin's state directory: `.spin` beside the manifest (the `default` key-value
        // store's file).
        let state_dir = options.manifest.base_dir().join(".spin");
        let capabilities = Arc::new(AppCapabilities::with_state_dir(
            &options.runtime_config.edge_host,
            Some(&state_dir),
        )?);
        let manifest = &options.manifest.manifest;
        let overrides = &options.runtime_config.edge_host.component;
        for (id, found) in overrides {
            if !manifest.component.contains_key(id) {
                bail!("runtime config: [edge_host.component.{id}]: the manifest has no component `{id}`");
            }
            if found.request_timeout_ms == Some(0) {
                bail!("runtime config: [edge_host.component.{id}] request_timeout_ms: must be more than 0");
            }
        }
        let used = options.manifest.triggered_components();
        let base_dir = options.manifest.base_dir();
        let loaded: Vec<anyhow::Result<AppComponent>> = std::thread::scope(|scope| {
            let handles: Vec<_> = used
                .iter()
                .map(|id| {
                    let shared = Shared {
                        compiler: &compiler,
                        linker: &linker,
                        variables: &variables,
                        limits: &options.limits,
                        app_capabilities: &capabilities,
                    };
                    let component = manifest.component[*id].get_ref();
                    scope.spawn(move || {
                        load_component(id, component, base_dir, shared)
                            .with_context(|| format!("loading component `{id}`"))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| bail!("component loader thread panicked"))
                })
                .collect()
        });
        let mut components = HashMap::new();
        for component in loaded {
            let mut component = component?;
            component.request_timeout = overrides
                .get(&component.id)
                .and_then(|o| o.request_timeout_ms)
                .map(Duration::from_millis);
            components.insert(component.id.clone(), Arc::new(component));
        }
        Ok(Self {
            engine,
            manifest: options.manifest,
            components,
            capabilities,
            variables,
            execution_timeout: options.execution_timeout,
            instance_slots: Arc::new(Semaphore::new(options.limits.max_instances as usize)),
        })
    }
}

impl App {
    /// Waits for a free instance slot and makes a fresh store for `component`: the
    /// start of every instance any trigger runs (see [`InstanceRun`]).
    pub async fn start_instance(&self, component: &AppComponent) -> InstanceRun {
        let slot = self
            .instance_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the instance semaphore is never closed");
        self.instance_in(slot, component)
    }

    /// Like [`start_instance`](Self::start_instance) when a slot is free right now;
    /// `None` when every slot is taken (the HTTP trigger then frees one held by an idle
    /// reusable instance before it waits).
    pub fn try_start_instance(&self, component: &AppComponent) -> Option<InstanceRun> {
        let slot = self.instance_slots.clone().try_acquire_owned().ok()?;
        Some(self.instance_in(slot, component))
    }

    fn instance_in(&self, slot: OwnedSemaphorePermit, component: &AppComponent) -> InstanceRun {
        InstanceRun {
            store: component.new_store(),
            _slot: slot,
            timeout: component.request_timeout.unwrap_or(self.execution_timeout),
            component_id: component.id.clone(),
            _counted: crate::metrics::instance_started(&component.metrics),
        }
    }
}

/// The work a trigger does with a store: instantiate and call the export.
pub type InstanceWork<'s, T> = futures::future::BoxFuture<'s, wasmtime::Result<T>>;

/// One instance from slot to teardown, the same for every trigger: a pool slot, a
/// fresh store, work under the execution deadline (once, or once per request when the
/// HTTP trigger reuses the instance), then the store dropped before the slot is handed
/// on (so the next waiter finds the pooling allocator's slot free).
pub struct InstanceRun {
    // Field order is drop order: the store is freed before the permit.
    store: Store<InstanceState>,
    _slot: OwnedSemaphorePermit,
    timeout: Duration,
    component_id: String,
    _counted: crate::metrics::InstanceGuard,
}

impl InstanceRun {
    /// The store, to hand the guest its arguments (request, response slot) before
    /// [`run`](Self::run).
    pub fn store_mut(&mut self) -> &mut Store<InstanceState> {
        &mut self.store
    }

    /// Runs `work` within the execution deadline. An instance whose work failed (a
    /// trap, an error, the deadline) is in an unknown state: drop it, never reuse it.
    /// Dropping an `InstanceRun` frees the store before the slot, so the next waiter
    /// finds the pooling allocator's slot free.
    pub async fn run<T>(
        &mut self,
        work: impl for<'s> FnOnce(&'s mut Store<InstanceState>) -> InstanceWork<'s, T>,
    ) -> anyhow::Result<T> {
        self.store.data_mut().limits.inner.hit = false;
        match tokio::time::timeout(self.timeout, work(&mut self.store)).await {
            Ok(Err(err)) if self.store.data().limits.inner.hit => {
                // Still a trap in the metrics; the refused growth is counted by the limiter.
                crate::metrics::instance_failed(&self.component_id, &err);
                Err(MemoryLimitExceeded {
                    component: self.component_id.clone(),
                    source: err.into(),
                }
                .into())
            }
            Ok(result) => result
                .inspect_err(|err| crate::metrics::instance_failed(&self.component_id, err))
                .map_err(anyhow::Error::from),
            Err(_) => {
                crate::metrics::instance_timed_out(&self.component_id);
                Err(DeadlineExceeded {
                    component: self.component_id.clone(),
                    timeout: self.timeout,
                }
                .into())
            }
        }
    }
}

/// The work of one request or message failed after the instance was refused memory for
/// exceeding `--max-instance-memory-mb` (all its memories and tables together; see
/// [`crate::engine::InstanceLimits`]): the guest usually aborts when an allocation fails.
/// The HTTP trigger answers 500 problem+json for it.
#[derive(Debug, thiserror::Error)]
#[error("component `{component}` ran out of memory (the instance memory cap): {source:#}")]
pub struct MemoryLimitExceeded {
    pub component: String,
    source: anyhow::Error,
}

/// The work of one request or message overran `--request-timeout` and was cut off. The
/// guest is stopped within one epoch tick of the deadline even in a CPU loop: the store
/// yields at every tick (`epoch_deadline_async_yield_and_update`), so the timeout around
/// the call gets its turn and drops the guest. Triggers look for this error (the HTTP
/// trigger answers 504) with `anyhow::Error::downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error("component `{component}` exceeded the request timeout of {timeout:?}")]
pub struct DeadlineExceeded {
    pub component: String,
    pub timeout: Duration,
}

fn build_linker(engine: &Engine) -> anyhow::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::capabilities::add_to_linker(&mut linker)?;
    // `fermyon:spin/redis-types` only declares the types of the Redis trigger's export;
    // a component built with `#[redis_component]` imports it as an empty instance.
    linker
        .instance("fermyon:spin/redis-types")
        .map_err(anyhow::Error::from)?;
    Ok(linker)
}

/// What every component's loader shares.
#[derive(Clone, Copy)]
struct Shared<'a> {
    compiler: &'a ComponentCompiler,
    linker: &'a Linker<InstanceState>,
    variables: &'a Arc<ResolvedVariables>,
    limits: &'a EngineLimits,
    app_capabilities: &'a Arc<AppCapabilities>,
}

fn load_component(
    id: &str,
    component: &crate::manifest::Component,
    base_dir: &std::path::Path,
    shared: Shared<'_>,
) -> anyhow::Result<AppComponent> {
    let Shared {
        compiler,
        linker,
        variables,
        limits,
        app_capabilities,
    } = shared;
    let Source::Local(source) = component.source.get_ref() else {
        bail!("only local `source` files are supported");
    };
    let path = base_dir.join(source);
    if !path.exists() {
        bail!(
            "source {} does not exist; build the components first (`edge-host build`)",
            path.display()
        );
    }
    let compiled = compiler.load(&path)?;
    for (name, _) in compiled.component_type().imports(compiler.engine()) {
        tracing::debug!(component = id, import = name, "component import");
    }
    let pre = linker
        .instantiate_pre(&compiled)
        .map_err(anyhow::Error::from)
        .context("linking imports (does the component need an interface edge-host lacks?)")?;

    let allowed: Vec<String> = component
        .allowed_outbound_hosts
        .iter()
        .map(|entry| {
            Template::parse(entry)?
                .render(variables)
                .map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<_>>()
        .context("expanding allowed_outbound_hosts")?;
    let allowed_hosts = AllowedHosts::parse(allowed.iter().map(String::as_str))?;
    let component_variables = component
        .variables
        .iter()
        .map(|(name, template)| Ok((name.clone(), Template::parse(template)?)))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let exclude = component
        .exclude_files
        .as_ref()
        .map_or(&[][..], |e| e.get_ref());
    let mounts = component.files.as_ref().map_or(&[][..], |f| f.get_ref());
    let files = crate::files::stage(base_dir, mounts, exclude)?;
    if let Some(files) = &files {
        tracing::debug!(
            component = id,
            files = files.count(),
            "staged the component's files"
        );
    }
    let key_value_stores = component
        .key_value_stores
        .as_ref()
        .map_or(&[][..], |labels| labels.get_ref());
    app_capabilities.key_value.prepare(id, key_value_stores)?;
    let sqlite_databases = component
        .sqlite_databases
        .as_ref()
        .map_or(&[][..], |labels| labels.get_ref());
    app_capabilities.sqlite.prepare(id, sqlite_databases)?;
    let capabilities = Arc::new(ComponentCapabilities {
        id: id.to_owned(),
        allowed_hosts,
        variables: component_variables,
        app_variables: variables.clone(),
        key_value_stores: key_value_stores.iter().cloned().collect(),
        sqlite_databases: sqlite_databases.iter().cloned().collect(),
    });
    Ok(AppComponent {
        id: id.to_owned(),
        pre,
        capabilities,
        engine: compiler.engine().clone(),
        app_capabilities: app_capabilities.clone(),
        environment: component
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stdout: ComponentOutput::new(id, Stream::Stdout),
        stderr: ComponentOutput::new(id, Stream::Stderr),
        max_memory: limits.max_instance_memory,
        request_timeout: None,
        files,
        metrics: crate::metrics::ComponentSeries::new(id),
    })
}

impl AppComponent {
    /// A fresh store for one request or message.
    pub fn new_store(&self) -> Store<InstanceState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .envs(&self.environment);
        if let Some(files) = &self.files {
            // One `openat` per instance; a failure (the staged directory removed under
            // the host) leaves the guest without files, which it sees as ENOENT.
            if let Err(err) =
                wasi.preopened_dir(files.root(), "/", wasmtime_wasi::FsPerms::ReadOnly)
            {
                tracing::error!(component = %self.id, error = %err, "cannot open the component's files");
            }
        }
        let state = InstanceState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: wasmtime::component::ResourceTable::new(),
            limits: crate::metrics::CountingLimiter::new(
                crate::engine::InstanceLimits::new(self.max_memory),
                &self.id,
            ),
            outbound_http: OutboundHttp::new(self.capabilities.clone()),
            capabilities: CapabilityState::new(
                self.app_capabilities.clone(),
                self.capabilities.clone(),
            ),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Yield to the executor at every epoch tick; the overall deadline is enforced
        // by the trigger with a timeout around the whole call.
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}
