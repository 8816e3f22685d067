//! The HTTP trigger against the probe component: Spin headers, routing, fault isolation,
//! limits, variables, environment and logs.

use std::time::{Duration, Instant};

use crate::harness::{accept_gate, Host};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

#[test]
fn spin_headers_describe_the_match() {
    let host = Host::start(&[], &[]);
    let (status, body) = host.request(
        "/items/42/headers?q=1",
        &[("spin-client-addr", "6.6.6.6:1")],
    );
    assert_eq!(status, 200, "{body}");
    let headers = json(&body);
    let addr = host.base_url.trim_start_matches("http://");
    assert_eq!(
        headers["spin-full-url"],
        format!("http://{addr}/items/42/headers?q=1")
    );
    assert_eq!(headers["spin-path-info"], "/headers");
    assert_eq!(headers["spin-matched-route"], "/items/:id/...");
    assert_eq!(headers["spin-raw-component-route"], "/items/:id/...");
    assert_eq!(headers["spin-component-route"], "/items/:id");
    assert_eq!(headers["spin-base-path"], "/");
    assert_eq!(headers["spin-path-match-id"], "42");
    let client = headers["spin-client-addr"].as_str().unwrap();
    assert!(
        client.starts_with("127.0.0.1:"),
        "client header not replaced: {client}"
    );
}

#[test]
fn spin_headers_use_spins_names_and_keep_a_trailing_slash() {
    let host = Host::start(&[], &[]);
    let (status, body) = host.get("/things/7/headers/");
    assert_eq!(status, 200, "{body}");
    let headers = json(&body);
    // spin-trigger-http turns `_` in a parameter's header name into `-`, and keeps a
    // trailing slash in the wildcard's path info (see host/src/routes.rs).
    assert_eq!(headers["spin-path-match-item-id"], "7", "{headers}");
    assert!(
        headers.get("spin-path-match-item_id").is_none(),
        "{headers}"
    );
    assert_eq!(headers["spin-path-info"], "/headers/");
    assert_eq!(headers["spin-component-route"], "/things/:item_id");
}

#[test]
fn unrouted_path_is_404() {
    let host = Host::start(&[], &[]);
    assert_eq!(host.get("/nothing/here").0, 404);
}

#[test]
fn a_trap_is_a_500_for_that_request_only() {
    let host = Host::start(&[], &[]);
    let (status, body) = host.get("/probe/trap");
    assert_eq!(status, 500);
    assert!(
        !body.contains("probe asked to trap"),
        "guest panic text leaked: {body}"
    );
    let (status, _) = host.get("/probe/headers");
    assert_eq!(status, 200, "host must keep serving after a trap");
}

#[test]
fn running_out_of_memory_is_a_500_and_the_host_survives() {
    let host = Host::start(&["--max-instance-memory-mb", "64"], &[]);
    let (status, body) = host.get("/probe/oom");
    assert_eq!(status, 500, "{body}");
    // Told apart from other failures: the host's problem+json for the memory cap.
    assert!(
        body.contains("urn:edge-host:problem:memory-limit"),
        "{body}"
    );
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn a_busy_loop_is_cut_off_at_the_execution_timeout() {
    // `--execution-timeout-secs` is kept as an alias of `--request-timeout`.
    let host = Host::start(&["--execution-timeout-secs", "1"], &[]);
    let started = Instant::now();
    assert_eq!(host.get("/probe/busy").0, 504);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "timeout not enforced"
    );
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn component_variables_expand_app_variables() {
    let host = Host::start(&["--variable", "greeting=hi"], &[]);
    let (status, body) = host.get("/probe/variable?name=greeting");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["value"], "hi, world");
    let (status, _) = host.get("/probe/variable?name=not_declared");
    assert_eq!(status, 404);
}

#[test]
fn environment_reaches_the_component() {
    let host = Host::start(&[], &[]);
    let (_, body) = host.get("/probe/env");
    assert_eq!(json(&body)["PROBE_ENV"], "set");
}

