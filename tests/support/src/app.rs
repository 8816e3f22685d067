//! The Todo app under test: the real `edge-host` serving `spin.toml` on the project's
//! PostgreSQL and Redis (from `scripts/services`), or an existing deployment at `BASE_URL`.
//!
//! - [`TestApp::spawn`] gives a test its own host process, killed when the `TestApp` drops.
//! - [`TestApp::spawn_with`] does the same with some Spin variables overridden, e.g. to point
//!   the app at a [`PrivateRedis`] the test may stop, or at a fresh [`TestDatabase`].
//!
//! The host binary is `$EDGE_HOST_BIN`, else `target/debug/edge-host` (`cargo build -p
//! edge-host`; `scripts/test` builds it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::database::TestDatabase;
use crate::edge_host::{EdgeHost, Launch};
use crate::paths::repo_root;
use crate::redis::PrivateRedis;
use crate::services::service_env;

/// `BASE_URL` without a trailing slash, when the suite should test an existing deployment.
pub fn external_base_url() -> Option<String> {
    std::env::var("BASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| url.trim().trim_end_matches('/').to_string())
}

/// Spin variables to override for one host, by their manifest name (`redis_url`), and
/// extra flags for `edge-host up`.
#[derive(Debug, Default, Clone)]
pub struct HostOptions {
    variables: BTreeMap<String, String>,
    args: Vec<String>,
}

impl HostOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a Spin variable (manifest name, e.g. `rate_limit_per_minute`).
    pub fn variable(mut self, name: &str, value: impl Into<String>) -> Self {
        self.variables.insert(name.to_string(), value.into());
        self
    }

    /// Adds a command-line argument for `edge-host up`, e.g. `--max-instance-memory-mb`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Points the app at a private Redis (both `redis_url` and the `redis_host` that
    /// `allowed_outbound_hosts` is built from).
    pub fn redis(self, redis: &PrivateRedis) -> Self {
        self.variable("redis_url", redis.url())
            .variable("redis_host", redis.host())
    }

    /// Points the app at a throwaway database on the project's PostgreSQL.
    pub fn database(self, database: &TestDatabase) -> Self {
        self.variable("db_url", database.url.clone())
    }

    /// `edge-host up` for `spin.toml` with the services' settings and these overrides.
    fn launch(&self) -> Result<Launch> {
        let root = repo_root();
        let mut launch = Launch::new(edge_host_binary()?, root.join("spin.toml"))
            .current_dir(&root)
            .args(&self.args);
        for (name, value) in service_env()? {
            launch = launch.env(name, value);
        }
        for (name, value) in &self.variables {
            launch = launch.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        Ok(launch)
    }
}

/// The app under test: a base URL and a client, plus the host process when we started one.
pub struct TestApp {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`.
    pub address: String,
    /// A client that does not follow redirects, so tests see exactly what the app answered.
    pub client: reqwest::Client,
    host: Option<EdgeHost>,
}

impl TestApp {
    /// Starts a host with the services' settings, or targets `BASE_URL` when it is set.
    pub async fn spawn() -> TestApp {
        match external_base_url() {
            Some(url) => TestApp {
                address: url,
                client: http_client(),
                host: None,
            },
            None => TestApp::try_spawn(HostOptions::default())
                .await
                .unwrap_or_else(|e| panic!("starting edge-host: {e:#}")),
        }
    }

    /// Starts a host with some variables overridden. Such a test cannot run against
    /// `BASE_URL` (an existing deployment cannot be reconfigured): it is marked `#[ignore]`
    /// (`scripts/test` runs it with `--include-ignored`) and fails here, naming the reason,
    /// when run under `BASE_URL` anyway.
    pub async fn spawn_with(options: HostOptions) -> TestApp {
        if let Some(url) = external_base_url() {
            panic!("this test needs an edge-host of its own, but BASE_URL={url} is set");
        }
        TestApp::try_spawn(options)
            .await
            .unwrap_or_else(|e| panic!("starting edge-host: {e:#}"))
    }

    /// Starts `edge-host up` on 127.0.0.1:0 and waits for its ready file.
    pub async fn try_spawn(options: HostOptions) -> Result<TestApp> {
        let launch = options.launch()?;
        // Waiting for the ready file blocks; keep it off the test's runtime threads.
        let host = tokio::task::spawn_blocking(move || launch.start())
            .await
            .context("the edge-host start-up task panicked")??;
        let address = host
            .url()
            .context("spin.toml has no HTTP trigger")?
            .to_owned();
        Ok(TestApp {
            address,
            client: http_client(),
            host: Some(host),
        })
    }

    /// Every line the host has written so far to stdout or stderr (its logs and the
    /// components' output), oldest first; empty under `BASE_URL`. Wait for a line with
    /// [`eventually`](crate::eventually).
    pub fn output(&self) -> Vec<String> {
        self.host.as_ref().map(EdgeHost::output).unwrap_or_default()
    }

    /// The host's metrics/admin listener (`http://127.0.0.1:PORT`), when started with
    /// `HostOptions::arg("--metrics-listen")`; `None` otherwise and under `BASE_URL`.
    pub fn metrics_url(&self) -> Option<&str> {
        self.host.as_ref().and_then(EdgeHost::metrics_url)
    }

    /// True when the suite tests `BASE_URL` instead of a host it started.
    pub fn is_external(&self) -> bool {
        self.host.is_none()
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client with static settings builds")
}

/// The path of the `edge-host` binary under test.
fn edge_host_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("EDGE_HOST_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                repo_root().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("debug/edge-host");
    if !bin.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build -p edge-host` (scripts/test does), \
             or set EDGE_HOST_BIN",
            bin.display()
        );
    }
    Ok(bin)
}
