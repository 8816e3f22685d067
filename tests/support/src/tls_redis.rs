//! A Redis of the test's own that speaks TLS only, for the TLS tests (never the shared server).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::paths::{free_port, repo_root, unique_temp_dir};
use crate::redis::redis_server;

/// The password every [`TlsRedis`] requires (a throwaway server's, not a secret).
pub const TLS_REDIS_PASSWORD: &str = "not-a-secret";

/// A `redis-server` on a free loopback port with TLS on and the plain port off, certificates
/// from `scripts/test-certs` (made at start), `requirepass` [`TLS_REDIS_PASSWORD`] and
/// keyspace expiry events on (as `scripts/services` configures the shared server, for the
/// notifier's retry timers); killed and its directory removed on drop.
pub struct TlsRedis {
    /// Holds `ca.crt` (signed the server's certificate), `other-ca.crt` (did not), the keys.
    pub dir: PathBuf,
    pub port: u16,
    child: Child,
}

impl TlsRedis {
    /// Starts the server and waits (at most 10 s) until its TLS port accepts connections.
    pub fn start() -> TlsRedis {
        let dir = unique_temp_dir("edge-host-tls-redis").expect("a temp dir");
        let certs = Command::new(repo_root().join("scripts/test-certs"))
            .arg(&dir)
            .status()
            .expect("running scripts/test-certs");
        assert!(certs.success(), "scripts/test-certs failed");
        let port = free_port().expect("a free loopback port");
        let file = |name: &str| dir.join(name).display().to_string();
        let child = redis_server(&dir)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &file("server.crt")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.crt")])
            .args(["--tls-auth-clients", "no"])
            .args(["--notify-keyspace-events", "Ex"])
            .args(["--requirepass", TLS_REDIS_PASSWORD])
            .spawn()
            .expect("redis-server starts (scripts/services installs it, or set REDIS_SERVER_BIN)");
        let server = TlsRedis { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "TLS redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `rediss://:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("rediss://:{TLS_REDIS_PASSWORD}@{}", self.host())
    }

    /// `127.0.0.1:PORT`, what `allowed_outbound_hosts` names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The path of a file in [`Self::dir`] (`ca.crt`, `other-ca.crt`).
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
