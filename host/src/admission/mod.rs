//! Admission control for the HTTP trigger (issue 13 item 1, issue 10 item 4): who may wait
//! for an instance, for how long, and how many at once, so that no client and no component
//! can take the instance slots every other request needs.
//!
//! A request passes, in order:
//! 1. **its client's in-flight cap** (`--max-client-in-flight`): requests from one client
//!    address that are past their head and not yet answered, body buffering included;
//!    beyond it 429 at once (the client's own excess, not the server's overload);
//! 2. (the HTTP trigger buffers its body here, holding no slot: see `triggers::http`);
//! 3. **its component's concurrency cap** (`--max-component-concurrency`, per component
//!    in `[edge_host.admission.component.<id>]`): so one component's flood leaves slots for
//!    the others;
//! 4. **an instance slot** (`--max-instances`).
//!
//! Steps 3 and 4 share one deadline, `--max-queue-wait-ms` (or the component's
//! `max_queue_wait_ms`): past it the request gets 503 with `Retry-After`, never an
//! unbounded queue. Both queues are tokio semaphores, which are FIFO-fair, and a waiter that
//! gives up leaves no trace. Spin has no equivalent: its HTTP trigger accepts every
//! connection and lets wasmtime's pooling allocator fail instantiation when the pool is
//! full (spinframework/spin `crates/trigger-http/src/lib.rs` has no such flag).

mod runtime_config;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use runtime_config::{AdmissionConfig, ComponentAdmission};

/// The flags' side of admission.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Longest a request waits for its component's turn and an instance slot together.
    pub max_queue_wait: Duration,
    /// Requests of one component running at once; `None` is three quarters of
    /// `--max-instances`, so a flood of one component always leaves a quarter of the
    /// slots to the others.
    pub max_component_concurrency: Option<usize>,
    /// Requests from one client address in flight at once; 0 turns the cap off (behind a
    /// proxy every client has the proxy's address).
    pub max_client_in_flight: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_queue_wait: Duration::from_millis(1000),
            max_component_concurrency: None,
            max_client_in_flight: 256,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client has `--max-client-in-flight` requests in flight already.
    ClientBusy,
    /// Its component's cap or every instance slot stayed taken for the whole queue wait.
    Overloaded,
}

/// A component's gate: its cap and how long a request waits at it.
struct Gate {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
}

/// The admission state of one HTTP trigger.
pub struct Admission {
    gates: HashMap<String, Gate>,
    default_queue_wait: Duration,
    max_client_in_flight: usize,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// A component in the runtime config that the app does not have.
#[derive(Debug, thiserror::Error)]
#[error("runtime config table `[edge_host.admission.component.{0}]`: the manifest has no component `{0}`")]
pub struct UnknownComponent(pub String);

impl Admission {
    /// Gates for `components` (the ids HTTP routes lead to); `max_instances` sizes the
    /// default component cap.
    pub fn new<'a>(
        limits: AdmissionLimits,
        config: &AdmissionConfig,
        components: impl IntoIterator<Item = &'a str>,
        max_instances: u32,
    ) -> Result<Self, UnknownComponent> {
        let default_cap = limits
            .max_component_concurrency
            .unwrap_or((max_instances as usize * 3 / 4).max(1));
        let gates: HashMap<String, Gate> = components
            .into_iter()
            .map(|id| {
                let own = config.component.get(id);
                let cap = own.and_then(|c| c.max_concurrency).unwrap_or(default_cap);
                let queue_wait = own
                    .and_then(|c| c.max_queue_wait_ms)
                    .map_or(limits.max_queue_wait, Duration::from_millis);
                let gate = Gate {
                    permits: Arc::new(Semaphore::new(cap.min(Semaphore::MAX_PERMITS))),
                    queue_wait,
                };
                (id.to_owned(), gate)
            })
            .collect();
        if let Some(unknown) = config.component.keys().find(|id| !gates.contains_key(*id)) {
            return Err(UnknownComponent(unknown.clone()));
        }
        Ok(Self {
            gates,
            default_queue_wait: limits.max_queue_wait,
            max_client_in_flight: limits.max_client_in_flight,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a request from `client` in flight until the pass drops; refuses it when the
    /// client has its cap in flight already. One map lookup under a short lock.
    pub fn client(&self, client: IpAddr) -> Result<ClientPass<'_>, Refusal> {
        if self.max_client_in_flight == 0 {
            return Ok(ClientPass {
                admission: None,
                client,
            });
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(client).or_insert(0);
        if *count >= self.max_client_in_flight {
            return Err(Refusal::ClientBusy);
        }
        *count += 1;
        Ok(ClientPass {
            admission: Some(self),
            client,
        })
    }

    /// When a request for `component` arriving now stops waiting.
    pub fn deadline(&self, component: &str) -> tokio::time::Instant {
        let wait = self
            .gates
            .get(component)
            .map_or(self.default_queue_wait, |gate| gate.queue_wait);
        tokio::time::Instant::now() + wait
    }

    /// Waits until `deadline` for `component`'s turn; the permit is its place among the
    /// component's running requests, held until the guest has finished.
    pub async fn component(
        &self,
        component: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        let Some(gate) = self.gates.get(component) else {
            return Ok(None);
        };
        if let Ok(permit) = gate.permits.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        match tokio::time::timeout_at(deadline, gate.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // Closed never happens (the semaphore is never closed); the deadline did.
            _ => Err(Refusal::Overloaded),
        }
    }
}

/// A request counted against its client's in-flight cap until dropped.
pub struct ClientPass<'a> {
    admission: Option<&'a Admission>,
    client: IpAddr,
}

impl Drop for ClientPass<'_> {
    fn drop(&mut self) {
        let Some(admission) = self.admission else {
            return;
        };
        let mut in_flight = admission
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                // Keep the map as small as the set of clients with requests in flight.
                in_flight.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests;
