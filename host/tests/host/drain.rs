//! Graceful drain on SIGTERM/SIGINT (issue 10, item 1), against the real binary: requests
//! held open by the test (`/probe/hold` calls out to a gate of the test's own and ends only
//! when the test answers), so the test, not a timer, decides when each request ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use futures::StreamExt;
use test_support::wait::poll_until;
use test_support::PrivateRedis;

use crate::harness::{build_fixture, repo_root, Host};

/// The listener the probe's `/probe/hold` requests call out to; each call is held until
/// the test answers it.
struct Gate {
    listener: TcpListener,
}

impl Gate {
    fn new() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Gate { listener }
    }

    fn hold_url(&self, host: &Host) -> String {
        format!(
            "{}/probe/hold?url=http://{}/",
            host.base_url,
            self.listener.local_addr().unwrap()
        )
    }

    /// Waits until `count` calls have arrived (each from inside a running instance) and
    /// reads each one's request head, so answering later is a clean exchange.
    fn accept(&self, count: usize, limit: Duration) -> Vec<TcpStream> {
        let deadline = Instant::now() + limit;
        let mut held = Vec::new();
        while held.len() < count {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        assert_eq!(stream.read(&mut byte).unwrap(), 1, "call ended early");
                        head.push(byte[0]);
                    }
                    held.push(stream);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {count} requests reached the gate",
                        held.len()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => panic!("accepting a probe call: {err}"),
            }
        }
        held
    }
}

