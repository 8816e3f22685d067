//! The real `edge-host` process: launched with a ready file, its output kept and
//! forwarded, killed on drop.
//!
//! Readiness comes only from `--ready-file` (JSON `{"url": ..., "pid": ...}`, renamed into
//! place by the host so it is never read half-written), never from the log banner.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::paths::unique_temp_dir;
use crate::wait::poll_until;

/// How long a host may take to write its ready file. A cold compile cache makes the first
/// start of a debug-built host slow on a busy 2-core machine; `EDGE_E2E_START_TIMEOUT_SECS`
/// raises it.
fn start_timeout() -> Duration {
    let secs = std::env::var("EDGE_E2E_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// What to run: `edge-host up -f MANIFEST --listen 127.0.0.1:0 ARGS... --ready-file F`.
#[derive(Debug, Clone)]
pub struct Launch {
    binary: PathBuf,
    manifest: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    current_dir: Option<PathBuf>,
}

impl Launch {
    /// `binary up -f manifest` on a free loopback port.
    pub fn new(binary: impl Into<PathBuf>, manifest: impl Into<PathBuf>) -> Launch {
        Launch {
            binary: binary.into(),
            manifest: manifest.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
        }
    }

    /// Adds arguments after `--listen` (flags of `edge-host up`).
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// True when `flag` is among the arguments already given.
    pub fn has_arg(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    /// Sets an environment variable for the host (the rest of the environment is inherited).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Launch {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the host in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Launch {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the host and waits (blocking, bounded) for its ready file. On failure the
    /// error says why; the host's own output is already on the test's stderr.
    pub fn start(self) -> Result<EdgeHost> {
        let ready_dir = unique_temp_dir("edge-host-ready")?;
        let ready_file = ready_dir.join("ready.json");
        let mut command = Command::new(&self.binary);
        command
            .arg("up")
            .arg("-f")
            .arg(&self.manifest)
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .arg("--ready-file")
            .arg(&ready_file)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let output = Output::default();
        output.forward(child.stdout.take().context("edge-host stdout is piped")?);
        output.forward(child.stderr.take().context("edge-host stderr is piped")?);
        let mut host = EdgeHost {
            child,
            url: None,
            metrics_url: None,
            output,
            ready_dir,
        };
        let text = host.wait_for_ready_file(&ready_file)?;
        host.url = ready_url(&text)?;
        host.metrics_url = ready_metrics_url(&text);
        Ok(host)
    }
}

/// A running `edge-host`, killed (and reaped) on drop.
pub struct EdgeHost {
    child: Child,
    url: Option<String>,
    /// The metrics listener's `http://ADDR`, when started with `--metrics-listen`.
    metrics_url: Option<String>,
    output: Output,
    /// Holds the ready file; removed on drop.
    ready_dir: PathBuf,
}

impl EdgeHost {
    fn wait_for_ready_file(&mut self, ready_file: &Path) -> Result<String> {
        let timeout = start_timeout();
        let deadline = Instant::now() + timeout;
        loop {
            // The host writes the file atomically, so a file that exists is complete.
            if let Ok(text) = std::fs::read_to_string(ready_file) {
                return Ok(text);
            }
            if let Some(status) = self.child.try_wait()? {
                self.output.wait_for_end(Duration::from_secs(2));
                bail!(
                    "edge-host exited ({status}) before writing its ready file; its output:\n{}",
                    self.output.lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "edge-host did not write its ready file within {} s (raise \
                     EDGE_E2E_START_TIMEOUT_SECS on a slow machine); its output is above",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash); `None` for an app without HTTP triggers.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The metrics listener (`http://127.0.0.1:PORT`) of a host started with
    /// `--metrics-listen`; `None` otherwise.
    pub fn metrics_url(&self) -> Option<&str> {
        self.metrics_url.as_deref()
    }

    /// Every line the host wrote so far to stdout or stderr, oldest first.
    pub fn output(&self) -> Vec<String> {
        self.output.lines()
    }

    /// Waits until a line of output satisfies `predicate`, up to `timeout`.
    pub fn wait_for_output(&self, timeout: Duration, predicate: impl Fn(&str) -> bool) -> bool {
        self.wait_for_output_count(timeout, 1, predicate)
    }

    /// Waits until `count` lines of output satisfy `predicate`, up to `timeout`.
    pub fn wait_for_output_count(
        &self,
        timeout: Duration,
        count: usize,
        predicate: impl Fn(&str) -> bool,
    ) -> bool {
        poll_until(timeout, || {
            self.output
                .lines
                .lock()
                .expect("output lock")
                .iter()
                .filter(|line| predicate(line))
                .count()
                >= count
        })
    }
}

/// Stopping the process the way an orchestrator does (the graceful-drain tests).
impl EdgeHost {
    /// Sends `signal` (a name `kill -s` knows: `TERM`, `INT`, `KILL`) to the host.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -s {signal} {} failed: {status}", self.child.id());
        }
        Ok(())
    }

    /// The exit status if the host has exited, without waiting.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for the host to exit; `None` if it is still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.output.wait_for_end(Duration::from_secs(2));
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EdgeHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.ready_dir);
    }
}

/// The host's output: each line is copied to the test's stderr (the runner shows it when
/// the test fails) and kept for assertions.
#[derive(Clone, Default)]
struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    open_streams: Arc<Mutex<usize>>,
}

impl Output {
    fn forward(&self, stream: impl Read + Send + 'static) {
        let lines = self.lines.clone();
        let open = self.open_streams.clone();
        *open.lock().expect("stream count lock") += 1;
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(|line| line.ok()) {
                eprintln!("[edge-host] {line}");
                lines.lock().expect("output lock").push(line);
            }
            *open.lock().expect("stream count lock") -= 1;
        });
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("output lock").clone()
    }

    /// After the process exited its pipes close: wait until both are read to the end.
    fn wait_for_end(&self, limit: Duration) {
        poll_until(limit, || {
            *self.open_streams.lock().expect("stream count lock") == 0
        });
    }
}

/// The URL in a ready file, `{"url":"http://ADDR","pid":N}`; `None` when `url` is null (an
/// app with only non-HTTP triggers).
fn ready_url(text: &str) -> Result<Option<String>> {
    let ready: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("ready file is not JSON: {text}"))?;
    match &ready["url"] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(url) => Ok(Some(url.trim_end_matches('/').to_owned())),
        other => bail!("ready file url is not a string: {other}"),
    }
}

/// The ready file's `metrics_url`, when the host serves metrics.
fn ready_metrics_url(text: &str) -> Option<String> {
    let ready: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(ready["metrics_url"].as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_url_is_read() {
        assert_eq!(
            ready_url(r#"{"url":"http://127.0.0.1:41234","pid":7}"#).unwrap(),
            Some("http://127.0.0.1:41234".to_owned())
        );
        assert_eq!(ready_url(r#"{"url":null,"pid":7}"#).unwrap(), None);
        assert!(ready_url(r#"{"url":7}"#).is_err());
        assert!(ready_url("not json").is_err());
    }
}
