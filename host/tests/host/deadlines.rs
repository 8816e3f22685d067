//! `--request-timeout` (issue 10, item 3): a component that overruns it is cut off at the
//! deadline, CPU loops included, and answered with 504 problem+json; other requests go on.

use std::time::{Duration, Instant};

use crate::harness::Host;

#[test]
fn a_busy_loop_gets_504_problem_json_at_the_deadline_while_other_routes_answer() {
    const DEADLINE: Duration = Duration::from_secs(1);
    let host = Host::start(&["--request-timeout", "1s"], &[]);
    let busy_url = format!("{}/probe/busy", host.base_url);
    let started = Instant::now();
    let busy = std::thread::spawn(move || {
        let answer = test_support::raw_get(&busy_url).send();
        (answer, started.elapsed())
    });
    // While the loop spins, the host and its other routes are unaffected.
    let mut answered = 0;
    while !busy.is_finished() {
        let asked = Instant::now();
        let (status, body) = host.get("/probe/headers");
        assert_eq!(status, 200, "{body}");
        assert!(
            asked.elapsed() < DEADLINE,
            "another route waited {:?}",
            asked.elapsed()
        );
        answered += 1;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the loop was never cut off"
        );
    }
    let (answer, elapsed) = busy.join().unwrap();
    let (status, body) = answer.expect("the busy request got no answer");
    assert_eq!(status, 504, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).expect("problem+json body");
    assert_eq!(problem["status"], 504, "{body}");
    assert_eq!(
        problem["type"], "urn:edge-host:problem:gateway-timeout",
        "{body}"
    );
    eprintln!("busy loop answered after {elapsed:?}; {answered} other requests meanwhile");
    assert!(elapsed >= DEADLINE, "cut off early: {elapsed:?}");
    // The deadline plus one 10 ms epoch tick, plus what a debug-built host on a shared
    // 2-core machine takes to accept, instantiate and answer.
    assert!(
        elapsed < DEADLINE + Duration::from_millis(10) + Duration::from_millis(500),
        "cut off late: {elapsed:?}"
    );
    assert!(answered > 0, "no other request ran while the loop spun");
}

#[test]
fn the_runtime_config_overrides_the_timeout_per_component() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[edge_host.component.probe]\nrequest_timeout_ms = 300\n",
    )
    .unwrap();
    let host = Host::start(
        &[
            "--request-timeout",
            "60s",
            "--runtime-config-file",
            config.to_str().unwrap(),
        ],
        &[],
    );
    let started = Instant::now();
    let (status, body) = host.get("/probe/busy");
    let elapsed = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "the component's own 300 ms deadline did not apply: {elapsed:?}"
    );
}

/// A Redis message whose handler overruns the deadline is cut off, logged and counted; the
/// subscription goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_handler_past_the_deadline_is_cut_off_logged_and_counted() {
    crate::harness::build_fixture("redisprobe");
    let redis = test_support::PrivateRedis::start().await;
    let url = redis.url();
    let manifest = crate::harness::repo_root().join("host/tests/fixtures/redisprobe.toml");
    let host = tokio::task::block_in_place(|| {
        Host::start_manifest(
            &manifest,
            &["--request-timeout", "500ms", "--log-format", "json"],
            &[
                ("SPIN_VARIABLE_REDIS_URL", &url),
                ("SPIN_VARIABLE_REDIS_HOST", &redis.host()),
            ],
        )
    });
    assert!(host.wait_for_output(Duration::from_secs(10), |l| l.contains("subscribed")));
    // `hold:` jobs wait for a release key that never comes: both overrun 500 ms.
    for job in ["hold:slow1", "hold:slow2"] {
        let published = redis
            .command(&[b"PUBLISH", b"probe-in", job.as_bytes()])
            .await
            .unwrap();
        assert_eq!(published, ":1");
    }
    let cut_off = |l: &str| l.contains("message handler cut off");
    assert!(host.wait_for_output_count(Duration::from_secs(10), 2, cut_off));
    let lines: Vec<String> = host.output().into_iter().filter(|l| cut_off(l)).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("deadline_exceeded_total") && l.contains('2')),
        "{lines:?}"
    );
}