/// Answers held calls: their requests can now finish.
fn release(held: Vec<TcpStream>) {
    for mut stream in held {
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
}

/// Starts `count` held requests, each on its own connection and thread.
fn start_held(
    host: &Host,
    gate: &Gate,
    count: usize,
) -> Vec<std::thread::JoinHandle<anyhow::Result<(u16, String)>>> {
    (0..count)
        .map(|_| {
            let url = gate.hold_url(host);
            std::thread::spawn(move || test_support::raw_get(&url).send())
        })
        .collect()
}

fn authority(host: &Host) -> String {
    host.base_url.trim_start_matches("http://").to_owned()
}

/// True once a new connection to the host is refused (the listener is closed).
fn refused(authority: &str) -> bool {
    matches!(TcpStream::connect(authority), Err(err) if err.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn sigterm_lets_200_in_flight_requests_finish_refuses_new_connections_and_exits_0() {
    const IN_FLIGHT: usize = 200;
    let mut host = Host::start(&["--shutdown-timeout", "60s"], &[]);
    let gate = Gate::new();
    let clients = start_held(&host, &gate, IN_FLIGHT);
    // Every request is inside its component now, waiting on the gate.
    let held = gate.accept(IN_FLIGHT, Duration::from_secs(60));

    host.signal("TERM").unwrap();
    let address = authority(&host);
    assert!(
        poll_until(Duration::from_secs(5), || refused(&address)),
        "a new connection was still accepted 5 s after SIGTERM"
    );
    assert!(
        host.exit_status().unwrap().is_none(),
        "the host exited with requests in flight"
    );
    assert!(
        clients.iter().all(|c| !c.is_finished()),
        "a held request ended early"
    );

    release(held);
    let signalled = Instant::now();
    for client in clients {
        let (status, body) = client
            .join()
            .unwrap()
            .expect("a held request got no answer");
        assert_eq!(status, 200, "held request: {body}");
        assert!(body.contains(r#""released":204"#), "{body}");
    }
    let status = host
        .wait_for_exit(Duration::from_secs(30))
        .unwrap()
        .expect("the host did not exit once its requests were done");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut host = Host::start(&["--shutdown-timeout", "60s"], &[]);
    let gate = Gate::new();
    let clients = start_held(&host, &gate, 1);
    let _held = gate.accept(1, Duration::from_secs(30));

    host.signal("TERM").unwrap();
    assert!(host.wait_for_output(Duration::from_secs(5), |l| l.contains("shutting down")));
    let second = Instant::now();
    host.signal("INT").unwrap();
    let status = host
        .wait_for_exit(Duration::from_secs(5))
        .unwrap()
        .expect("a second signal did not stop the host");
    assert!(second.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "exit status {status}");
    drop(clients);
}

#[test]
fn the_shutdown_timeout_bounds_the_wait() {
    let mut host = Host::start(&["--shutdown-timeout", "1s"], &[]);
    let gate = Gate::new();
    let _clients = start_held(&host, &gate, 1);
    let _held = gate.accept(1, Duration::from_secs(30));

    let signalled = Instant::now();
    host.signal("TERM").unwrap();
    let status = host
        .wait_for_exit(Duration::from_secs(10))
        .unwrap()
        .expect("the host waited past its shutdown timeout");
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "exited after {waited:?}, before the timeout"
    );
    assert!(waited < Duration::from_secs(5), "exited after {waited:?}");
    assert_eq!(status.code(), Some(1), "exit status {status}");
    assert!(host.wait_for_output(Duration::from_secs(2), |l| l
        .contains("shutdown timeout passed with 1 HTTP connection(s)")));
}

#[test]
fn the_shutdown_delay_keeps_serving_before_the_listener_closes() {
    let mut host = Host::start(&["--shutdown-delay", "6s"], &[]);
    let signalled = Instant::now();
    host.signal("TERM").unwrap();
    assert!(host.wait_for_output(Duration::from_secs(5), |l| l.contains("shutting down")));
    let (status, _) = host.get("/probe/headers");
    assert_eq!(status, 200, "a request during the delay");
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "the check came too late"
    );
    let address = authority(&host);
    assert!(poll_until(Duration::from_secs(10), || refused(&address)));
    assert!(signalled.elapsed() >= Duration::from_millis(5900));
    let status = host.wait_for_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

/// A Redis-triggered job in progress at SIGTERM finishes (counted once), the subscription
/// is gone before it does, and the host then exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_redis_handler_in_progress_finish_exactly_once() {
    build_fixture("redisprobe");
    let redis = PrivateRedis::start().await;
    let url = redis.url();
    let manifest = repo_root().join("host/tests/fixtures/redisprobe.toml");
    let mut host = tokio::task::block_in_place(|| {
        Host::start_manifest(
            &manifest,
            &["--shutdown-timeout", "60s"],
            &[
                ("SPIN_VARIABLE_REDIS_URL", &url),
                ("SPIN_VARIABLE_REDIS_HOST", &redis.host()),
            ],
        )
    });
    assert!(host.wait_for_output(Duration::from_secs(10), |l| l.contains("subscribed")));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut replies = client.get_async_pubsub().await.unwrap();
    replies.subscribe("probe-out").await.unwrap();
    let mut replies = replies.into_on_message();
    let mut commands = client.get_multiplexed_async_connection().await.unwrap();
    let publish = async |message: &str| -> i64 {
        redis
            .command(&[b"PUBLISH", b"probe-in", message.as_bytes()])
            .await
            .unwrap()
            .trim_start_matches(':')
            .parse()
            .unwrap()
    };

    assert_eq!(publish("hold:job1").await, 1);
    assert_eq!(
        next_reply(&mut replies).await.as_deref(),
        Some("started:job1")
    );
    host.signal("TERM").unwrap();
    // The subscription goes before the job ends: the host says so, Redis counts no
    // subscriber on the channel, and a message published now reaches nobody.
    assert!(host.wait_for_output(Duration::from_secs(10), |l| l.contains("unsubscribed")));
    let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("probe-in")
        .query_async(&mut commands)
        .await
        .unwrap();
    assert_eq!(subscribers, [("probe-in".to_owned(), 0)]);
    assert_eq!(
        publish("late").await,
        0,
        "a subscriber took a message after the drain began"
    );
    assert!(
        host.exit_status().unwrap().is_none(),
        "exited with a job in progress"
    );

    redis
        .command(&[b"SET", b"job1:release", b"1"])
        .await
        .unwrap();
    assert_eq!(next_reply(&mut replies).await.as_deref(), Some("done:job1"));
    let status = tokio::task::block_in_place(|| host.wait_for_exit(Duration::from_secs(30)))
        .unwrap()
        .expect("the host did not exit after its last handler");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let handled: Option<i64> = redis::cmd("GET")
        .arg("job1:handled")
        .query_async(&mut commands)
        .await
        .unwrap();
    assert_eq!(handled, Some(1), "times job1 was handled");
}

/// The next message on the reply channel, within 10 s.
async fn next_reply(replies: &mut redis::aio::PubSubStream) -> Option<String> {
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next()).await;
    reply
        .ok()
        .flatten()
        .map(|m| m.get_payload::<String>().unwrap())
}
