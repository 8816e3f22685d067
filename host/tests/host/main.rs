//! edge-host's own integration tests: the real binary serving the probe fixture
//! component. One test binary with a module per topic, so it links once.

mod admission;
mod broken_clients;
mod core_modules;
mod deadlines;
mod drain;
mod harness;
mod http_trigger;
mod instance_reuse;
mod key_value;
mod manifest_errors;
mod memory_cap;
mod metrics;
mod redis_trigger;
mod sqlite;
mod tls;
