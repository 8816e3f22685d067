//! Background jobs: the welcome e-mail written to the outbox at registration and delivered
//! by the Redis-triggered notifier to a mail webhook.
//!
//! Every test builds a world of its own: a throwaway database, a private `redis-server`
//! (with keyspace expiry events, as `scripts/services` configures the shared one), a mail
//! sink on loopback that records each POST and answers a scripted sequence of statuses, and
//! one or two `edge-host`s pointed at all three. Nothing is shared with other tests, so
//! counting e-mails is exact.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;

use crate::api::{register, unique};
use crate::harness::{
    eventually, external_base_url, HostOptions, MailSink, PrivateRedis, Received, TestApp,
    TestDatabase,
};

/// What `scripts/services` sets on the shared Redis: expiry events, which carry the
/// notifier's retry timers.
async fn enable_expiry_events(redis: &PrivateRedis) {
    redis
        .command(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"Ex"])
        .await
        .expect("CONFIG SET notify-keyspace-events Ex");
}

// ---------------------------------------------------------------------------------------
// A world of the test's own.

struct JobsWorld {
    db: TestDatabase,
    redis: PrivateRedis,
    sink: MailSink,
    sweep_token: String,
    options: HostOptions,
}

impl JobsWorld {
    /// Database, Redis and sink. Not under `BASE_URL`, which cannot be pointed at a sink
    /// of ours: these tests are `#[ignore]`d for that reason and fail here when run there.
    async fn create(script: &[u16]) -> JobsWorld {
        if let Some(url) = external_base_url() {
            panic!("this test needs an edge-host of its own, but BASE_URL={url} is set");
        }
        let (db, redis, sink) = tokio::join!(
            TestDatabase::create(),
            PrivateRedis::start(),
            MailSink::start(script)
        );
        enable_expiry_events(&redis).await;
        let sweep_token = unique("sweep-token-");
        let options = HostOptions::new()
            .database(&db)
            .redis(&redis)
            .variable("redis_key_prefix", unique("e2e"))
            .variable("mail_webhook_url", sink.url())
            .variable("mail_webhook_origin", sink.origin())
            .variable("jobs_retry_base_seconds", "1")
            .variable("jobs_sweep_token", sweep_token.clone())
            .variable("rate_limit_register_address", "10000/60");
        JobsWorld {
            db,
            redis,
            sink,
            sweep_token,
            options,
        }
    }

    async fn host(&self) -> TestApp {
        self.host_with(|o| o).await
    }

    async fn host_with(&self, f: impl FnOnce(HostOptions) -> HostOptions) -> TestApp {
        TestApp::try_spawn(f(self.options.clone()))
            .await
            .unwrap_or_else(|e| panic!("starting edge-host: {e:#}"))
    }

    /// `status|attempts` of the job for a recipient.
    async fn job_state(&self, to: &str) -> Result<String> {
        self.db
            .query(&format!(
                "SELECT status || '|' || attempts FROM jobs WHERE payload->>'to' = '{to}'"
            ))
            .await
    }

    async fn job_id(&self, to: &str) -> String {
        self.db
            .query(&format!(
                "SELECT id FROM jobs WHERE payload->>'to' = '{to}'"
            ))
            .await
            .expect("job id query")
    }

    /// Writes a pending job directly, as a registration whose wake-up was lost would have.
    async fn insert_job(&self, to: &str) -> String {
        let id = self
            .db
            .query(&format!(
                "INSERT INTO jobs (kind, payload) VALUES ('welcome_email', \
                 jsonb_build_object('to', '{to}', 'subject', 'Welcome', 'body', 'Hello')) \
                 RETURNING id"
            ))
            .await
            .expect("insert a job");
        assert_eq!(id.len(), 36, "job id {id:?}");
        id
    }

