//! `--metrics-listen`: Prometheus text on a listener of its own that moves with traffic
//! (requests, traps, timeouts, memory-limit hits, a PostgreSQL pool wait), never on the
//! app's port, and the admin readiness details (`GET /ready`).

use std::io::Write as _;
use std::time::Duration;

use test_support::raw_get;
use test_support::wait::poll_until;

use crate::harness::{accept_gate, build_probe, database_url_and_host, repo_root, Host};

/// The metrics flags every test here starts the host with.
const METRICS: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];

/// One scrape, parsed by a Prometheus text parser (a malformed exposition fails here).
fn scrape(host: &Host) -> prometheus_parse::Scrape {
    let url = host
        .metrics_url()
        .expect("the ready file names the metrics listener");
    let (status, body) = raw_get(&format!("{url}/metrics"))
        .send()
        .expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|err| panic!("/metrics is not Prometheus text ({err}):\n{body}"))
}

/// The value of the first sample of `name` whose labels include `labels`; 0 when absent
/// (a counter that never moved is not exported yet).
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .sum()
}

#[test]
fn metrics_counters_move_with_requests_traps_timeouts_and_memory_limits() {
    let host = Host::start(
        &[
            &METRICS[..],
            &["--request-timeout", "1s", "--max-instance-memory-mb", "64"],
        ]
        .concat(),
        &[],
    );
    let before = scrape(&host);
    let ok = [
        ("route", "/probe/..."),
        ("component", "probe"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(value(&before, "edge_host_http_requests_total", &ok), 0.0);

    assert_eq!(host.get("/probe/headers").0, 200);
    assert_eq!(host.get("/probe/headers").0, 200);
    assert_eq!(host.get("/probe/trap").0, 500);
    assert_eq!(host.get("/probe/busy").0, 504);
    assert_eq!(host.get("/probe/oom").0, 500);
    assert_eq!(host.get("/nothing/here").0, 404);

    let after = scrape(&host);
    let probe = [("component", "probe")];
    assert_eq!(value(&after, "edge_host_http_requests_total", &ok), 2.0);
    let failed = [("route", "/probe/..."), ("status", "500")];
    assert_eq!(value(&after, "edge_host_http_requests_total", &failed), 2.0);
    let cut_off = [("route", "/probe/..."), ("status", "504")];
    assert_eq!(
        value(&after, "edge_host_http_requests_total", &cut_off),
        1.0
    );
    // An unrouted path is counted without its raw path: the route label stays bounded.
    assert_eq!(
        value(
            &after,
            "edge_host_http_requests_total",
            &[("route", ""), ("status", "404")]
        ),
        1.0
    );
    assert!(
        !after
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("nothing"))),
        "a raw request path became a label value"
    );
    assert_eq!(value(&after, "edge_host_timeouts_total", &probe), 1.0);
    // The trap and the OOM both end in a trap; the OOM is also a refused growth.
    assert_eq!(value(&after, "edge_host_traps_total", &probe), 2.0);
    assert!(value(&after, "edge_host_memory_limit_hits_total", &probe) >= 1.0);
    assert_eq!(
        value(&after, "edge_host_instances_created_total", &probe),
        5.0
    );
    assert_eq!(value(&after, "edge_host_instances_in_flight", &probe), 0.0);
    assert_eq!(
        value(&after, "edge_host_instantiation_duration_seconds", &probe),
        5.0
    );
    let latency = [("route", "/probe/..."), ("method", "GET")];
    assert_eq!(
        value(&after, "edge_host_http_request_duration_seconds", &latency),
        5.0
    );
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&after, "process_open_fds", &[]) > 0.0);
}

#[test]
fn metrics_are_not_served_on_the_app_port_nor_without_the_flag() {
    let host = Host::start(&METRICS, &[]);
    let metrics_url = host.metrics_url().expect("metrics listener").to_owned();
    assert_ne!(metrics_url, host.base_url);
    for path in ["/metrics", "/ready"] {
        let (status, body) = host.get(path);
        assert_eq!(status, 404, "{path} on the app port: {body}");
        assert!(!body.contains("edge_host_"), "{body}");
    }
    let plain = Host::start(&[], &[]);
    assert!(
        plain.metrics_url().is_none(),
        "a metrics listener without --metrics-listen"
    );
    assert!(!plain
        .output()
        .iter()
        .any(|line| line.contains("Metrics at")));
}

