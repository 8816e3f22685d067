use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use wasmtime::component::ResourceTable;

use super::*;
use crate::capabilities::test_support::{component_with, env_url, origin_of};
use crate::capabilities::{AppCapabilities, CapabilityState, ComponentCapabilities};
use v2::HostConnection as _;

struct Request {
    state: CapabilityState,
    table: ResourceTable,
}

impl Request {
    fn new(app: &Arc<AppCapabilities>, component: &Arc<ComponentCapabilities>) -> Self {
        Self {
            state: CapabilityState::new(app.clone(), component.clone()),
            table: ResourceTable::new(),
        }
    }

    fn view(&mut self) -> CapabilityView<'_> {
        CapabilityView {
            state: &mut self.state,
            table: &mut self.table,
        }
    }
}

fn app() -> Arc<AppCapabilities> {
    Arc::new(crate::capabilities::test_support::app_capabilities())
}

fn borrow(connection: &Resource<v2::Connection>) -> Resource<v2::Connection> {
    Resource::new_borrow(connection.rep())
}

fn bin(text: &str) -> v2::RedisParameter {
    v2::RedisParameter::Binary(text.as_bytes().to_vec())
}

fn debug<D: std::fmt::Debug>(value: D) -> String {
    format!("{value:?}")
}

#[tokio::test]
#[ignore = "needs REDIS_URL (run through scripts/test)"]
async fn commands_and_replies_map_like_spin() {
    let url = env_url("REDIS_URL");
    let app = app();
    let component = component_with(&[origin_of(&url).as_str()], Default::default(), &[]);
    let mut request = Request::new(&app, &component);
    let mut view = request.view();
    let c = view.open(url.clone()).await.unwrap().unwrap();
    let key = format!("edge-host-test:{}", std::process::id());
    let set_key = format!("{key}:set");

    view.set(borrow(&c), key.clone(), b"41".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.incr(borrow(&c), key.clone()).await.unwrap().unwrap(),
        42
    );
    let got = view.get(borrow(&c), key.clone()).await.unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"42"[..]));
    let missing = view
        .get(borrow(&c), format!("{key}:absent"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missing, None);
    view.set(borrow(&c), key.clone(), b"text".to_vec())
        .await
        .unwrap()
        .unwrap();
    let not_integer = view.incr(borrow(&c), key.clone()).await.unwrap();
    assert!(
        matches!(not_integer, Err(v2::Error::TypeError)),
        "{not_integer:?}"
    );

    let added = view.sadd(
        borrow(&c),
        set_key.clone(),
        vec!["a".into(), "b".into(), "a".into()],
    );
    assert_eq!(added.await.unwrap().unwrap(), 2);
    let mut members = view
        .smembers(borrow(&c), set_key.clone())
        .await
        .unwrap()
        .unwrap();
    members.sort();
    assert_eq!(members, ["a", "b"]);
    let wrong = view.smembers(borrow(&c), key.clone()).await.unwrap();
    assert!(matches!(wrong, Err(v2::Error::TypeError)), "{wrong:?}");
    let removed = view.srem(borrow(&c), set_key.clone(), vec!["a".into(), "z".into()]);
    assert_eq!(removed.await.unwrap().unwrap(), 1);
    view.publish(borrow(&c), "edge-host-test".into(), b"hi".to_vec())
        .await
        .unwrap()
        .unwrap();

    // Lua's nested tables come back flattened; status replies stay statuses.
    let script = "return {1, {ARGV[1], {2}}, redis.status_reply('FINE'), false}";
    let results = view
        .execute(
            borrow(&c),
            "EVAL".into(),
            vec![bin(script), v2::RedisParameter::Int64(0), bin("a")],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        debug(results),
        debug(vec![
            v2::RedisResult::Int64(1),
            v2::RedisResult::Binary(b"a".to_vec()),
            v2::RedisResult::Int64(2),
            v2::RedisResult::Status("FINE".into()),
            v2::RedisResult::Nil,
        ])
    );
    let ok = view
        .execute(borrow(&c), "set".into(), vec![bin(&key), bin("v")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(debug(ok), debug(vec![v2::RedisResult::Status("OK".into())]));
    let failing = view
        .execute(
            borrow(&c),
            "EVAL".into(),
            vec![
                bin("return redis.error_reply('NOPE bad')"),
                v2::RedisParameter::Int64(0),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(&failing, Err(v2::Error::Other(m)) if m.contains("NOPE")),
        "{failing:?}"
    );

    // Commands that would change or stall the shared connection are refused.
    for (command, args) in [
        ("MULTI", vec![]),
        ("select", vec![bin("1")]),
        ("CLIENT", vec![bin("SETNAME"), bin("x")]),
        ("BLPOP", vec![bin(&key), v2::RedisParameter::Int64(1)]),
        (
            "XREAD",
            vec![bin("BLOCK"), bin("0"), bin("STREAMS"), bin("s"), bin("$")],
        ),
    ] {
        let refused = view
            .execute(borrow(&c), command.into(), args)
            .await
            .unwrap();
        assert!(
            matches!(&refused, Err(v2::Error::Other(m)) if m.contains("not supported")),
            "{command}: {refused:?}"
        );
    }

    let deleted = view.del(
        borrow(&c),
        vec![key.clone(), set_key.clone(), format!("{key}:absent")],
    );
    assert_eq!(deleted.await.unwrap().unwrap(), 2);
    v2::HostConnection::drop(&mut view, c).await.unwrap();

    // Every request shares the one connection per address.
    assert_eq!(app.redis.connections.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn denied_and_invalid_addresses() {
    let app = app();
    let component = component_with(&["redis://127.0.0.1:6379"], Default::default(), &[]);
    let mut request = Request::new(&app, &component);
    let mut view = request.view();
    let denied = view
        .open("redis://:secret@10.0.0.1:6379".into())
        .await
        .unwrap();
    assert!(
        matches!(denied, Err(v2::Error::InvalidAddress)),
        "{denied:?}"
    );
    let invalid = view.open("not a url".into()).await.unwrap();
    assert!(
        matches!(invalid, Err(v2::Error::InvalidAddress)),
        "{invalid:?}"
    );
    assert_eq!(
        redacted("redis://:secret@10.0.0.1:6379/0"),
        "redis://10.0.0.1:6379"
    );
}

/// A throwaway redis-server on a free loopback port, stopped on drop.
struct TestRedis {
    port: u16,
    child: Option<Child>,
}

impl TestRedis {
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self {
            port,
            child: Some(child),
        })
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn ping(
    app: &Arc<AppCapabilities>,
    component: &Arc<ComponentCapabilities>,
    url: &str,
) -> Result<(), String> {
    let mut request = Request::new(app, component);
    let mut view = request.view();
    let connection = view
        .open(url.to_owned())
        .await
        .unwrap()
        .map_err(|e| format!("{e:?}"))?;
    let reply = view
        .execute(borrow(&connection), "PING".into(), vec![])
        .await
        .unwrap();
    reply.map(|_| ()).map_err(|e| format!("{e:?}"))
}

#[tokio::test]
#[ignore = "needs redis-server (run through scripts/test)"]
async fn the_shared_connection_fails_fast_and_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let app = app();
    let component = component_with(&[origin_of(&url).as_str()], Default::default(), &[]);

    let mut server = TestRedis::start(port).expect("redis-server starts");
    server.wait_ready().await;
    ping(&app, &component, &url).await.unwrap();

    server.stop();
    let started = std::time::Instant::now();
    let mut failures = 0;
    for _ in 0..3 {
        if ping(&app, &component, &url).await.is_err() {
            failures += 1;
        }
    }
    assert!(failures >= 2, "calls fail while Redis is down");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "and they fail fast: {:?}",
        started.elapsed()
    );

    let server = TestRedis::start(port).expect("redis-server restarts");
    server.wait_ready().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ping(&app, &component, &url).await {
            Ok(()) => break,
            Err(err) => assert!(std::time::Instant::now() < deadline, "no recovery: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After Redis restarts, the shared connection is broken: the first command finds it so.
/// A command that can be sent twice without changing anything is sent again on the new
/// connection and succeeds; one that could be applied twice (`INCR`, `EVAL`) fails and the
/// next call works.
#[tokio::test]
#[ignore = "needs redis-server (run through scripts/test)"]
async fn the_first_command_after_a_restart_succeeds_when_it_can_be_repeated() {
    let mut server = test_support::PrivateRedis::start().await;
    let url = server.url();
    let app = app();
    let component = component_with(&[origin_of(&url).as_str()], Default::default(), &[]);
    let mut request = Request::new(&app, &component);
    let mut view = request.view();
    let c = view.open(url.clone()).await.unwrap().unwrap();
    view.set(borrow(&c), "k".into(), b"v".to_vec())
        .await
        .unwrap()
        .unwrap();

    // Repeated: reads and plain SET, through the typed calls and through `execute`.
    server.restart().await;
    let got = view.get(borrow(&c), "k".into()).await.unwrap();
    assert!(matches!(got, Ok(None)), "GET after a restart: {got:?}");
    server.restart().await;
    let set = view
        .set(borrow(&c), "k".into(), b"v2".to_vec())
        .await
        .unwrap();
    assert!(set.is_ok(), "SET after a restart: {set:?}");
    server.restart().await;
    let members = view.smembers(borrow(&c), "s".into()).await.unwrap();
    assert!(
        matches!(&members, Ok(m) if m.is_empty()),
        "SMEMBERS: {members:?}"
    );
    server.restart().await;
    let executed = view
        .execute(
            borrow(&c),
            "SET".into(),
            vec![bin("k"), bin("v"), bin("PX"), bin("60000")],
        )
        .await
        .unwrap();
    assert!(
        executed.is_ok(),
        "execute SET PX after a restart: {executed:?}"
    );
    server.restart().await;
    let executed = view
        .execute(borrow(&c), "get".into(), vec![bin("k")])
        .await
        .unwrap();
    assert!(
        executed.is_ok(),
        "execute GET after a restart: {executed:?}"
    );

    // Not repeated: they might have been applied before the connection broke.
    for (what, command, args) in [
        ("INCR", "INCR", vec![bin("n")]),
        (
            "EVAL",
            "EVAL",
            vec![bin("return 1"), v2::RedisParameter::Int64(0)],
        ),
        ("SET NX", "SET", vec![bin("k"), bin("v"), bin("NX")]),
    ] {
        server.restart().await;
        let failed = view
            .execute(borrow(&c), command.into(), args.clone())
            .await
            .unwrap();
        assert!(failed.is_err(), "{what} is not sent twice: {failed:?}");
        let next = view
            .execute(borrow(&c), command.into(), args)
            .await
            .unwrap();
        assert!(next.is_ok(), "the call after it reconnected: {next:?}");
    }
    server.restart().await;
    let failed = view.incr(borrow(&c), "n".into()).await.unwrap();
    assert!(failed.is_err(), "typed INCR is not sent twice: {failed:?}");
    assert_eq!(view.incr(borrow(&c), "n".into()).await.unwrap().unwrap(), 1);
}

#[test]
fn only_commands_that_can_be_applied_twice_are_repeated() {
    assert_eq!(execute_retry("get", &[bin("k")]), Retry::Once);
    assert_eq!(execute_retry(" EVAL_RO ", &[bin("return 1")]), Retry::Once);
    assert_eq!(
        execute_retry("SET", &[bin("k"), bin("v"), bin("EX"), bin("9")]),
        Retry::Once
    );
    // The option names are values when they are the key or the value.
    assert_eq!(execute_retry("SET", &[bin("nx"), bin("get")]), Retry::Once);
    for (command, args) in [
        ("SET", vec![bin("k"), bin("v"), bin("nx")]),
        ("SET", vec![bin("k"), bin("v"), bin("GET")]),
        ("INCR", vec![bin("k")]),
        ("DEL", vec![bin("k")]),
        ("EVAL", vec![bin("return 1")]),
        ("PUBLISH", vec![bin("c"), bin("m")]),
        ("SADD", vec![bin("s"), bin("m")]),
    ] {
        assert_eq!(
            execute_retry(command, &args),
            Retry::Never,
            "{command} {args:?}"
        );
    }
}

/// Spin 4.1's `[outbound_redis] max_connections`: guest handles beyond the cap wait at
/// most `acquire_timeout_ms` and then fail naming the setting; a waiter gets the permit a
/// dropped handle gives back; on the wire there is one connection (Redis's own count).
#[tokio::test]
#[ignore = "needs redis-server (run through scripts/test)"]
async fn outbound_redis_max_connections_caps_handles_and_bounds_waiters() {
    let server = test_support::PrivateRedis::start().await;
    let url = server.url();
    let mut config = crate::capabilities::EdgeHostConfig::default();
    config.redis.outbound.max_connections = Some(1);
    config.redis.acquire_timeout_ms = 300;
    let app = Arc::new(AppCapabilities::new(&config).unwrap());
    let component = component_with(&[origin_of(&url).as_str()], Default::default(), &[]);
    let mut first = Request::new(&app, &component);
    let held = first.view().open(url.clone()).await.unwrap().unwrap();

    let mut second = Request::new(&app, &component);
    let started = std::time::Instant::now();
    let refused = second.view().open(url.clone()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        matches!(&refused, Err(v2::Error::Other(m)) if m.contains("[outbound_redis] max_connections")),
        "{refused:?}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1_300),
        "waited {waited:?}"
    );

    let mut second_view = second.view();
    let (opened, ()) = tokio::join!(second_view.open(url.clone()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        v2::HostConnection::drop(&mut first.view(), held)
            .await
            .unwrap();
    });
    let c = opened.unwrap().unwrap();
    let info = second_view
        .execute(borrow(&c), "INFO".into(), vec![bin("clients")])
        .await
        .unwrap()
        .unwrap();
    let text = match &info[..] {
        [v2::RedisResult::Binary(bytes)] => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("INFO: {other:?}"),
    };
    assert!(text.contains("connected_clients:1\r"), "{text}");
}

fn app_with_ca(ca: Option<std::path::PathBuf>) -> Arc<AppCapabilities> {
    let mut config = crate::capabilities::EdgeHostConfig::default();
    config.redis.ca_cert_path = ca;
    Arc::new(AppCapabilities::new(&config).unwrap())
}

/// `rediss://` works through rustls with `[edge_host.redis] ca_cert_path`; a server whose
/// certificate does not chain to it (or, without it, to the system's roots) is refused with
/// an error naming the address and not the password; `#insecure` is refused.
#[tokio::test]
#[ignore = "needs redis-server (run through scripts/test)"]
async fn rediss_is_verified_against_the_configured_ca() {
    let server = test_support::TlsRedis::start();
    let url = server.url();
    let component = component_with(
        &[format!("rediss://{}", server.host()).as_str()],
        Default::default(),
        &[],
    );

    let app = app_with_ca(Some(server.dir.join("ca.crt")));
    let mut request = Request::new(&app, &component);
    let mut view = request.view();
    let c = view.open(url.clone()).await.unwrap().unwrap();
    view.set(borrow(&c), "k".into(), b"over tls".to_vec())
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("SET over TLS: {err:?}"));
    let got = view.get(borrow(&c), "k".into()).await.unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"over tls"[..]));

    let address = format!("rediss://127.0.0.1:{}", server.port);
    for ca in [Some(server.dir.join("other-ca.crt")), None] {
        let app = app_with_ca(ca.clone());
        let mut request = Request::new(&app, &component);
        let refused = request.view().open(url.clone()).await.unwrap();
        let message = match refused {
            Err(v2::Error::Other(message)) => message,
            other => panic!("{ca:?}: {other:?}"),
        };
        eprintln!("refused as expected: {message}");
        assert!(message.contains(&address), "{ca:?}: {message}");
        assert!(message.contains("certificate"), "{ca:?}: {message}");
        assert!(!message.contains("not-a-secret"), "{ca:?}: {message}");
    }

    let insecure = request
        .view()
        .open(format!("{url}/#insecure"))
        .await
        .unwrap();
    assert!(
        matches!(&insecure, Err(v2::Error::Other(m)) if m.contains("#insecure")),
        "{insecure:?}"
    );
}