    /// Publishes on the jobs channel; returns how many subscribers received the message.
    async fn publish(&self, message: &[u8]) -> u64 {
        let reply = self
            .redis
            .command(&[b"PUBLISH", b"jobs", message])
            .await
            .expect("PUBLISH");
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("PUBLISH answered {reply:?}"))
    }

    async fn sweep(&self, app: &TestApp, token: Option<&str>) -> reqwest::Response {
        let mut request = app.post("/internal/jobs/sweep");
        if let Some(token) = token {
            request = request.header("x-sweep-token", token);
        }
        request.send().await.expect("POST /internal/jobs/sweep")
    }
}

/// Registers a fresh user; returns the (lower-cased) address the e-mail must go to.
async fn register_user(app: &TestApp) -> String {
    let username = unique("mail");
    let body = register(
        app,
        &username,
        &format!("{}@Example.COM", username),
        "correct horse battery",
    )
    .await
    .expect_status(201);
    body["email"].as_str().expect("email").to_string()
}

/// Waits until the sink has accepted `n` e-mails.
async fn wait_for_deliveries(sink: &MailSink, n: usize, limit: Duration) -> Vec<Received> {
    eventually(
        limit,
        &format!("{n} e-mail(s) at the sink"),
        || async move {
            let delivered = sink.delivered();
            ensure!(
                delivered.len() >= n,
                "{} delivered, {} requests",
                delivered.len(),
                sink.received().len()
            );
            Ok(delivered)
        },
    )
    .await
}

/// Waits until the job for `to` is in `expected` state (`status|attempts`).
async fn wait_for_job_state(world: &JobsWorld, to: &str, expected: &str, limit: Duration) {
    eventually(
        limit,
        &format!("job for {to} to be {expected}"),
        || async move {
            let state = world.job_state(to).await?;
            ensure!(state == expected, "job state {state}");
            Ok(())
        },
    )
    .await;
}

