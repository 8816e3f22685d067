//! Starts the real `edge-host` binary against a fixture manifest.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Builds a fixture component (a no-op when it is up to date).
pub fn build_fixture(name: &str) {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--release",
            "-p",
            name,
        ])
        .current_dir(repo_root())
        .status()
        .expect("running cargo to build a fixture");
    assert!(status.success(), "building the {name} fixture failed");
}

/// Builds the probe fixture once per test run.
pub fn build_probe() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_fixture("probe"));
}

/// A running edge-host; killed on drop.
pub struct Host {
    child: Child,
    pub base_url: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Host {
    /// Starts edge-host on a free port with the probe manifest and extra arguments.
    pub fn start(extra_args: &[&str], env: &[(&str, &str)]) -> Host {
        build_probe();
        let manifest = repo_root().join("host/tests/fixtures/probe.toml");
        Self::start_manifest(&manifest, extra_args, env)
    }

    /// Starts edge-host with any manifest.
    pub fn start_manifest(manifest: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut command = Command::new(env!("CARGO_BIN_EXE_edge-host"));
        command
            .arg("up")
            .arg("-f")
            .arg(manifest)
            .args(["--listen", "127.0.0.1:0"]);
        if !extra_args.contains(&"--cache-dir") {
            command.arg("--cache-dir").arg(tempfile_dir());
        }
        let ready_dir = tempfile::tempdir().expect("temp dir for the ready file");
        let ready_file = ready_dir.path().join("ready.json");
        let mut child = command
            .args(extra_args)
            .arg("--ready-file")
            .arg(&ready_file)
            .env("SPIN_VARIABLE_SECRET_TOKEN", "test-token")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting edge-host");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let sink = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("edge-host: {line}");
                    sink.lock().unwrap().push(line);
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let base_url = loop {
            // The host writes the file atomically, so a file that exists is complete.
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                let ready: serde_json::Value =
                    serde_json::from_str(&text).expect("ready file is JSON");
                // A Redis-only app has no URL.
                break ready["url"].as_str().unwrap_or_default().to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                // The pipes close when the child exits: collect everything it wrote.
                for reader in readers {
                    let _ = reader.join();
                }
                panic!(
                    "edge-host exited ({status}) before writing its ready file; output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "edge-host did not write its ready file in time; output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Host {
            child,
            base_url,
            output,
        }
    }

    /// GET a path; returns status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(path, &[])
    }

    /// GET with extra headers.
    pub fn request(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = ureq_like_get(&format!("{}{}", self.base_url, path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().expect("request to edge-host");
        (response.0, response.1)
    }

    /// Waits until a line of host output satisfies `predicate`, up to `timeout`.
    pub fn wait_for_output(&self, timeout: Duration, predicate: impl Fn(&str) -> bool) -> bool {
        self.wait_for_output_count(timeout, 1, predicate)
    }

    /// Waits until `count` lines of host output satisfy `predicate`, up to `timeout`.
    pub fn wait_for_output_count(
        &self,
        timeout: Duration,
        count: usize,
        predicate: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let output = self.output.lock().unwrap();
            if output.iter().filter(|line| predicate(line)).count() >= count {
                return true;
            }
            drop(output);
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One compile cache for the whole test run, so each test does not compile the probe
/// again (tests of the cache itself pass their own `--cache-dir`).
fn tempfile_dir() -> PathBuf {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE
        .get_or_init(|| tempfile::tempdir().expect("temp dir").keep())
        .clone()
}

/// A minimal blocking HTTP/1.1 GET over a TCP socket, enough for these tests and free
/// of a client library's own connection pooling and retries.
pub struct SimpleGet {
    url: String,
    headers: Vec<(String, String)>,
}

pub fn ureq_like_get(url: &str) -> SimpleGet {
    SimpleGet {
        url: url.to_owned(),
        headers: Vec::new(),
    }
}

impl SimpleGet {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn send(self) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let rest = self.url.strip_prefix("http://").expect("http URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut stream = std::net::TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