#[test]
fn files_are_mounted_read_only_where_the_manifest_puts_them() {
    let host = Host::start(&[], &[]);
    let read = |path: &str| {
        let (status, body) = host.get(&format!("/probe/file?read={path}"));
        (status, json(&body))
    };
    // `{ source = "probe-files", destination = "/static" }`: the tree under /static.
    let (status, body) = read("/static/nested/inner.txt");
    assert_eq!(
        (status, body["text"].as_str()),
        (200, Some("nested file\n"))
    );
    // `"probe-files/top.txt"`: the same relative path under /.
    assert_eq!(read("/probe-files/top.txt").1["text"], "top file\n");
    // exclude_files left the .skip file out; nothing outside the mounts is visible.
    for hidden in [
        "/static/nested/left.skip",
        "/probe.toml",
        "/../../Cargo.toml",
        "/etc/passwd",
    ] {
        let (status, body) = read(hidden);
        assert_eq!(status, 404, "{hidden} is visible: {body}");
    }
    let (status, body) = host.get("/probe/file?write=/static/new.txt");
    assert_eq!(status, 404, "the mount must be read-only: {body}");
    assert_ne!(
        json(&body)["error"],
        "NotFound",
        "refused for the wrong reason: {body}"
    );
}

#[test]
fn unimplemented_interfaces_answer_with_their_own_error() {
    let host = Host::start(&[], &[]);
    let (status, body) = host.get("/probe/llm");
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (503, Some("Error::ModelNotSupported")),
        "the LLM interface must answer with its WIT error, not trap: {body}"
    );
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn component_output_is_prefixed_with_its_id() {
    let host = Host::start(&[], &[]);
    assert_eq!(host.get("/probe/log").0, 200);
    let timeout = Duration::from_secs(10);
    assert!(host.wait_for_output(timeout, |line| line == "[probe] first line"));
    assert!(host.wait_for_output(timeout, |line| line == "[probe] to stderr"));
    assert!(host.wait_for_output(timeout, |line| line == "[probe] partial"));
}

#[test]
fn a_restart_loads_compiled_components_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap().to_owned();
    {
        let first = Host::start(&["--cache-dir", &cache_arg], &[]);
        assert!(first.wait_for_output(Duration::from_secs(5), |l| l.contains("compiled component")));
    }
    let second = Host::start(&["--cache-dir", &cache_arg, "--log-format", "json"], &[]);
    assert_eq!(second.get("/probe/headers").0, 200);
    assert!(
        !second.wait_for_output(Duration::from_millis(200), |l| l
            .contains("compiled component")),
        "second start compiled again instead of using the cache"
    );
}

#[test]
fn an_announced_body_over_the_limit_is_refused_before_the_guest_runs() {
    use std::io::{Read, Write};
    let host = Host::start(&["--max-request-body-mb", "1"], &[]);
    let authority = host.base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /probe/ HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        2 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = vec![0u8; 64];
    let read = stream.read(&mut answer).unwrap();
    let status_line = String::from_utf8_lossy(&answer[..read]);
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn requests_beyond_the_instance_limit_wait_for_a_slot() {
    use std::io::{ErrorKind, Read, Write};
    let host = Host::start(
        &[
            "--max-instances",
            "1",
            "--execution-timeout-secs",
            "60",
            // Waits within the queue bound are what this test is about (see admission.rs
            // for the bound itself).
            "--max-queue-wait-ms",
            "60000",
        ],
        &[],
    );
    // `/probe/hold` calls out to this gate and ends only when the test answers: the test
    // decides how long the only slot is held.
    let gate = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hold_url = format!(
        "{}/probe/hold?url=http://{}/",
        host.base_url,
        gate.local_addr().unwrap()
    );
    let holder = std::thread::spawn(move || test_support::raw_get(&hold_url).send());
    // The call arrives from inside the running instance: from now on the slot is taken.
    let mut held = accept_gate(&gate, &holder);

    // A second request while the slot is held is not answered: none of it within a
    // second (a host that ignored the limit answers this route in milliseconds)...
    let authority = host.base_url.trim_start_matches("http://");
    let mut second = std::net::TcpStream::connect(authority).unwrap();
    write!(
        second,
        "GET /probe/headers HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut first_byte = [0u8; 1];
    match second.read(&mut first_byte) {
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("second request answered while the only slot was held: {other:?}"),
    }
    assert!(!holder.is_finished(), "the held request ended on its own");

    // ...and once the gate answers, the held request finishes and the waiting one runs.
    held.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(held);
    let (status, body) = holder.join().unwrap().unwrap();
    assert_eq!(status, 200, "held request: {body}");
    assert_eq!(json(&body)["released"], 204, "{body}");
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    second.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "second request must wait, not fail: {answer}"
    );
}
