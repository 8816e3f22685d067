//! The wasmtime engine: configuration, the pooling allocator, the epoch ticker, and the
//! on-disk compile cache.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds; loading a
//! precompiled artifact takes a few. Artifacts are cached under the cache directory,
//! keyed by the SHA-256 of the component's bytes and a hash of everything in the engine
//! configuration that affects code generation, so a restart with unchanged components
//! compiles nothing and a changed engine never loads stale code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Guests yield to the executor at every tick, so one
/// busy component cannot starve the requests sharing its thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits that apply to every instance.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Largest linear memory one instance may grow to.
    pub max_instance_memory: usize,
    /// Instances that may exist at once (requests in flight plus warm slots).
    pub max_instances: u32,
    /// How a slot's linear memory is made clean for its next instance.
    pub memory_reset: MemoryReset,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            max_instance_memory: 128 << 20,
            max_instances: 1_000,
            memory_reset: MemoryReset::default(),
        }
    }
}

/// How the pooling allocator returns a slot's linear memory to its initial contents
/// when an instance ends. This is most of the kernel time of a fresh-instance request:
/// pages given back with `madvise` fault in again (zeroed, one by one) in the next
/// instance, and each `madvise` can cost a cross-core TLB shootdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryReset {
    /// `memset` the first 64 KiB, `madvise` the rest away.
    Decommit,
    /// Ask the kernel which pages the instance dirtied (Linux 6.7+ `PAGEMAP_SCAN`) and
    /// `memset` only those, up to [`SCAN_KEEP_RESIDENT`]: the pages stay mapped, so the
    /// next instance in the slot takes no page faults on them and no `madvise` runs.
    /// Falls back to [`Decommit`](Self::Decommit)'s behaviour where the ioctl is missing.
    #[default]
    ScanDirty,
}

/// Most bytes of dirtied memory [`MemoryReset::ScanDirty`] resets in place per slot.
/// A spin-sdk handler dirties well under this per request (its stack, statics and a
/// small heap); what lies beyond is decommitted as before, so an instance that grew
/// large does not pin that memory.
pub const SCAN_KEEP_RESIDENT: usize = 4 << 20;

/// Builds the engine and starts its epoch ticker thread.
pub fn build(limits: &EngineLimits) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);

    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(limits.max_instances);
    pool.total_core_instances(limits.max_instances * 4);
    pool.total_memories(limits.max_instances * 2);
    pool.total_tables(limits.max_instances * 4);
    pool.total_stacks(limits.max_instances);
    pool.max_memory_size(limits.max_instance_memory);
    pool.max_core_instances_per_component(32);
    pool.max_memories_per_component(8);
    // Multi-memory modules load (wasmtime's default is one memory per core module); the
    // memory cap still counts all of them together (see `InstanceLimits`).
    pool.max_memories_per_module(2);
    pool.max_tables_per_component(16);
    pool.max_component_instance_size(1 << 20);
    match limits.memory_reset {
        MemoryReset::Decommit => {
            // Keep the first pages of a reused slot resident instead of returning them
            // to the kernel, so the next instance does not page-fault through them.
            pool.linear_memory_keep_resident(64 << 10);
        }
        MemoryReset::ScanDirty => {
            pool.linear_memory_keep_resident(SCAN_KEEP_RESIDENT);
            pool.pagemap_scan(wasmtime::Enabled::Auto);
        }
    }
    pool.table_keep_resident(1 << 16);
    pool.max_unused_warm_slots(100);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the wasmtime engine")?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Compiles components, or loads them from the on-disk cache.
pub struct ComponentCompiler {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCompiler {
    /// A compiler caching into `cache_dir`; `None` disables the cache.
    pub fn new(engine: &Engine, cache_dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Self {
            engine: engine.clone(),
            cache_dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The engine components are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the component at `path`, compiling it only on a cache miss.
    pub fn load(&self, path: &Path) -> anyhow::Result<Component> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
        let Some(cache_dir) = &self.cache_dir else {
            return self.compile(path, &bytes);
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        let cached = cache_dir.join(format!("{digest}-{}.cwasm", self.engine_key));
        if cached.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with
            // the same compatibility hash (it is in the file name) into a directory this
            // host owns; wasmtime also checks the header before using it.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => {
                    tracing::debug!(path = %path.display(), "loaded precompiled component from cache");
                    return Ok(component);
                }
                Err(err) => {
                    tracing::warn!(cache = %cached.display(), "ignoring unusable cache entry: {err:#}");
                }
            }
        }
        let component = self.compile(path, &bytes)?;
        if let Err(err) = write_atomically(&cached, &component.serialize()?) {
            tracing::warn!(cache = %cached.display(), "cannot write compile cache: {err:#}");
        }
        Ok(component)
    }

