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
