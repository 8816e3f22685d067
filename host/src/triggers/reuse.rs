//! Instance reuse for the HTTP trigger, with Spin 4's flags.
//!
//! By default every request gets a fresh instance, as Spin runs WASI 0.2 components
//! (`--max-instance-reuse-count` defaults to 1). With a larger count an instance that
//! answered a request cleanly goes back to an idle list and serves the next request for
//! its component, which skips instantiation, the guest's static constructors and the
//! page faults of fresh linear memory: the largest per-request costs on a small handler
//! (see BENCHMARKS.md).
//!
//! Spin reads the same three flags (`crates/trigger-http/src/lib.rs`:
//! `--max-instance-reuse-count`, `--max-instance-concurrent-reuse-count`,
//! `--idle-instance-timeout`, each a value or a `a..b` range sampled per instance) but
//! applies reuse to WASI 0.3 components only; edge-host also reuses WASI 0.2 instances
//! when asked, one request at a time (a WASI 0.2 export cannot be entered twice at
//! once, so the concurrent count has no effect on them, as in Spin).
//!
//! Why not `wasmtime_wasi_http::handler::ProxyHandler`, which `wasmtime serve` and Spin 4
//! use: it drives WASI 0.2 calls through the component-model-async event loop and gives
//! the embedder no hook between two requests of one instance. edge-host needs that hook
//! to keep its guarantee that no request sees host state another request left behind
//! (see [`crate::capabilities::InstanceState::end_request`]), and it needs idle instances
//! to give their pooling-allocator slot up when another component needs one. Both are a
//! few lines here around the same `InstanceRun` every trigger uses.
//!
//! What reuse keeps, and what it does not:
//! - the guest's own memory (statics, caches) lives on: that is the point, and why a
//!   component must keep no request state in statics to be reused (the app's components
//!   keep none; see README);
//! - host state a request leaves behind does not: PostgreSQL connections still open when
//!   a request ends are released (rolled back and reset before another request can get
//!   them), and a handle kept in a static answers `connection-failed` afterwards;
//! - an instance that trapped, overran its deadline or failed in any way is dropped,
//!   never reused.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::InstanceRun;

/// Spin's default `--idle-instance-timeout`.
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);

/// A flag value: one value, or a half-open range `a..b` from which each new instance
/// draws its own value (Spin's `Range`, so tests can exercise fresh and reused instances
/// in one run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range<T> {
    Value(T),
    Bounds(T, T),
}

impl<T: Copy + PartialOrd + std::fmt::Debug> Range<T> {
    fn check(self, least: T, what: &str) -> Result<Self, String> {
        let (low, high) = match self {
            Self::Value(value) => (value, value),
            Self::Bounds(low, high) => {
                if low >= high {
                    return Err(format!("{what}: the range {low:?}..{high:?} is empty"));
                }
                (low, high)
            }
        };
        if low < least || high < least {
            return Err(format!("{what} must be at least {least:?}"));
        }
        Ok(self)
    }
}

impl Range<usize> {
    /// Parses `N` or `A..B` (at least 1).
    pub fn parse_count(text: &str) -> Result<Self, String> {
        parse_range(text, |part| {
            part.parse::<usize>().map_err(|err| {
                format!("expected an integer or a range like 1..8, got {text:?}: {err}")
            })
        })?
        .check(1, "an instance reuse count")
    }

    fn sample(self) -> usize {
        match self {
            Self::Value(value) => value,
            Self::Bounds(low, high) => fastrand::usize(low..high),
        }
    }
}

impl Range<Duration> {
    /// Parses a duration or a range of them: a number alone is seconds; suffixes `s`,
    /// `ms`, `us`/`μs` and `ns` as in Spin. (Spin tries the `s` suffix first and so
    /// refuses `10ms`; edge-host accepts it.)
    pub fn parse_duration(text: &str) -> Result<Self, String> {
        parse_range(text, parse_one_duration)?.check(Duration::ZERO, "a duration")
    }

    fn sample(self) -> Duration {
        match self {
            Self::Value(value) => value,
            Self::Bounds(low, high) => {
                let span = (high - low).as_nanos().min(u128::from(u64::MAX)) as u64;
                low + Duration::from_nanos(fastrand::u64(0..span))
            }
        }
    }
}

