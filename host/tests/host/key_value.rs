//! Spin key-value through the probe: values persist across a restart in the SQLite files
//! the runtime config names, labels are separate stores, only granted labels open
//! (`access-denied` otherwise, as in Spin), and a granted label nobody defines stops
//! start-up naming it.

use std::path::Path;
use std::process::Command;

use crate::harness::{build_probe, repo_root, Host};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// A runtime config putting every store in `dir`.
fn runtime_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("runtime-config.toml");
    let text = format!(
        "[key_value_store.default]\ntype = \"spin\"\npath = \"{0}/default.db\"\n\
         [key_value_store.sessions]\ntype = \"spin\"\npath = \"sessions.db\"\n\
         [key_value_store.other]\ntype = \"spin\"\npath = \"{0}/other.db\"\n",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path) -> Host {
    let manifest = repo_root().join("host/tests/fixtures/kv.toml");
    build_probe();
    Host::start_manifest(
        &manifest,
        &["--runtime-config-file", config.to_str().unwrap()],
        &[],
    )
}

#[test]
fn values_persist_per_label_and_only_granted_stores_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(dir.path());
    {
        let host = start(&config);
        let (status, body) = host.get("/probe/kv?op=set&key=greeting&value=hello");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            host.get("/probe/kv?store=sessions&op=set&key=s1&value=ann")
                .0,
            200
        );
        assert_eq!(
            json(&host.get("/probe/kv?key=greeting").1)["value"],
            "hello"
        );
        assert_eq!(
            json(&host.get("/probe/kv?op=keys").1)["keys"],
            serde_json::json!(["greeting"])
        );
        assert_eq!(
            json(&host.get("/probe/kv?store=sessions&key=greeting").1)["value"],
            serde_json::Value::Null
        );
        let (status, body) = host.get("/probe/kv?store=other&key=x");
        assert_eq!(
            (status, json(&body)["error"].as_str()),
            (503, Some("Error::AccessDenied")),
            "{body}"
        );
        assert_eq!(host.get("/probe/kv?op=delete&key=nothing").0, 200);
    }
    // A relative path is the runtime config's directory's.
    assert!(dir.path().join("sessions.db").is_file());
    assert!(
        !dir.path().join("other.db").exists(),
        "an unused store is not created"
    );
    let host = start(&config);
    assert_eq!(
        json(&host.get("/probe/kv?key=greeting").1)["value"],
        "hello",
        "lost on restart"
    );
    assert_eq!(
        json(&host.get("/probe/kv?store=sessions&op=exists&key=s1").1)["exists"],
        true
    );
}

#[test]
fn a_granted_store_no_runtime_config_defines_stops_start_up() {
    build_probe();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["up", "--listen", "127.0.0.1:0", "-f"])
        .arg(repo_root().join("host/tests/fixtures/kv.toml"))
        .output()
        .expect("running edge-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains("[key_value_store.sessions]"), "{stderr}");
}
