//! The Redis trigger against the redisprobe component and a private redis-server.

use std::time::Duration;

use futures::StreamExt;
use test_support::PrivateRedis;

use crate::harness::{build_fixture, repo_root, Host};

/// Publishes `message` on `probe-in` and waits for it on `probe-out`.
pub async fn round_trip(redis_url: &str, message: &str) -> Option<String> {
    let client = redis::Client::open(redis_url).unwrap();
    let mut replies = client.get_async_pubsub().await.unwrap();
    replies.subscribe("probe-out").await.unwrap();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("probe-in")
        .arg(message)
        .query_async(&mut publisher)
        .await
        .unwrap();
    let mut stream = replies.on_message();
    let reply = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    reply
        .ok()
        .flatten()
        .map(|msg| msg.get_payload::<String>().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_run_the_component_and_survive_traps_and_restarts() {
    build_fixture("redisprobe");
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let host_port = redis.host();
    let manifest = repo_root().join("host/tests/fixtures/redisprobe.toml");
    let host = tokio::task::block_in_place(|| {
        Host::start_manifest(
            &manifest,
            &[],
            &[
                ("SPIN_VARIABLE_REDIS_URL", &url),
                ("SPIN_VARIABLE_REDIS_HOST", &host_port),
            ],
        )
    });
    let subscribed = |line: &str| line.contains("subscribed");
    assert!(host.wait_for_output(Duration::from_secs(10), subscribed));

    assert_eq!(round_trip(&url, "hello").await.as_deref(), Some("hello"));

    // A trapping handler is logged; the next message is still handled.
    assert_eq!(round_trip(&url, "trap").await, None);
    assert!(host.wait_for_output(Duration::from_secs(5), |l| l
        .contains("message handler failed")));
    assert_eq!(
        round_trip(&url, "after-trap").await.as_deref(),
        Some("after-trap")
    );

    // Redis goes away and comes back: the subscription is re-established by itself.
    redis.stop().await;
    redis.restart().await;
    assert!(host.wait_for_output_count(Duration::from_secs(20), 2, subscribed));
    // The component's own outbound connection may fail once while it reconnects, so
    // allow a few attempts; the subscription itself must already be back.
    let mut delivered = false;
    for attempt in 0..5 {
        let message = format!("after-restart-{attempt}");
        if round_trip(&url, &message).await.as_deref() == Some(message.as_str()) {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no message was handled after Redis restarted");
}