#[test]
#[ignore = "needs DATABASE_URL (run through scripts/test)"]
fn a_postgres_pool_wait_shows_in_the_pool_gauges_and_the_admin_readiness() {
    let (database, db_host) = database_url_and_host();
    let parsed = url::Url::parse(&database).expect("DATABASE_URL is a URL");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[edge_host.postgres]\nmax_connections = 1\n").unwrap();
    build_probe();
    let host = Host::start_manifest(
        &repo_root().join("host/tests/fixtures/metrics.toml"),
        &[
            &METRICS[..],
            &["--runtime-config-file", config.path().to_str().unwrap()],
        ]
        .concat(),
        &[
            ("SPIN_VARIABLE_DB_URL", database.as_str()),
            ("SPIN_VARIABLE_DB_HOST", db_host.as_str()),
        ],
    );
    let address = format!("postgres://{db_host}{}", parsed.path());
    let pool = [("address", address.as_str())];

    // The only connection is held by a request the test releases...
    let gate = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hold_url = format!(
        "{}/probe/pg/hold?url=http://{}/",
        host.base_url,
        gate.local_addr().unwrap()
    );
    let holder = std::thread::spawn(move || raw_get(&hold_url).send());
    let mut held = accept_gate(&gate, &holder);
    let now = scrape(&host);
    assert_eq!(
        value(&now, "edge_host_postgres_pool_in_use", &pool),
        1.0,
        "labels: {:?}",
        now.samples
            .iter()
            .filter(|s| s.metric.contains("pool"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        value(&now, "edge_host_postgres_pool_max_connections", &pool),
        1.0
    );

    // ...so a second request's checkout waits: the waiters gauge shows it.
    let second_url = format!("{}/probe/pg/after", host.base_url);
    let second = std::thread::spawn(move || raw_get(&second_url).send());
    assert!(
        poll_until(Duration::from_secs(10), || value(
            &scrape(&host),
            "edge_host_postgres_pool_waiters",
            &pool
        ) == 1.0),
        "no waiter seen on the pool"
    );
    // The admin readiness shows the pool's state with the redacted address (no password).
    let (status, body) = raw_get(&format!("{}/ready", host.metrics_url().unwrap()))
        .send()
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["postgres"][0]["address"], address.as_str(), "{body}");
    assert!(
        ready["postgres"][0]["pool"]["waiters"]
            .as_u64()
            .is_some_and(|waiters| waiters >= 1),
        "{body}"
    );
    if let Some(password) = parsed.password() {
        assert!(
            !body.contains(password),
            "the database password leaked: {body}"
        );
    }
    // The probe waits for the held connection too, so it cannot answer "up" now.
    assert_eq!(status, 503, "{body}");

    held.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(held);
    assert_eq!(holder.join().unwrap().unwrap().0, 200);
    assert_eq!(second.join().unwrap().unwrap().0, 200);
    let after = scrape(&host);
    assert_eq!(value(&after, "edge_host_postgres_pool_waiters", &pool), 0.0);
    assert!(value(&after, "edge_host_postgres_acquire_duration_seconds", &pool) >= 2.0);
    assert!(value(&after, "edge_host_postgres_query_duration_seconds", &pool) >= 2.0);
    let (status, body) = raw_get(&format!("{}/ready", host.metrics_url().unwrap()))
        .send()
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_trigger_messages_and_redis_commands_are_counted_per_channel() {
    crate::harness::build_fixture("redisprobe");
    let redis = test_support::PrivateRedis::start().await;
    let (url, host_port) = (redis.url(), redis.host());
    let manifest = repo_root().join("host/tests/fixtures/redisprobe.toml");
    let host = tokio::task::block_in_place(|| {
        Host::start_manifest(
            &manifest,
            &METRICS,
            &[
                ("SPIN_VARIABLE_REDIS_URL", &url),
                ("SPIN_VARIABLE_REDIS_HOST", &host_port),
            ],
        )
    });
    assert!(host.wait_for_output(Duration::from_secs(10), |l| l.contains("subscribed")));
    let round_trip = crate::redis_trigger::round_trip;
    assert_eq!(round_trip(&url, "hello").await.as_deref(), Some("hello"));
    assert_eq!(round_trip(&url, "trap").await, None);
    let channel = [("channel", "probe-in"), ("component", "redisprobe")];
    // The failed handler's count lands once its instance has ended: poll for it.
    let counted = tokio::task::block_in_place(|| {
        poll_until(Duration::from_secs(10), || {
            value(
                &scrape(&host),
                "edge_host_redis_trigger_failures_total",
                &channel,
            ) == 1.0
        })
    });
    assert!(counted, "the trapping handler was not counted as failed");
    let now = tokio::task::block_in_place(|| scrape(&host));
    assert_eq!(
        value(&now, "edge_host_redis_trigger_messages_total", &channel),
        2.0
    );
    // The successful handler published its reply through the Redis capability.
    assert!(value(&now, "edge_host_redis_commands_total", &[]) >= 1.0);
    assert_eq!(value(&now, "edge_host_redis_errors_total", &[]), 0.0);
    assert_eq!(
        value(
            &now,
            "edge_host_instances_created_total",
            &[("component", "redisprobe")]
        ),
        2.0
    );
}
