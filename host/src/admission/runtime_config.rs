//! Admission's runtime-config table, `[edge_host.admission]` (unknown fields are errors):
//! per-component concurrency caps and queue waits that override the flags.
//!
//! ```toml
//! [edge_host.admission.component.auth]
//! max_concurrency = 4      # requests of `auth` running at once (default: --max-component-concurrency)
//! max_queue_wait_ms = 0    # how long a request beyond it waits (default: --max-queue-wait-ms)
//! ```
//!
//! Spin has no such table (its HTTP trigger's flags stop at instance reuse and the request
//! timeout: `crates/trigger-http/src/lib.rs` `CliArgs` in spinframework/spin), so this is
//! edge-host's own tuning and real Spin would reject it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[edge_host.admission]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// `[edge_host.admission.component.<id>]`, by component id.
    #[serde(default)]
    pub component: BTreeMap<String, ComponentAdmission>,
}

/// `[edge_host.admission.component.<id>]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentAdmission {
    /// Requests of this component that may run at once; more wait (bounded), then 503.
    pub max_concurrency: Option<usize>,
    /// Longest a request of this component waits for its turn and an instance slot.
    pub max_queue_wait_ms: Option<u64>,
}

impl AdmissionConfig {
    /// Checks what serde cannot: a cap lets at least one request through.
    pub fn validate(&self) -> Result<(), String> {
        for (id, component) in &self.component {
            if component.max_concurrency == Some(0) {
                return Err(format!(
                    "field `edge_host.admission.component.{id}.max_concurrency` must be at least 1"
                ));
            }
        }
        Ok(())
    }
}