impl Display for Range<usize> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(value) => write!(f, "{value}"),
            Self::Bounds(low, high) => write!(f, "{low}..{high}"),
        }
    }
}

fn parse_range<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Range<T>, String> {
    match text.split_once("..") {
        Some((low, high)) => Ok(Range::Bounds(parse(low.trim())?, parse(high.trim())?)),
        None => Ok(Range::Value(parse(text.trim())?)),
    }
}

/// One duration in Spin's syntax (`30`, `30s`, `500ms`, `us`, `ns`), for flags that take a
/// single value rather than a range (`--shutdown-timeout`, `--request-timeout`).
pub fn parse_duration_value(text: &str) -> Result<Duration, String> {
    parse_one_duration(text.trim())
}

fn parse_one_duration(text: &str) -> Result<Duration, String> {
    let error = || {
        format!("expected a number of seconds or a number with `s`, `ms`, `us`, `μs` or `ns`, got {text:?}")
    };
    let number = |digits: &str| digits.trim().parse::<u64>().map_err(|_| error());
    if let Some(digits) = text.strip_suffix("ms") {
        Ok(Duration::from_millis(number(digits)?))
    } else if let Some(digits) = text.strip_suffix("us").or(text.strip_suffix("μs")) {
        Ok(Duration::from_micros(number(digits)?))
    } else if let Some(digits) = text.strip_suffix("ns") {
        Ok(Duration::from_nanos(number(digits)?))
    } else if let Some(digits) = text.strip_suffix('s') {
        Ok(Duration::from_secs(number(digits)?))
    } else {
        Ok(Duration::from_secs(number(text)?))
    }
}

/// The three reuse settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReuseConfig {
    /// Requests one instance may serve before it is dropped.
    pub max_instance_reuse_count: Range<usize>,
    /// Requests one instance may serve at once (no effect on WASI 0.2 components).
    pub max_instance_concurrent_reuse_count: Range<usize>,
    /// How long an idle instance is kept for the next request.
    pub idle_instance_timeout: Range<Duration>,
}

impl Default for ReuseConfig {
    /// Spin's semantics for WASI 0.2: a fresh instance for every request.
    fn default() -> Self {
        Self {
            max_instance_reuse_count: Range::Value(1),
            max_instance_concurrent_reuse_count: Range::Value(1),
            idle_instance_timeout: Range::Value(DEFAULT_IDLE_INSTANCE_TIMEOUT),
        }
    }
}

impl ReuseConfig {
    /// Whether any instance may serve more than one request.
    pub fn reuses(&self) -> bool {
        self.max_instance_reuse_count != Range::Value(1)
    }

