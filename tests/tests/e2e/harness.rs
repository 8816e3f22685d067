//! The end-to-end suite's view of the shared test-support crate (`tests/support`): the
//! real `edge-host` serving `spin.toml` ([`TestApp`]), private Redis servers, throwaway
//! databases, a mail sink and bounded waits. Topic modules import from here, so the suite names one
//! place for its harness.

pub use test_support::{
    eventually, external_base_url, free_port, raw_get, repo_root, service_setting, HostOptions,
    MailSink, PrivateRedis, Received, TestApp, TestDatabase,
};