/// Publishes a job id until a subscriber (the host's trigger) receives it, then waits until
/// the sink has `n` e-mails. The host (re)subscribes with a backoff, and a message published
/// before that is heard by no one; PUBLISH answers how many subscribers got it, and the
/// world's Redis has no subscriber but its hosts.
async fn publish_until_delivered(world: &JobsWorld, id: &str, n: usize, limit: Duration) {
    eventually(limit, "the trigger to hear a job", || async move {
        let receivers = world.publish(id.as_bytes()).await;
        ensure!(receivers > 0, "no subscriber yet");
        Ok(())
    })
    .await;
    wait_for_deliveries(&world.sink, n, limit).await;
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn registration_sends_exactly_one_welcome_email_keyed_by_the_job_id() {
    let world = JobsWorld::create(&[]).await;
    let app = world.host().await;
    let to = register_user(&app).await;
    assert!(to.ends_with("@example.com"), "stored lower-cased: {to}");

    let delivered = wait_for_deliveries(&world.sink, 1, Duration::from_secs(20)).await;
    let mail = &delivered[0];
    assert_eq!(
        (mail.method.as_str(), mail.path.as_str()),
        ("POST", "/mail")
    );
    assert!(
        mail.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json")),
        "{mail:?}"
    );
    assert_eq!(mail.body["to"], to.as_str(), "{mail:?}");
    assert!(mail.body["subject"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(mail.body["body"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        mail.idempotency_key.as_deref(),
        Some(world.job_id(&to).await.as_str()),
        "the idempotency key is the job id"
    );
    wait_for_job_state(&world, &to, "done|1", Duration::from_secs(10)).await;

    // A sweep finds nothing left to do, and nothing more reaches the sink.
    let resp = world.sweep(&app, Some(&world.sweep_token)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let tally: Value = resp.json().await.expect("sweep body");
    assert_eq!(tally["delivered"], 0, "{tally}");
    assert_eq!(world.sink.received().len(), 1, "exactly one e-mail");
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_failing_webhook_gets_the_email_once_after_backoff_retries() {
    let world = JobsWorld::create(&[500, 500, 200]).await;
    let app = world.host().await;
    let to = register_user(&app).await;

    // No sweep here: the retries come from the notifier's retry timers (Redis expiry
    // events) after 1 s and 2 s of backoff.
    let delivered = wait_for_deliveries(&world.sink, 1, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["to"], to.as_str());
    let received = world.sink.received();
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, vec![500, 500, 200], "three attempts, in order");
    let job_id = world.job_id(&to).await;
    assert!(
        received
            .iter()
            .all(|r| r.idempotency_key.as_deref() == Some(job_id.as_str())),
        "every attempt carries the same idempotency key"
    );
    wait_for_job_state(&world, &to, "done|3", Duration::from_secs(10)).await;
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_job_out_of_attempts_is_marked_failed_with_its_last_error() {
    let world = JobsWorld::create(&[503, 503]).await;
    let app = world
        .host_with(|o| o.variable("jobs_max_attempts", "2"))
        .await;
    let to = register_user(&app).await;
    wait_for_job_state(&world, &to, "failed|2", Duration::from_secs(30)).await;
    let error = world
        .db
        .query(&format!(
            "SELECT last_error FROM jobs WHERE payload->>'to' = '{to}'"
        ))
        .await
        .expect("last_error");
    assert!(error.contains("503"), "last_error {error:?}");
    // A failed job is never claimed again.
    let resp = world.sweep(&app, Some(&world.sweep_token)).await;
    let tally: Value = resp.json().await.expect("sweep body");
    assert_eq!(tally["delivered"], 0, "{tally}");
    assert_eq!(world.sink.received().len(), 2);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_registration_while_redis_is_down_is_delivered_after_it_returns() {
    let mut world = JobsWorld::create(&[]).await;
    let app = world.host().await;
    world.redis.stop().await;

    // Registration still succeeds (the limiter fails open; the publish fails and is logged),
    // and the job waits in the outbox.
    let to = register_user(&app).await;
    assert_eq!(world.job_state(&to).await.unwrap(), "pending|0");

    world.redis.restart().await;
    enable_expiry_events(&world.redis).await;
    assert!(
        world.sink.received().is_empty(),
        "nothing was delivered yet"
    );

    // The sweep is the catch-up path: no new registration, no message needed. It refuses
    // callers without the token.
    let resp = world.sweep(&app, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = world.sweep(&app, Some("wrong-token")).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(world.sink.received().is_empty());
    let resp = world.sweep(&app, Some(&world.sweep_token)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let tally: Value = resp.json().await.expect("sweep body");
    assert_eq!(tally["delivered"], 1, "{tally}");
    let delivered = wait_for_deliveries(&world.sink, 1, Duration::from_secs(5)).await;
    assert_eq!(delivered[0].body["to"], to.as_str());
    assert_eq!(world.job_state(&to).await.unwrap(), "done|1");

    // The subscription came back too: a job published now is delivered by the trigger.
    // Published until heard, since the host reconnects with a backoff.
    let late = format!("{}@example.com", unique("late"));
    let id = world.insert_job(&late).await;
    publish_until_delivered(&world, &id, 2, Duration::from_secs(30)).await;
    assert_eq!(world.sink.received().len(), 2, "no duplicates");
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn jobs_whose_wakeup_was_lost_are_drained_by_the_next_message() {
    let world = JobsWorld::create(&[]).await;
    let app = world.host().await;
    // Three jobs committed while no notifier listened (their messages went nowhere).
    let mut backlog = Vec::new();
    for _ in 0..3 {
        let to = format!("{}@example.com", unique("backlog"));
        world.insert_job(&to).await;
        backlog.push(to);
    }
    // One new registration: its message delivers its own job and drains the backlog.
    let to = register_user(&app).await;
    let delivered = wait_for_deliveries(&world.sink, 4, Duration::from_secs(20)).await;
    let recipients: HashSet<&str> = delivered
        .iter()
        .filter_map(|r| r.body["to"].as_str())
        .collect();
    for expected in backlog.iter().chain([&to]) {
        assert!(recipients.contains(expected.as_str()), "{expected} missing");
    }
    assert_eq!(world.sink.received().len(), 4, "no duplicates");
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_burst_of_200_registrations_on_two_replicas_sends_200_distinct_emails() {
    let world = JobsWorld::create(&[]).await;
    // Two hosts: both notifiers hear every message, so only the claim prevents duplicates.
    let (a, b) = tokio::join!(world.host(), world.host());
    let apps = Arc::new([a, b]);
    let permits = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let apps = apps.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            register_user(&apps[i % 2]).await
        }));
    }
    let mut expected = HashSet::new();
    for task in tasks {
        expected.insert(task.await.expect("registration task"));
    }
    assert_eq!(expected.len(), 200);

    let delivered = wait_for_deliveries(&world.sink, 200, Duration::from_secs(120)).await;
    let received = world.sink.received();
    let keys: HashSet<String> = received
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    let recipients: HashSet<String> = delivered
        .iter()
        .filter_map(|r| r.body["to"].as_str().map(str::to_string))
        .collect();
    assert_eq!(recipients, expected, "every address got its e-mail");
    assert_eq!(keys.len(), 200, "200 distinct jobs");
    assert_eq!(received.len(), 200, "no duplicate deliveries");
    let done = world
        .db
        .query("SELECT count(*) FROM jobs WHERE status = 'done' AND attempts = 1")
        .await
        .expect("count");
    assert_eq!(done, "200");
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn a_handler_that_fails_or_traps_does_not_stop_the_next_message() {
    let world = JobsWorld::create(&[]).await;
    // A small memory limit, so a message larger than it makes the guest's allocator
    // trap while the host copies the payload in: a real trap, without a test-only path.
    let app = world
        .host_with(|o| {
            o.arg("--max-instance-memory-mb")
                .arg("16")
                .arg("--log-format")
                .arg("json")
        })
        .await;
    // Let the 24 MiB message through Redis's per-subscriber output buffer limit.
    world
        .redis
        .command(&[
            b"CONFIG",
            b"SET",
            b"client-output-buffer-limit",
            b"pubsub 0 0 0",
        ])
        .await
        .expect("CONFIG SET client-output-buffer-limit");
    // The subscription is up once a message is heard: the first job proves it.
    let first = format!("{}@example.com", unique("first"));
    let id = world.insert_job(&first).await;
    publish_until_delivered(&world, &id, 1, Duration::from_secs(30)).await;

    // A handler error, then a trap.
    assert_eq!(world.publish(b"definitely not a job id").await, 1);
    assert_eq!(world.publish(&vec![b'x'; 24 * 1024 * 1024]).await, 1);
    // The host ran both and logged each failure with the channel (one JSON line per event,
    // as a multi-line trap message would otherwise spread over lines): the handler's error
    // ("handler returned ...", after the notifier's own line naming the bad message) and
    // the trap ("... wasm trap: ...").
    eventually(
        Duration::from_secs(30),
        "the host to log both failed messages",
        || async {
            let output = app.output();
            let failed: Vec<String> = output
                .iter()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|event| event["level"] == "ERROR" && event["channel"] == "jobs")
                .filter_map(|event| event["message"].as_str().map(str::to_owned))
                .filter(|message| message.starts_with("message handler failed"))
                .collect();
            ensure!(
                output.iter().any(|line| line
                    .contains("message is neither a job id nor a job retry key")
                    && line.contains("definitely not a job id")),
                "the notifier did not report the malformed message"
            );
            ensure!(
                failed.iter().any(|line| line.contains("handler returned")),
                "no handler error logged: {failed:?}"
            );
            ensure!(
                failed.iter().any(|line| line.contains("wasm trap")),
                "no trap logged: {failed:?}"
            );
            Ok(())
        },
    )
    .await;
    let after = format!("{}@example.com", unique("after"));
    let id = world.insert_job(&after).await;
    assert_eq!(world.publish(id.as_bytes()).await, 1, "still subscribed");
    let delivered = wait_for_deliveries(&world.sink, 2, Duration::from_secs(30)).await;
    assert_eq!(delivered[1].body["to"], after.as_str());
    // The HTTP side of the same component is unaffected too.
    let resp = world.sweep(&app, Some(&world.sweep_token)).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn leased_and_finished_jobs_are_not_sent_again_until_a_lease_ends() {
    let world = JobsWorld::create(&[]).await;
    let app = world.host().await;
    // A job claimed by a worker that died mid-delivery: its lease runs two more minutes.
    let leased = format!("{}@example.com", unique("leased"));
    let leased_id = world.insert_job(&leased).await;
    world
        .db
        .query(&format!(
            "UPDATE jobs SET attempts = 1, next_attempt_at = now() + interval '120 seconds' \
             WHERE id = '{leased_id}'"
        ))
        .await
        .expect("lease the job");
    // A job already delivered.
    let done = format!("{}@example.com", unique("done"));
    let done_id = world.insert_job(&done).await;
    world
        .db
        .query(&format!(
            "UPDATE jobs SET status = 'done', attempts = 1 WHERE id = '{done_id}'"
        ))
        .await
        .expect("finish the job");

    // Messages naming them, a sweep, and a fresh job (whose message drains) send neither.
    world.publish(leased_id.as_bytes()).await;
    world.publish(done_id.as_bytes()).await;
    let fresh = format!("{}@example.com", unique("fresh"));
    let fresh_id = world.insert_job(&fresh).await;
    publish_until_delivered(&world, &fresh_id, 1, Duration::from_secs(30)).await;
    let resp = world.sweep(&app, Some(&world.sweep_token)).await;
    let tally: Value = resp.json().await.expect("sweep body");
    assert_eq!(tally["delivered"], 0, "{tally}");
    let recipients: Vec<Value> = world
        .sink
        .received()
        .iter()
        .map(|r| r.body["to"].clone())
        .collect();
    assert_eq!(recipients, vec![Value::from(fresh.as_str())]);

    // Once the lease is over (as if two minutes passed), the job is due again.
    world
        .db
        .query(&format!(
            "UPDATE jobs SET next_attempt_at = now() - interval '1 second' WHERE id = '{leased_id}'"
        ))
        .await
        .expect("end the lease");
    let resp = world.sweep(&app, Some(&world.sweep_token)).await;
    let tally: Value = resp.json().await.expect("sweep body");
    // The sweep sends it, unless a message for the fresh job that was still being handled
    // got there first (each message's handler also claims due jobs, `DRAIN_BATCH`):
    // either way it goes out exactly once, with the job's idempotency key.
    let by_sweep = tally["delivered"].as_u64().expect("a delivered count");
    assert!(by_sweep <= 1, "{tally}");
    if by_sweep == 0 {
        eventually(Duration::from_secs(10), "the drain's delivery", || async {
            match world.sink.delivered().len() {
                2 => Ok(()),
                n => anyhow::bail!("{n} deliveries"),
            }
        })
        .await;
    }
    let delivered = world.sink.delivered();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1].body["to"], leased.as_str());
    assert_eq!(
        delivered[1].idempotency_key.as_deref(),
        Some(leased_id.as_str())
    );
    assert_eq!(world.job_state(&leased).await.unwrap(), "done|2");
    assert_eq!(world.job_state(&done).await.unwrap(), "done|1");
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn the_sweep_route_is_off_without_a_token_and_post_only() {
    let world = JobsWorld::create(&[]).await;
    let app = world
        .host_with(|o| o.variable("jobs_sweep_token", ""))
        .await;
    let resp = world.sweep(&app, Some("")).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("problem body");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:todo-api:problem:not-configured");
    let resp = app.get("/internal/jobs/sweep").send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
}
