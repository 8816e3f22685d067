//! TLS from the real edge-host binary to a PostgreSQL of the test's own with TLS on.

use std::time::Duration;

use test_support::TlsPostgres;

use crate::harness::{build_probe, repo_root, Host};

fn probe_with_database(server: &TlsPostgres, url: &str) -> Host {
    build_probe();
    let db_host = format!("127.0.0.1:{}", server.port);
    Host::start_manifest(
        &repo_root().join("host/tests/fixtures/reuse.toml"),
        &[],
        &[
            ("SPIN_VARIABLE_DB_URL", url),
            ("SPIN_VARIABLE_DB_HOST", db_host.as_str()),
        ],
    )
}

/// A component's connection string with `sslmode=verify-full&sslrootcert=` works through
/// the binary; with a CA that did not sign the server's certificate the request fails and
/// the host's log names the address and the reason, not the password.
#[test]
#[ignore = "needs PostgreSQL binaries (run through scripts/test)"]
fn the_host_speaks_verified_tls_to_postgresql() {
    let server = TlsPostgres::start();
    let good = server.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        server.cert("ca.crt")
    ));
    let host = probe_with_database(&server, &good);
    let (status, body) = host.get("/probe/pg/after");
    assert_eq!(status, 200, "{body}");
    drop(host);

    let wrong = server.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        server.cert("other-ca.crt")
    ));
    let host = probe_with_database(&server, &wrong);
    let (status, body) = host.get("/probe/pg/after");
    assert_eq!(status, 500, "{body}");
    let address = format!("127.0.0.1:{}", server.port);
    assert!(
        host.wait_for_output(Duration::from_secs(5), |line| {
            line.contains("PostgreSQL connection failed")
                && line.contains(&address)
                && line.contains("UnknownIssuer")
        }),
        "no log line naming the address and the reason: {:?}",
        host.output()
    );
    assert!(
        !host
            .output()
            .iter()
            .any(|line| line.contains(&server.password)),
        "the password reached the log: {:?}",
        host.output()
    );
}