    /// Compiles a component, or a core module after adapting it ([`crate::componentize`]).
    fn compile(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<Component> {
        let started = std::time::Instant::now();
        let bytes = crate::componentize::componentize_if_module(bytes)
            .with_context(|| format!("loading {}", path.display()))?;
        if matches!(bytes, std::borrow::Cow::Owned(_)) {
            tracing::info!(path = %path.display(), elapsed_ms = started.elapsed().as_millis() as u64, "adapted a core module to a component");
        }
        let component = Component::new(&self.engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling component {}", path.display()))?;
        tracing::info!(path = %path.display(), elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
        Ok(component)
    }
}

/// Writes to a temporary file and renames it, so a crash never leaves half a file and a
/// reader never sees one (the compile cache, and `up --ready-file`).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The default cache directory: `$XDG_CACHE_HOME/edge-host` or `~/.cache/edge-host`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|base| base.join("edge-host"))
}

/// The store's resource limiter: `--max-instance-memory-mb` counts every linear memory
/// and table of the instance together, not each on its own. The pooling allocator's
/// `max_memory_size` (and wasmtime's `StoreLimits`) bound each memory separately, so a
/// component with two memories could use twice the cap; Spin has that bug (spin#3705).
/// Table elements count one pointer each, which is what wasmtime allocates for them.
/// Initial sizes at instantiation pass through here too (`current` is 0 then).
#[derive(Debug)]
pub struct InstanceLimits {
    /// Bytes all memories and tables of the store may hold together.
    budget: usize,
    /// Bytes they hold now (as granted).
    used: usize,
    /// Instances (core and component) the store may create.
    max_instances: usize,
    /// The last growth granted, taken back if wasmtime then fails to grow.
    last_grant: usize,
    /// Whether a growth was refused for the budget: the request failed for its memory.
    pub hit: bool,
}

/// Core and component instances one store may create (a spin-sdk component has a handful).
const MAX_INSTANCES_PER_STORE: usize = 64;

impl InstanceLimits {
    /// Limits for one store: `budget` bytes of memories and tables in all.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            used: 0,
            max_instances: MAX_INSTANCES_PER_STORE,
            last_grant: 0,
            hit: false,
        }
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let more = desired.saturating_sub(current);
        match self.used.checked_add(more) {
            Some(total) if total <= self.budget => {
                self.used = total;
                self.last_grant = more;
                true
            }
            _ => {
                self.hit = true;
                self.last_grant = 0;
                false
            }
        }
    }

    fn undo_last(&mut self) {
        self.used -= std::mem::take(&mut self.last_grant);
    }
}

impl wasmtime::ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let size = std::mem::size_of::<usize>();
        Ok(self.grow(current.saturating_mul(size), desired.saturating_mul(size)))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn instances(&self) -> usize {
        self.max_instances
    }
}

#[cfg(test)]
mod tests {
    use super::InstanceLimits;

    /// Two memories, each under the cap, together over it: the growth that crosses the
    /// cap fails (`memory.grow` returns -1), in a real wasmtime store.
    #[test]
    fn two_memories_share_one_budget() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(
            &engine,
            r#"(module
                (memory $a 1)
                (memory $b 1)
                (func (export "grow_a") (param i32) (result i32)
                  (memory.grow $a (local.get 0)))
                (func (export "grow_b") (param i32) (result i32)
                  (memory.grow $b (local.get 0))))"#,
        )
        .unwrap();
        // 64 MiB in all: 1024 pages of 64 KiB.
        let mut store = wasmtime::Store::new(&engine, InstanceLimits::new(64 << 20));
        store.limiter(|limits| limits);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let grow_a = instance
            .get_typed_func::<i32, i32>(&mut store, "grow_a")
            .unwrap();
        let grow_b = instance
            .get_typed_func::<i32, i32>(&mut store, "grow_b")
            .unwrap();
        // Each memory to 600 pages (37.5 MiB): alone under the cap, together over it.
        assert_eq!(grow_a.call(&mut store, 599).unwrap(), 1);
        assert!(!store.data().hit);
        assert_eq!(grow_b.call(&mut store, 599).unwrap(), -1);
        assert!(store.data().hit);
        // What still fits is granted.
        assert_eq!(grow_b.call(&mut store, 400).unwrap(), 1);
        assert_eq!(grow_b.call(&mut store, 24).unwrap(), -1);
    }

    #[test]
    fn a_failed_growth_is_given_back() {
        let mut limits = InstanceLimits::new(10 << 16);
        assert!(limits.grow(0, 4 << 16));
        limits.undo_last();
        assert!(limits.grow(0, 10 << 16));
        assert!(!limits.grow(10 << 16, 11 << 16));
    }
}
