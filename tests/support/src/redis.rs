//! A `redis-server` of the test's own, for tests that stop, restart or lock down Redis
//! without disturbing the other tests on the shared one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::paths::free_port;
use crate::wait::eventually;

/// A `redis-server` on a free loopback port, without persistence. Killed on drop.
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

    /// `redis://[:PASSWORD@]127.0.0.1:PORT`.
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

    /// Sends one command (e.g. `CONFIG SET ...`, `PUBLISH ...`) and returns the first line of
    /// the reply (`+OK`, `:1`, ...); a Redis error is an `Err`.
    pub async fn command(&self, args: &[&[u8]]) -> Result<String> {
        send_command(self.port, self.password.as_deref(), args).await
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
                match TcpStream::connect(("127.0.0.1", port)).await {
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
        let mut command = redis_server(&std::env::temp_dir());
        command.args(["--port", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.arg("--requirepass").arg(password);
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "running {:?} (install Redis, or set REDIS_SERVER_BIN)",
                command.get_program()
            )
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("redis-server on port {} exited: {status}", self.port);
            }
            let pong = send_command(self.port, self.password.as_deref(), &[b"PING"]).await;
            if matches!(pong.as_deref(), Ok("+PONG")) {
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

/// A `redis-server` command (`REDIS_SERVER_BIN` when set) on loopback, in the foreground,
/// without persistence, writing into `dir`, its output discarded; the caller adds the ports
/// and anything else. Shared by [`PrivateRedis`] and [`TlsRedis`](crate::TlsRedis).
pub(crate) fn redis_server(dir: &std::path::Path) -> Command {
    let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
    let mut command = Command::new(bin);
    command
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "yes", "--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Connects to the server on `port`, authenticates when there is a password, sends one
/// command in RESP and returns the first line of its reply (`+OK`, `:1`, `$5`...).
async fn send_command(port: u16, password: Option<&str>, args: &[&[u8]]) -> Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = BufReader::new(stream);
    if let Some(password) = password {
        let reply = round_trip(&mut stream, &[b"AUTH", password.as_bytes()]).await?;
        if reply != "+OK" {
            bail!("AUTH answered {reply:?}");
        }
    }
    round_trip(&mut stream, args).await
}

async fn round_trip(stream: &mut BufReader<TcpStream>, args: &[&[u8]]) -> Result<String> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.get_mut().write_all(&request).await?;
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        bail!("redis closed the connection");
    }
    if line.starts_with('-') {
        bail!("redis error: {}", line.trim_end());
    }
    Ok(line.trim_end().to_owned())
}
