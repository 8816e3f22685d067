//! The end-to-end harness: starts the real `edge-host` on a free loopback port against the
//! project's PostgreSQL and Redis (from `scripts/services`), or targets `BASE_URL` instead.
//!
//! - [`TestApp::spawn`] gives a test its own host process, killed when the `TestApp` drops.
//! - [`TestApp::spawn_with`] does the same with some Spin variables overridden, e.g. to point
//!   the app at a [`PrivateRedis`] the test may stop, or at a fresh [`TestDatabase`].
//! - [`eventually`] polls a condition with a bounded deadline instead of sleeping and hoping.
//!
//! The host binary is `$EDGE_HOST_BIN`, else `target/debug/edge-host` (`cargo build -p
//! edge-host`; `scripts/test` builds it). The services' connection settings come from the
//! environment (`scripts/test` exports them) or, when missing, from `scripts/services env`.

#![allow(dead_code)] // Each topic module uses a different part of the harness.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a freshly started host may take to write its ready file. A cold compile
/// cache makes the first start of a debug-built host slow; `EDGE_E2E_START_TIMEOUT_SECS`
/// raises it on slow machines.
fn start_timeout() -> Duration {
    let secs = std::env::var("EDGE_E2E_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// The environment variables the services provide to the app and the tests.
const SERVICE_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "SPIN_VARIABLE_DB_URL",
    "SPIN_VARIABLE_DB_HOST",
    "SPIN_VARIABLE_REDIS_URL",
    "SPIN_VARIABLE_REDIS_HOST",
];

/// The repository root (the workspace containing this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives one level below the repository root")
        .to_path_buf()
}

