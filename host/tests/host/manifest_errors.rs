//! Start-up errors: a bad manifest or a missing variable stops the host with a message
//! naming the file, the field and the line.

use std::process::Command;

fn up_with_manifest(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["up", "--listen", "127.0.0.1:0", "-f"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("running edge-host");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const BASE: &str = r#"spin_manifest_version = 2
[application]
name = "x"
[variables]
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "missing.wasm"
"#;

#[test]
fn typo_in_a_field_name_is_named_with_its_line() {
    let (ok, stderr) = up_with_manifest(&BASE.replace("source =", "sorce ="), &[]);
    assert!(!ok);
    assert!(stderr.contains("spin.toml"), "{stderr}");
    assert!(stderr.contains("sorce"), "{stderr}");
    assert!(stderr.contains("line 10"), "{stderr}");
}

#[test]
fn missing_required_variable_is_named() {
    let (ok, stderr) = up_with_manifest(BASE, &[]);
    assert!(!ok);
    assert!(stderr.contains("SPIN_VARIABLE_TOKEN"), "{stderr}");
}

#[test]
fn missing_component_file_says_to_build() {
    let (ok, stderr) = up_with_manifest(BASE, &[("SPIN_VARIABLE_TOKEN", "s3cret")]);
    assert!(!ok);
    assert!(stderr.contains("missing.wasm"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "secret leaked: {stderr}");
}
