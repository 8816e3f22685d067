//! `wasi:http/outgoing-handler`: outbound HTTP from components, limited to the
//! component's `allowed_outbound_hosts`.
//!
//! wasmtime-wasi-http does the protocol work; this hook decides whether a request may
//! leave. A denied request fails with `HTTP-request-denied`, as in Spin, and is logged
//! with the component id and the destination (scheme, host and port only).

mod host;
mod runtime_config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use super::ComponentCapabilities;

/// The per-instance outbound HTTP policy.
pub struct OutboundHttp {
    pub(crate) component: Arc<ComponentCapabilities>,
}

impl OutboundHttp {
    /// The policy of `component`.
    pub fn new(component: Arc<ComponentCapabilities>) -> Self {
        Self { component }
    }

    pub(crate) fn allowed(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .or_else(|| super::outbound_hosts::default_port(scheme));
        port.is_some_and(|port| self.component.allowed_hosts.allows(scheme, host, port))
    }
}
