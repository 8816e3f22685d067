//! Slow and broken clients (issue 10, item 7): each gets its 4xx problem+json (or, for a
//! stalled head, a closed connection) within the configured timeouts, never a 500 or a hang.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::Host;

/// Sends `raw` on a fresh connection and reads until the server closes it or 15 s pass;
/// returns everything read and how long it took.
fn exchange(host: &Host, raw: &[u8]) -> (String, Duration) {
    let authority = host.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

fn assert_problem(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "wanted {status}: {answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let problem: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {answer}"));
    assert_eq!(problem["status"], status, "{answer}");
    for field in ["type", "title", "detail"] {
        assert!(problem[field].is_string(), "{field} missing: {answer}");
    }
}

#[test]
fn a_chunked_body_over_the_limit_gets_413_problem() {
    let host = Host::start(&["--max-request-body-mb", "1"], &[]);
    let mut raw = b"POST /probe/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let chunk = vec![b'a'; 256 << 10];
    for _ in 0..8 {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (answer, _) = exchange(&host, &raw);
    assert_problem(&answer, 413);
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn an_announced_body_over_the_limit_gets_413_problem() {
    let host = Host::start(&["--max-request-body-mb", "1"], &[]);
    let raw = format!(
        "POST /probe/ HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        2 << 20
    );
    let (answer, _) = exchange(&host, raw.as_bytes());
    assert_problem(&answer, 413);
}

#[test]
fn an_invalid_chunk_size_gets_400_problem() {
    let host = Host::start(&[], &[]);
    let raw = b"POST /probe/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let (answer, _) = exchange(&host, raw);
    assert_problem(&answer, 400);
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn a_stalled_body_gets_408_problem_within_the_body_timeout() {
    let host = Host::start(&["--body-read-timeout-secs", "1"], &[]);
    // Announces 100 bytes, sends 5, then nothing: the connection stays open.
    let raw = b"POST /probe/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello";
    let (answer, took) = exchange(&host, raw);
    assert_problem(&answer, 408);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_stalled_head_is_closed_within_the_header_timeout() {
    let host = Host::start(&["--header-read-timeout-secs", "1"], &[]);
    let (answer, took) = exchange(&host, b"GET /probe/ HTTP/1.1\r\nHo");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(5), "connection kept {took:?}");
    assert_eq!(host.get("/probe/headers").0, 200);
}

#[test]
fn too_many_headers_get_431() {
    let host = Host::start(&["--max-headers", "20"], &[]);
    let mut raw = String::from("GET /probe/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..40 {
        raw.push_str(&format!("x-h{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let (answer, _) = exchange(&host, raw.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