/// `BASE_URL` without a trailing slash, when the suite should test an existing deployment.
pub fn external_base_url() -> Option<String> {
    std::env::var("BASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| url.trim().trim_end_matches('/').to_string())
}

/// Service settings missing from this process's environment, read once from
/// `scripts/services env` (values the environment already has win).
fn service_env() -> Result<&'static BTreeMap<String, String>> {
    static ENV: OnceLock<std::result::Result<BTreeMap<String, String>, String>> = OnceLock::new();
    ENV.get_or_init(|| load_service_env().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn load_service_env() -> Result<BTreeMap<String, String>> {
    let complete = SERVICE_VARIABLES
        .iter()
        .all(|name| std::env::var_os(name).is_some());
    if complete {
        return Ok(BTreeMap::new());
    }
    let script = repo_root().join("scripts/services");
    // `env -0` after evaluating the export lines: the shell does the unquoting.
    let output = Command::new("bash")
        .arg("-c")
        .arg(r#"eval "$("$0" env)" && env -0"#)
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} env", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} env failed ({}): {}\nstart the services first: scripts/services start",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut env = BTreeMap::new();
    for entry in output.stdout.split(|b| *b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((name, value)) = entry.split_once('=') else {
            continue;
        };
        let wanted = SERVICE_VARIABLES.contains(&name) || name.starts_with("SPIN_VARIABLE_");
        if wanted && std::env::var_os(name).is_none() {
            env.insert(name.to_string(), value.to_string());
        }
    }
    Ok(env)
}

/// A service setting, from the environment or `scripts/services env`.
pub fn service_setting(name: &str) -> Result<String> {
    if let Ok(value) = std::env::var(name) {
        return Ok(value);
    }
    service_env()?.get(name).cloned().with_context(|| {
        format!("{name} is neither in the environment nor in scripts/services env")
    })
}

/// Spin variables to override for one host, by their manifest name (`redis_url`).
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
}

/// The app under test: a base URL and a client, plus the host process when we started one.
pub struct TestApp {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`.
    pub address: String,
    /// A client that does not follow redirects, so tests see exactly what the app answered.
    pub client: reqwest::Client,
    host: Option<HostProcess>,
}

impl TestApp {
    /// Starts a host with the services' settings, or targets `BASE_URL` when it is set.
    pub async fn spawn() -> TestApp {
        match external_base_url() {
            Some(url) => TestApp::external(url),
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

    fn external(url: String) -> TestApp {
        TestApp {
            address: url,
            client: http_client(),
            host: None,
        }
    }

    /// Starts `edge-host up` on 127.0.0.1:0 and waits for its ready file.
    pub async fn try_spawn(options: HostOptions) -> Result<TestApp> {
        let host = HostProcess::start(&options).await?;
        Ok(TestApp {
            address: format!("http://{}", host.addr),
            client: http_client(),
            host: Some(host),
        })
    }

    /// Every line the host has written so far to stdout or stderr (its logs and the
    /// components' output), oldest first; empty under `BASE_URL`. Wait for a line with
    /// [`eventually`].
    pub fn output(&self) -> Vec<String> {
        self.host
            .as_ref()
            .map(|host| host.output.lock().expect("output lock").clone())
            .unwrap_or_default()
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

/// A running `edge-host`, killed (and reaped) on drop. Its stdout and stderr are forwarded
/// line by line to the test's stderr, which the test runner shows when the test fails, and
/// kept for [`TestApp::output`].
struct HostProcess {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
    /// Holds the ready file; removed on drop.
    ready_dir: PathBuf,
}

impl HostProcess {
    async fn start(options: &HostOptions) -> Result<HostProcess> {
        let bin = edge_host_binary()?;
        let root = repo_root();
        let mut command = Command::new(&bin);
        command
            .arg("up")
            .arg("-f")
            .arg(root.join("spin.toml"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .current_dir(&root)
            .envs(service_env()?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &options.variables {
            command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        command.args(&options.args);
        let ready_dir = unique_temp_dir("edge-host-ready")?;
        let ready_file = ready_dir.join("ready.json");
        command.arg("--ready-file").arg(&ready_file);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;

        let stdout = child.stdout.take().context("edge-host stdout is piped")?;
        let stderr = child.stderr.take().context("edge-host stderr is piped")?;
        let output = Arc::new(Mutex::new(Vec::new()));
        forward_output(stdout, output.clone());
        forward_output(stderr, output.clone());

        let mut host = HostProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            ready_dir,
        };
        let timeout = start_timeout();
        let deadline = Instant::now() + timeout;
        loop {
            // The host writes the file atomically, so a file that exists is complete.
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                host.addr = ready_address(&text)?;
                return Ok(host);
            }
            if let Ok(Some(status)) = host.child.try_wait() {
                bail!(
                    "edge-host exited ({status}) before writing its ready file; its output is \
                     above"
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "edge-host did not write its ready file within {} s (raise \
                     EDGE_E2E_START_TIMEOUT_SECS on a slow machine); its output is above",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.ready_dir);
    }
}

/// Copies a child's output to our stderr on a thread, line by line, and keeps each line.
fn forward_output(stream: impl Read + Send + 'static, kept: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(|line| line.ok()) {
            eprintln!("[edge-host] {line}");
            kept.lock().expect("output lock").push(line);
        }
    });
}

/// A fresh, empty directory under the system temp dir.
fn unique_temp_dir(prefix: &str) -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The listening address in edge-host's ready file, `{"url":"http://ADDR","pid":N}`.
fn ready_address(text: &str) -> Result<SocketAddr> {
    let ready: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("ready file is not JSON: {text}"))?;
    let url = ready["url"].as_str().with_context(|| {
        format!("ready file has no url (an app without HTTP triggers?): {text}")
    })?;
    let addr = url
        .strip_prefix("http://")
        .with_context(|| format!("ready url is not http://: {url}"))?;
    addr.trim_end_matches('/')
        .parse()
        .with_context(|| format!("ready url has no socket address: {url}"))
}

/// Polls `check` every 100 ms until it returns `Ok`, or fails with the last error once
/// `limit` has passed. Use it instead of sleeping when waiting for a state change.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {e:#}", limit.as_secs_f32())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A `redis-server` of the test's own on a free loopback port, without persistence, so a
/// test can stop and restart Redis without disturbing other tests. Killed on drop.
pub struct PrivateRedis {
    port: u16,
    /// `requirepass`, when the test wants a secret in the server's address.
    password: Option<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it answers PING.
    pub async fn start() -> PrivateRedis {
        Self::start_with(None).await
    }

    /// Starts a server that requires `password`; its [`url`](Self::url) carries it, as a
    /// production Redis address does.
    pub async fn start_with_password(password: &str) -> PrivateRedis {
        Self::start_with(Some(password.to_owned())).await
    }

    async fn start_with(password: Option<String>) -> PrivateRedis {
        let mut last_error = None;
        // A port found free can be taken before redis binds it; try a few.
        for _ in 0..5 {
            let port = free_port().expect("a free loopback port");
            let mut redis = PrivateRedis {
                port,
                password: password.clone(),
                child: None,
            };
            match redis.launch().await {
                Ok(()) => return redis,
                Err(e) => last_error = Some(e),
            }
        }
        panic!(
            "starting a private redis-server: {:#}",
            last_error.expect("at least one attempt")
        )
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `127.0.0.1:PORT`, as `allowed_outbound_hosts` wants it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits until the port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        eventually(
            Duration::from_secs(10),
            "private redis to stop",
            || async move {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => bail!("port {port} still accepts connections"),
                    Err(_) => Ok(()),
                }
            },
        )
        .await;
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        self.launch()
            .await
            .unwrap_or_else(|e| panic!("restarting the private redis-server: {e:#}"));
    }

    async fn launch(&mut self) -> Result<()> {
        let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let mut command = Command::new(&bin);
        command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string());
        if let Some(password) = &self.password {
            command.arg("--requirepass").arg(password);
        }
        let mut child = command
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running {bin:?} (install Redis, or set REDIS_SERVER_BIN)"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("redis-server on port {} exited: {status}", self.port);
            }
            if redis_ping(self.port, self.password.as_deref())
                .await
                .is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "redis-server on port {} did not answer PING within 10 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `PING` in RESP and expects `+PONG`.
async fn redis_ping(port: u16, password: Option<&str>) -> Result<()> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    if let Some(password) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        stream.write_all(auth.as_bytes()).await?;
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).await?;
        if &reply != b"+OK\r\n" {
            bail!("AUTH answered {:?}", String::from_utf8_lossy(&reply));
        }
    }
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await?;
    if &reply != b"+PONG\r\n" {
        bail!("unexpected reply {:?}", String::from_utf8_lossy(&reply));
    }
    Ok(())
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A throwaway database on the project's PostgreSQL, with the schema applied by
/// `scripts/migrate`, dropped (with its connections) on drop. For tests that need a world of
/// their own, e.g. counting rows or exercising the migrations.
pub struct TestDatabase {
    /// The database name, `e2e_<pid>_<n>`.
    pub name: String,
    /// Its URL, with the project's `todo` role (which has CREATEDB).
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates the database and applies every migration to it.
    pub async fn create() -> TestDatabase {
        TestDatabase::try_create()
            .await
            .unwrap_or_else(|e| panic!("creating a throwaway database: {e:#}"))
    }

    async fn try_create() -> Result<TestDatabase> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = service_setting("DATABASE_URL")?;
        let name = format!(
            "e2e_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(&admin_url, &name)?;
        psql(
            &admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        psql(&admin_url, &format!("CREATE DATABASE {name}")).await?;
        let database = TestDatabase {
            name,
            url,
            admin_url,
        };
        let migrate = repo_root().join("scripts/migrate");
        let output = tokio::process::Command::new(&migrate)
            .arg(&database.url)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", migrate.display()))?;
        if !output.status.success() {
            bail!(
                "scripts/migrate failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(database)
    }

    /// Runs SQL in this database with psql and returns its unaligned, tuples-only output.
    pub async fn query(&self, sql: &str) -> Result<String> {
        psql(&self.url, sql).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let result = Command::new(psql_binary())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&self.admin_url)
            .arg("-c")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !matches!(result, Ok(status) if status.success()) {
            eprintln!("could not drop throwaway database {}", self.name);
        }
    }
}

fn psql_binary() -> String {
    std::env::var("PSQL").unwrap_or_else(|_| "psql".to_string())
}

async fn psql(url: &str, sql: &str) -> Result<String> {
    let output = tokio::process::Command::new(psql_binary())
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url)
        .arg("-c")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running psql (install the PostgreSQL client, or set PSQL)")?;
    if !output.status.success() {
        bail!(
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").context("DATABASE_URL has no scheme")? + 3;
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_address_is_parsed() {
        assert_eq!(
            ready_address(r#"{"url":"http://127.0.0.1:41234","pid":7}"#).unwrap(),
            "127.0.0.1:41234".parse().unwrap()
        );
        assert!(ready_address(r#"{"url":null,"pid":7}"#).is_err());
        assert!(ready_address("not json").is_err());
    }

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:55432/todo", "e2e_1").unwrap(),
            "postgres://u:p@127.0.0.1:55432/e2e_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/todo?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "x").unwrap(),
            "postgres://h:1/x"
        );
    }
}