    /// How often idle instances are checked for expiry: often enough that an instance
    /// outlives its timeout by at most a fifth of it, and never busier than every 10 ms.
    fn sweep_interval(&self) -> Duration {
        let shortest = match self.idle_instance_timeout {
            Range::Value(value) | Range::Bounds(value, _) => value,
        };
        (shortest / 5).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// An instance between requests, or one that is about to serve its first.
pub struct Lease<P> {
    pub instance: InstanceRun,
    /// The instantiated export, once the instance has been instantiated.
    pub export: Option<P>,
    served: usize,
    budget: usize,
    idle_timeout: Duration,
}

impl<P> Lease<P> {
    /// A lease for a fresh instance: its budget and idle timeout are drawn from the
    /// pool's ranges; without a pool (reuse off) it serves one request.
    pub fn fresh(instance: InstanceRun, pool: Option<&InstancePool<P>>) -> Self {
        let (budget, idle_timeout) = match pool {
            Some(pool) => (
                pool.config.max_instance_reuse_count.sample(),
                pool.config.idle_instance_timeout.sample(),
            ),
            None => (1, Duration::ZERO),
        };
        Self {
            instance,
            export: None,
            served: 0,
            budget,
            idle_timeout,
        }
    }
}

struct Idle<P> {
    lease: Lease<P>,
    since: Instant,
}

/// Idle instances of every component, most recently used last (a request takes the
/// warmest one, whose memory is most likely still in cache).
pub struct InstancePool<P> {
    config: ReuseConfig,
    idle: Mutex<HashMap<String, Vec<Idle<P>>>>,
}

impl<P: Send + 'static> InstancePool<P> {
    /// A pool with the given settings; call [`sweep`](Self::sweep) in a task of its own.
    pub fn new(config: ReuseConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// The most recently used idle instance of `component`, if any.
    pub fn take(&self, component: &str) -> Option<Lease<P>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get_mut(component)?.pop().map(|idle| idle.lease)
    }

    /// Called when a request on `lease` has finished cleanly (the caller has already
    /// released the request's host state): keeps the instance for the next request if it
    /// has budget left, otherwise drops it.
    pub fn give_back(&self, component: &str, mut lease: Lease<P>) {
        lease.served += 1;
        if lease.served >= lease.budget || lease.idle_timeout.is_zero() {
            return;
        }
        let entry = Idle {
            lease,
            since: Instant::now(),
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        match idle.get_mut(component) {
            Some(list) => list.push(entry),
            None => {
                idle.insert(component.to_owned(), vec![entry]);
            }
        }
    }

    /// Drops the idle instance that has waited longest, of any component, to free its
    /// pooling-allocator slot for another; returns whether there was one.
    pub fn evict_oldest(&self) -> bool {
        let evicted = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let oldest = idle
                .iter()
                .filter_map(|(component, list)| Some((component.clone(), list.first()?.since)))
                .min_by_key(|(_, since)| *since);
            oldest.map(|(component, _)| idle.get_mut(&component).map(|list| list.remove(0)))
        };
        // Dropped outside the lock: tearing a store down returns its memory to the pool.
        evicted.flatten().is_some()
    }

    /// Drops idle instances past their timeout, forever; run it in a task of its own so
    /// the teardown of expired stores stays off the request path.
    pub async fn sweep(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.sweep_interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let expired: Vec<Idle<P>> = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let mut expired = Vec::new();
                for list in idle.values_mut() {
                    let (keep, gone): (Vec<_>, Vec<_>) =
                        std::mem::take(list).into_iter().partition(|entry| {
                            now.duration_since(entry.since) < entry.lease.idle_timeout
                        });
                    *list = keep;
                    expired.extend(gone);
                }
                expired
            };
            drop(expired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_as_values_or_ranges() {
        assert_eq!(Range::parse_count("1"), Ok(Range::Value(1)));
        assert_eq!(Range::parse_count("2..8"), Ok(Range::Bounds(2, 8)));
        assert!(Range::parse_count("0").unwrap_err().contains("at least 1"));
        assert!(Range::parse_count("8..2").unwrap_err().contains("empty"));
        assert!(Range::parse_count("many").unwrap_err().contains("\"many\""));
    }

    #[test]
    fn durations_parse_with_spins_suffixes() {
        let parsed = |text| Range::parse_duration(text).unwrap();
        assert_eq!(parsed("2"), Range::Value(Duration::from_secs(2)));
        assert_eq!(parsed("2s"), Range::Value(Duration::from_secs(2)));
        assert_eq!(parsed("10ms"), Range::Value(Duration::from_millis(10)));
        assert_eq!(parsed("7us"), Range::Value(Duration::from_micros(7)));
        assert_eq!(parsed("7μs"), Range::Value(Duration::from_micros(7)));
        assert_eq!(parsed("9ns"), Range::Value(Duration::from_nanos(9)));
        assert_eq!(
            parsed("1..3s"),
            Range::Bounds(Duration::from_secs(1), Duration::from_secs(3))
        );
        assert!(Range::parse_duration("soon").is_err());
    }

    #[test]
    fn samples_stay_inside_their_range() {
        for _ in 0..200 {
            let count = Range::Bounds(2, 5).sample();
            assert!((2..5).contains(&count), "{count}");
            let wait = Range::Bounds(Duration::from_millis(5), Duration::from_millis(6)).sample();
            assert!(wait >= Duration::from_millis(5) && wait < Duration::from_millis(6));
        }
    }

    #[test]
    fn the_default_is_a_fresh_instance_per_request() {
        let config = ReuseConfig::default();
        assert!(!config.reuses());
        assert_eq!(
            config.idle_instance_timeout,
            Range::Value(Duration::from_secs(1))
        );
    }
}
