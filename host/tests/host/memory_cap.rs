//! `--max-instance-memory-mb` counts all of an instance's memories together (issue 10,
//! item 4; Spin counts each on its own, spin#3705), with a hand-written two-memory component
//! (`fixtures/twomem.wat`) beside the probe.

use crate::harness::{build_probe, repo_root, Host};

fn start(cap_mb: &str) -> Host {
    build_probe();
    let manifest = repo_root().join("host/tests/fixtures/twomem.toml");
    Host::start_manifest(&manifest, &["--max-instance-memory-mb", cap_mb], &[])
}

const MEMORY_LIMIT: &str = "urn:edge-host:problem:memory-limit";

#[test]
fn two_memories_past_the_cap_together_get_500_for_that_request_only() {
    // Each memory grows to 37.5 MiB: under 64 MiB alone, over it together.
    let host = start("64");
    let (status, body) = host.get("/twomem");
    assert_eq!(status, 500, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).expect("problem+json body");
    assert_eq!(problem["type"], MEMORY_LIMIT, "{body}");
    assert_eq!(problem["status"], 500, "{body}");
    // Only that request: the next one, on another route, and the same route again, each
    // get a fresh instance.
    assert_eq!(host.get("/probe/headers").0, 200);
    assert_eq!(host.get("/twomem").0, 500);
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn two_memories_under_the_cap_together_grow() {
    // The same growth fits under 128 MiB: the component then ends without a response, a
    // plain 500 that is not the memory cap's (so the test above fails only for the cap).
    let host = start("128");
    let (status, body) = host.get("/twomem");
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains(MEMORY_LIMIT), "{body}");
}
