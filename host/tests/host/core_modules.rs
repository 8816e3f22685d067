//! Core WebAssembly modules as `source`: the probe built for `wasm32-wasip1` is adapted to
//! a component at load (host/src/componentize.rs) and serves as the component does; a
//! module without component type information is refused at start-up, naming the file and
//! the reason.

use std::process::Command;

use crate::harness::{build_fixture_for, repo_root, Host};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

#[test]
fn a_spin_sdk_module_built_for_wasip1_serves_like_the_component() {
    build_fixture_for("probe", "wasm32-wasip1");
    let module = repo_root().join("target/wasm32-wasip1/release/probe.wasm");
    let bytes = std::fs::read(&module).unwrap();
    assert!(
        wasmparser::Parser::is_core_wasm(&bytes),
        "the fixture must be a core module"
    );
    let manifest = repo_root().join("host/tests/fixtures/probe-module.toml");
    let host = Host::start_manifest(&manifest, &["--variable", "greeting=hi"], &[]);

    let (status, body) = host.get("/items/42/headers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["spin-path-match-id"], "42");
    // Variables, environment and files through the adapter's WASI 0.2 imports.
    assert_eq!(
        json(&host.get("/probe/variable?name=greeting").1)["value"],
        "hi, world"
    );
    assert_eq!(json(&host.get("/probe/env").1)["PROBE_ENV"], "set");
    let (status, body) = host.get("/probe/file?read=/static/nested/inner.txt");
    assert_eq!(
        (status, json(&body)["text"].as_str()),
        (200, Some("nested file\n"))
    );
    // A trap still only fails its own request.
    assert_eq!(host.get("/probe/trap").0, 500);
    assert_eq!(host.get("/probe/env").0, 200);
}

#[test]
fn a_module_without_component_type_information_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // What wit-bindgen 0.2 (Spin 1.x SDKs) made: preview1 imports, a bare export.
    let module = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
             (memory (export "memory") 1)
             (func (export "handle-http-request")))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("old.wasm"), module).unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"old\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"old\"\n\
         [component.old]\nsource = \"old.wasm\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["up", "--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(dir.path().join("cache"))
        .arg("-f")
        .arg(&manifest)
        .output()
        .expect("running edge-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains("old.wasm"), "{stderr}");
    assert!(stderr.contains("wit-bindgen older than 0.5"), "{stderr}");
}
