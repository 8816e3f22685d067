//! Spin SQLite through the probe, on both interface versions spin-sdk 5.2 offers
//! (`fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0`): rows persist across a
//! restart in the files the runtime config names, labels are separate databases, only
//! granted labels open (`access-denied` otherwise, as in Spin), a granted label nobody
//! defines stops start-up naming it, `--sqlite` runs statements before serving, and a
//! transaction a request leaves open does not reach the next request.

use std::path::Path;
use std::process::Command;

use crate::harness::{build_probe, repo_root, Host};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// A runtime config putting every database in `dir` (`notes` by a relative path).
fn runtime_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("runtime-config.toml");
    let text = format!(
        "[sqlite_database.default]\ntype = \"spin\"\npath = \"{0}/default.db\"\n\
         [sqlite_database.notes]\ntype = \"spin\"\npath = \"notes.db\"\n\
         [sqlite_database.secret]\ntype = \"spin\"\npath = \"{0}/secret.db\"\n",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path, extra: &[&str]) -> Host {
    let manifest = repo_root().join("host/tests/fixtures/sqlite.toml");
    build_probe();
    let mut args = vec!["--runtime-config-file", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Host::start_manifest(&manifest, &args, &[])
}

/// Runs `script` (statements with parameters) on `db` through interface `version`.
fn sql(host: &Host, db: &str, version: u8, script: serde_json::Value) -> serde_json::Value {
    let (status, body) = host.request(
        &format!("/probe/sqlite?db={db}&v={version}"),
        &[("x-sql", &script.to_string())],
    );
    assert_eq!(status, 200, "{body}");
    json(&body)["results"].clone()
}

#[test]
fn rows_persist_per_label_and_only_granted_databases_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(dir.path());
    {
        let host = start(&config, &[]);
        let results = sql(
            &host,
            "default",
            3,
            serde_json::json!([
                ["CREATE TABLE todo (id INTEGER PRIMARY KEY, title TEXT, score REAL, raw BLOB, note)"],
                ["INSERT INTO todo (title, score, raw, note) VALUES (?, ?, ?, ?), ('b', 1, NULL, NULL)",
                 "milk", 2.5, {"blob": [0, 255]}, null],
                ["SELECT id, title, score, raw, note FROM todo ORDER BY id"]
            ]),
        );
        assert_eq!(results[1]["changes"], 2, "{results}");
        assert_eq!(results[1]["last_insert_rowid"], 2, "{results}");
        assert_eq!(
            results[2]["columns"],
            serde_json::json!(["id", "title", "score", "raw", "note"])
        );
        assert_eq!(
            results[2]["rows"][0],
            serde_json::json!([1, "milk", 2.5, {"blob": [0, 255]}, null])
        );
        // The 2.0 interface sees the same database; errors are the statement's own.
        let results = sql(
            &host,
            "default",
            2,
            serde_json::json!([["SELECT count(*) FROM todo"], ["SELEC nothing"]]),
        );
        assert_eq!(results[0]["rows"], serde_json::json!([[2]]), "{results}");
        let error = results[1]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("Io") && error.contains("syntax error"),
            "{results}"
        );
        // Labels are separate databases.
        let results = sql(
            &host,
            "notes",
            3,
            serde_json::json!([["SELECT count(*) FROM todo"]]),
        );
        assert!(results[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no such table"));
        for version in ["2", "3"] {
            let (status, body) = host.get(&format!("/probe/sqlite?db=secret&v={version}"));
            assert_eq!(
                (status, json(&body)["error"].as_str()),
                (503, Some("Error::AccessDenied")),
                "v{version}: {body}"
            );
        }
    }
    assert!(
        dir.path().join("notes.db").is_file(),
        "relative paths are the runtime config's directory's"
    );
    assert!(
        !dir.path().join("secret.db").exists(),
        "an ungranted database is not created"
    );
    let host = start(&config, &[]);
    let results = sql(
        &host,
        "default",
        3,
        serde_json::json!([["SELECT title FROM todo ORDER BY id"]]),
    );
    assert_eq!(
        results[0]["rows"],
        serde_json::json!([["milk"], ["b"]]),
        "lost on restart"
    );
}

#[test]
fn a_transaction_left_open_does_not_reach_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(dir.path());
    let host = start(&config, &["--sqlite", "CREATE TABLE t (x)"]);
    let results = sql(
        &host,
        "default",
        3,
        serde_json::json!([["BEGIN IMMEDIATE"], ["INSERT INTO t VALUES (1)"]]),
    );
    assert_eq!(results[1]["changes"], 1, "{results}");
    // The next request can write at once (the lock went with the first request's
    // connection) and never sees the uncommitted row.
    let results = sql(
        &host,
        "default",
        3,
        serde_json::json!([["INSERT INTO t VALUES (2)"], ["SELECT x FROM t"]]),
    );
    assert_eq!(results[1]["rows"], serde_json::json!([[2]]), "{results}");
}

#[test]
fn the_sqlite_flag_seeds_databases_before_serving_and_a_failure_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(dir.path());
    let seed = dir.path().join("seed.sql");
    std::fs::write(
        &seed,
        "CREATE TABLE n (body TEXT); INSERT INTO n VALUES ('first');",
    )
    .unwrap();
    let seed_notes = format!("@{}:notes", seed.display());
    {
        let host = start(
            &config,
            &[
                "--sqlite",
                "CREATE TABLE d (x)",
                "--sqlite",
                "INSERT INTO d VALUES (7)",
                "--sqlite",
                &seed_notes,
            ],
        );
        let results = sql(
            &host,
            "default",
            3,
            serde_json::json!([["SELECT x FROM d"]]),
        );
        assert_eq!(results[0]["rows"], serde_json::json!([[7]]), "{results}");
        let results = sql(
            &host,
            "notes",
            3,
            serde_json::json!([["SELECT body FROM n"]]),
        );
        assert_eq!(
            results[0]["rows"],
            serde_json::json!([["first"]]),
            "{results}"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["up", "--listen", "127.0.0.1:0", "--runtime-config-file"])
        .arg(&config)
        .args(["--sqlite", "INSERT INTO nowhere VALUES (1)", "-f"])
        .arg(repo_root().join("host/tests/fixtures/sqlite.toml"))
        .output()
        .expect("running edge-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(
        stderr.contains("INSERT INTO nowhere") && stderr.contains("no such table"),
        "{stderr}"
    );
}

#[test]
fn a_granted_database_no_runtime_config_defines_stops_start_up() {
    build_probe();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["up", "--listen", "127.0.0.1:0", "-f"])
        .arg(repo_root().join("host/tests/fixtures/sqlite.toml"))
        .output()
        .expect("running edge-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains("[sqlite_database.notes]"), "{stderr}");
}
