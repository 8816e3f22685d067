//! A PostgreSQL of the test's own with TLS on, for the TLS tests (never the shared server).

use std::path::PathBuf;
use std::process::Command;

use crate::paths::{free_port, repo_root, unique_temp_dir};

/// A server started by `scripts/tls-postgres` on a free loopback port, with a CA and server
/// certificate made at start (`scripts/test-certs`) and a data directory of its own; stopped
/// and removed on drop. User `postgres`, database `postgres`.
pub struct TlsPostgres {
    /// Holds `ca.crt` (signed the server's certificate), `other-ca.crt` (did not), the data.
    pub dir: PathBuf,
    pub port: u16,
    /// The `postgres` user's password (random per server).
    pub password: String,
}

impl TlsPostgres {
    /// Starts the server (a few seconds: initdb) and waits until it accepts connections.
    pub fn start() -> TlsPostgres {
        let dir = unique_temp_dir("edge-host-tls-pg").expect("a temp dir");
        // The server runs as the `postgres` OS user when the tests run as root.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the temp dir");
        let port = free_port().expect("a free loopback port");
        let status = Command::new(repo_root().join("scripts/tls-postgres"))
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .status()
            .expect("running scripts/tls-postgres");
        let server = TlsPostgres {
            password: std::fs::read_to_string(dir.join("password"))
                .unwrap_or_default()
                .trim()
                .to_owned(),
            dir,
            port,
        };
        assert!(status.success(), "scripts/tls-postgres start failed");
        server
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres?QUERY`.
    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres?{query}",
            self.password, self.port
        )
    }

    /// The path of a file in [`Self::dir`] (`ca.crt`, `other-ca.crt`).
    pub fn cert(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/tls-postgres"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
