//! Admission control (issue 13 item 1, issue 10 item 4): a request takes an instance slot
//! only once it can make progress, waits a bounded time for one, and one client or one
//! component cannot take the slots every other request needs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::Host;

/// Opens a connection from `from` (a loopback address) to the host.
fn connect_from(host: &Host, from: &str) -> TcpStream {
    let server: SocketAddr = host.base_url.trim_start_matches("http://").parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket
        .connect_timeout(&server.into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads one response head (up to the blank line) from `stream`; empty when the server
/// closed the connection or the read timed out.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends the head of a `POST` announcing a 200-byte body that never comes, with
/// `Expect: 100-continue` so the test knows when the host has started reading the body
/// (hyper sends `100 Continue` on the body's first read), then nothing more.
fn slow_body(host: &Host, from: &str, path: &str) -> TcpStream {
    let mut stream = connect_from(host, from);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Opens `count` header-only slow bodies to `path`, spread over `addresses` loopback
/// addresses, and waits (deadline 20 s) until the host reads the body of every one of
/// them: from then on each is what the attacker holds.
pub fn hold_slow_bodies(host: &Host, count: usize, addresses: u8, path: &str) -> Vec<TcpStream> {
    let mut held: Vec<TcpStream> = (0..count)
        .map(|i| {
            slow_body(
                host,
                &format!("127.0.0.{}", 2 + (i % addresses as usize)),
                path,
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut reading = 0;
    for stream in &mut held {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if read_head(stream).starts_with("HTTP/1.1 100") {
            reading += 1;
        }
    }
    assert_eq!(
        reading, count,
        "only {reading} of {count} header-only requests got as far as their body read"
    );
    held
}

/// One `GET` on a fresh connection from 127.0.0.1: status, headers+body, and how long it took.
pub fn timed_get(host: &Host, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = connect_from(host, "127.0.0.1");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer, took)
}

#[test]
fn header_only_slow_bodies_take_no_instance_slot() {
    // Four slots, forty clients that send a head and no body: before, the first four took
    // every slot while they waited for their bodies and everything else hung (here: until
    // the 30 s body timeout); now they hold only their sockets.
    let host = Host::start(&["--max-instances", "4"], &[]);
    let held = hold_slow_bodies(&host, 40, 8, "/probe/");
    for _ in 0..5 {
        let (status, answer, took) = timed_get(&host, "/probe/headers");
        assert_eq!(status, 200, "{answer}");
        assert!(took < Duration::from_millis(100), "took {took:?}");
    }
    drop(held);
}

/// A request to `/probe/hold` on `prefix` that keeps its instance (and its component's
/// turn) until the returned gate connection is answered or dropped.
struct Held {
    gate: TcpStream,
    holder: std::thread::JoinHandle<anyhow::Result<(u16, String)>>,
}

fn hold(host: &Host, prefix: &str) -> Held {
    let gate = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "{}{prefix}/hold?url=http://{}/",
        host.base_url,
        gate.local_addr().unwrap()
    );
    let holder = std::thread::spawn(move || test_support::raw_get(&url).send());
    gate.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let gate = loop {
        match gate.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if Instant::now() < deadline && !holder.is_finished() => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("the probe never called its gate: {err}"),
        }
    };
    Held { gate, holder }
}

impl Held {
    /// Answers the held request's outbound call and returns its own status.
    fn release(mut self) -> u16 {
        self.gate.set_nonblocking(false).unwrap();
        let _ = self.gate.write_all(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        drop(self.gate);
        self.holder.join().unwrap().unwrap().0
    }
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Asserts a host-made problem+json answer with `status` and the app's security headers.
pub fn assert_host_problem(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "wanted {status}: {answer}"
    );
    assert_eq!(
        header(answer, "content-type"),
        Some("application/problem+json"),
        "{answer}"
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        assert_eq!(header(answer, name), Some(value), "{name}: {answer}");
    }
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let problem: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {answer}"));
    assert_eq!(problem["status"], status, "{answer}");
    assert!(
        problem["detail"].is_string() && problem["title"].is_string(),
        "{answer}"
    );
}

#[test]
fn a_full_instance_pool_gives_503_with_retry_after_within_the_queue_wait() {
    let host = Host::start(&["--max-instances", "1", "--max-queue-wait-ms", "200"], &[]);
    let held = hold(&host, "/probe");
    // Before: the request waited for a slot as long as the holder held it (unbounded).
    let (status, answer, took) = timed_get(&host, "/probe/headers");
    assert_eq!(status, 503, "{answer}");
    assert_host_problem(&answer, 503);
    assert_eq!(header(&answer, "retry-after"), Some("1"), "{answer}");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(3),
        "answered after {took:?}, wanted the 200 ms queue wait"
    );
    assert_eq!(held.release(), 200);
    assert_eq!(
        timed_get(&host, "/probe/headers").0,
        200,
        "a free slot serves again"
    );
}

#[test]
fn a_component_at_its_cap_gets_503_and_other_components_are_served() {
    crate::harness::build_probe();
    let manifest = crate::harness::repo_root().join("host/tests/fixtures/two.toml");
    let host = Host::start_manifest(
        &manifest,
        &[
            "--max-instances",
            "8",
            "--max-component-concurrency",
            "1",
            "--max-queue-wait-ms",
            "100",
        ],
        &[],
    );
    let held = hold(&host, "/probe");
    let (status, answer, _) = timed_get(&host, "/probe/headers");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(header(&answer, "retry-after"), Some("1"), "{answer}");
    // Seven slots are free and `other` has its own cap: served at once.
    let (status, answer, took) = timed_get(&host, "/other/headers");
    assert_eq!(status, 200, "{answer}");
    assert!(took < Duration::from_millis(100), "took {took:?}");
    assert_eq!(held.release(), 200);
}

#[test]
fn a_client_over_its_in_flight_cap_gets_429_and_other_clients_are_served() {
    let host = Host::start(&["--max-client-in-flight", "3"], &[]);
    // Three slow bodies from 127.0.0.2 are its three requests in flight.
    let held = hold_slow_bodies(&host, 3, 1, "/probe/");
    let mut fourth = slow_body(&host, "127.0.0.2", "/probe/");
    let answer = read_head(&mut fourth);
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    assert_eq!(header(&answer, "retry-after"), Some("1"), "{answer}");
    let (status, answer, _) = timed_get(&host, "/probe/headers");
    assert_eq!(status, 200, "another address: {answer}");
    drop(held);
}

#[test]
fn host_made_404_and_500_are_problem_json_with_the_security_headers() {
    let host = Host::start(&[], &[]);
    let (_, answer, _) = timed_get(&host, "/nowhere");
    assert_host_problem(&answer, 404);
    let (_, answer, _) = timed_get(&host, "/probe/trap");
    assert_host_problem(&answer, 500);
    assert!(
        !answer.contains("panic") && !answer.contains("probe asked"),
        "no internals: {answer}"
    );
}

#[test]
fn a_table_for_an_unknown_component_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[edge_host.admission.component.prbe]\nmax_concurrency = 2\n",
    )
    .unwrap();
    let manifest = crate::harness::repo_root().join("host/tests/fixtures/probe.toml");
    crate::harness::build_probe();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(["up", "-f"])
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0", "--runtime-config-file"])
        .arg(&config)
        .env("SPIN_VARIABLE_SECRET_TOKEN", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("prbe") && stderr.contains("edge_host.admission"),
        "{stderr}"
    );
}
