//! edge-host's integration tests on the shared test-support crate (`tests/support`): the
//! real binary built by this package (`CARGO_BIN_EXE_edge-host`) against fixture manifests,
//! plus building the fixture components.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use test_support::{raw_get, EdgeHost, Launch};

pub use test_support::repo_root;

/// Builds a fixture component (a no-op when it is up to date).
pub fn build_fixture(name: &str) {
    build_fixture_for(name, "wasm32-wasip2");
}

/// Builds a fixture for a target: `wasm32-wasip1` makes a core module.
pub fn build_fixture_for(name: &str, target: &str) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--target", target, "--release"])
        .args(["-p", name])
        .current_dir(repo_root())
        .status()
        .expect("running cargo to build a fixture");
    assert!(
        status.success(),
        "building the {name} fixture for {target} failed"
    );
}

/// Builds the probe fixture once per test run.
pub fn build_probe() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_fixture("probe"));
}

/// A running edge-host serving a fixture; killed on drop.
pub struct Host {
    process: EdgeHost,
    /// `http://127.0.0.1:PORT`; empty for an app without HTTP triggers.
    pub base_url: String,
}

impl Host {
    /// Starts edge-host on a free port with the probe manifest and extra arguments.
    pub fn start(extra_args: &[&str], env: &[(&str, &str)]) -> Host {
        build_probe();
        let manifest = repo_root().join("host/tests/fixtures/probe.toml");
        Self::start_manifest(&manifest, extra_args, env)
    }

    /// Starts edge-host with any manifest. Every host of the run shares one compile cache,
    /// so a test does not compile the probe again (tests of the cache pass `--cache-dir`).
    pub fn start_manifest(manifest: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut launch = Launch::new(env!("CARGO_BIN_EXE_edge-host"), manifest)
            .args(extra_args)
            .env("SPIN_VARIABLE_SECRET_TOKEN", "test-token");
        if !launch.has_arg("--cache-dir") {
            launch = launch.args(["--cache-dir", shared_cache_dir()]);
        }
        for (name, value) in env {
            launch = launch.env(*name, *value);
        }
        let process = launch
            .start()
            .unwrap_or_else(|e| panic!("starting edge-host: {e:#}"));
        let base_url = process.url().unwrap_or_default().to_owned();
        Host { process, base_url }
    }

    /// GET a path; returns status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(path, &[])
    }

    /// GET with extra headers, one request on its own connection.
    pub fn request(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = raw_get(&format!("{}{}", self.base_url, path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
            .send()
            .unwrap_or_else(|e| panic!("GET {path} from edge-host: {e:#}"))
    }
}

/// The process: its output ([`EdgeHost::wait_for_output`]), pid and exit.
impl std::ops::Deref for Host {
    type Target = EdgeHost;

    fn deref(&self) -> &EdgeHost {
        &self.process
    }
}

/// The compile cache all hosts of this test run share.
fn shared_cache_dir() -> &'static str {
    static CACHE: OnceLock<String> = OnceLock::new();
    CACHE.get_or_init(|| {
        let dir: PathBuf = tempfile::tempdir().expect("temp dir").keep();
        dir.to_str().expect("temp dir paths are UTF-8").to_owned()
    })
}

/// Signals and exit status ([`EdgeHost::signal`], [`EdgeHost::wait_for_exit`]).
impl std::ops::DerefMut for Host {
    fn deref_mut(&mut self) -> &mut EdgeHost {
        &mut self.process
    }
}

/// Accepts the probe's call to the test's gate (made from inside the running request)
/// and reads its request head; answering it ends the held request.
pub fn accept_gate(
    gate: &std::net::TcpListener,
    holder: &std::thread::JoinHandle<anyhow::Result<(u16, String)>>,
) -> std::net::TcpStream {
    gate.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut held = loop {
        match gate.accept() {
            Ok((stream, _)) => break stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    !holder.is_finished(),
                    "the hold request ended before calling the gate"
                );
                assert!(
                    std::time::Instant::now() < deadline,
                    "the probe never called the gate"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(err) => panic!("accepting the probe's call: {err}"),
        }
    };
    held.set_nonblocking(false).unwrap();
    held.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // Read the probe's whole request (a GET: the head only), so answering and closing
    // later is a clean end of the exchange and not a reset.
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut held, &mut byte).unwrap(),
            1,
            "the probe's call ended early"
        );
        request.push(byte[0]);
    }
    held
}

/// `DATABASE_URL` and its `host:port`, what a fixture's `allowed_outbound_hosts` grants.
pub fn database_url_and_host() -> (String, String) {
    let database = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let parsed = url::Url::parse(&database).expect("DATABASE_URL is a URL");
    let db_host = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().unwrap_or(5432)
    );
    (database, db_host)
}
