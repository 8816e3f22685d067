//! The `notifier` component: delivers the job outbox (`common::jobs`), starting today with
//! the welcome e-mail written at registration.
//!
//! Three ways a job reaches it, all handled by the same claim-deliver-record step:
//!
//! - **Redis, jobs channel** (`[[trigger.redis]] channel = "{{ jobs_channel }}"`): the
//!   registering `auth` instance publishes the job id after the commit. The handler claims
//!   that job, delivers it, then drains up to [`worker::DRAIN_BATCH`] older due jobs, so a
//!   backlog left while no notifier listened is worked off as soon as messages flow again.
//! - **Redis, expiry events** (`__keyevent@0__:expired`): a failed attempt sets a retry
//!   key whose TTL is the backoff delay (`common::jobs::retry_key`); Redis announces its
//!   expiry (with `notify-keyspace-events Ex`) and the job is retried on time without any
//!   new registration. Events for other keys are ignored without touching the database.
//! - **HTTP, `POST /internal/jobs/sweep`**: drains every due job (bounded by count and
//!   time). Called once a minute by a Kubernetes CronJob and by `scripts/up` locally; it is
//!   the catch-up path that needs nothing from Redis, for jobs whose wake-up was lost
//!   entirely (Redis down at registration, a notifier outage, keyspace events disabled).
//!   It requires the `x-sweep-token` header to equal the secret `jobs_sweep_token`
//!   (compared in constant time); without a configured token it answers 503. Calls are
//!   rate limited per client address (`rate_limit_sweep_address`, 30/60 s) before the
//!   token is compared, so it cannot be guessed at speed.
//!
//! Why this mix and not a scheduler: the host stays generic (it only knows Redis and HTTP
//! triggers, as Spin does), and `spin.toml` uses no trigger Spin 3.6 or SpinKube lacks.
//!
//! Host round trips: an expiry event for a key that is not a job's (cache pages and
//! rate-limit windows expire all the time) opens nothing. A job message or a sweep opens
//! one PostgreSQL checkout (claim, record, drain) and no Redis connection unless an attempt
//! fails and its retry timer is armed (then one, shared by the rest of the run); a sweep
//! always opens that one Redis connection, for its rate limit (1 `EVAL`).
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p notifier`.

mod worker;

use std::time::Instant;

use common::config::{Component, Config, RateLimitName, VariableSource};
use common::http::{self, check_rate_limit, Ctx};
use common::jobs::{self, JobMessage};
use common::rate_limit::Counter;
use common::store::{Redis, SpinVariables};
use common::{log, ApiError};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{http_component, redis_component};

use worker::{Tally, Worker, DRAIN_BATCH};

/// Most jobs one sweep handles, so one call stays well inside the host's execution
/// timeout; the next sweep (a minute later) continues.
const SWEEP_MAX_JOBS: u32 = 2_000;
/// Jobs claimed per round of a sweep.
const SWEEP_BATCH: u32 = 50;
/// Time after which a sweep stops claiming new batches (the CronJob's curl waits 40 s).
const SWEEP_BUDGET_SECONDS: u64 = 25;

/// A message was not handled; the reason is in the JSON log line the handler wrote, so the
/// host's own log of the error does not repeat (possibly sensitive) details.
#[derive(Debug)]
struct NotHandled;

impl std::fmt::Display for NotHandled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("notifier: message not handled (the reason is in the notifier's JSON log line)")
    }
}

#[redis_component]
fn on_message(message: Vec<u8>) -> Result<(), NotHandled> {
    handle_message(&SpinVariables, &message)
}

fn log_error(msg: &str, detail: &str) {
    log::event(
        "error",
        msg,
        &[
            ("component", "notifier"),
            ("detail", &log::sanitize(detail)),
        ],
    );
}

/// One Redis message: a job id (jobs channel) or a key name (expiry events).
fn handle_message(vars: &dyn VariableSource, message: &[u8]) -> Result<(), NotHandled> {
    let config = Config::new(Component::Notifier, vars);
    let prefix = match config.store() {
        Ok(store) => store.redis_key_prefix,
        Err(e) => {
            log_error("notifier misconfigured", &e.to_string());
            return Err(NotHandled);
        }
    };
    let id = match jobs::parse_message(&prefix, message) {
        JobMessage::Job(id) => id,
        // Some other key expired (cache pages, rate-limit windows): not ours.
        JobMessage::OtherKey => return Ok(()),
        JobMessage::Malformed => {
            let shown = String::from_utf8_lossy(&message[..message.len().min(64)]).into_owned();
            log_error(
                "message is neither a job id nor a job retry key",
                &format!("{} bytes: {shown:?}", message.len()),
            );
            return Err(NotHandled);
        }
    };
    let result = Worker::open(&config).and_then(|worker| {
        worker.run_one(&id)?;
        worker.drain(DRAIN_BATCH)
    });
    result.map(|_| ()).map_err(|e| {
        // The job keeps its lease and becomes due again when it ends: nothing is lost.
        log_error(&format!("job {} not handled", id.as_str()), &e.to_string());
        NotHandled
    })
}

#[http_component]
fn handle_http(req: Request) -> Response {
    http::serve(req, Component::Notifier, &SpinVariables, route)
}

fn route(ctx: &mut Ctx, req: &Request) -> Result<Response, ApiError> {
    if req.path() != "/internal/jobs/sweep" {
        return Err(ApiError::NotFound);
    }
    ctx.route = "/internal/jobs/sweep";
    if *req.method() != Method::Post {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    // Counted before the token is looked at, so guessing it is rate limited too.
    let store = ctx.config.store()?;
    let redis = Redis::new(&store.redis_url);
    let counter = Counter::new(
        &store.redis_key_prefix,
        "sweep-address",
        &ctx.client_addr,
        ctx.config.rate_limit(RateLimitName::SweepAddress)?,
    );
    check_rate_limit(ctx, &redis, &[counter], None)?;
    authorize_sweep(ctx, req)?;
    let tally = sweep(&Worker::open_with(&ctx.config, redis)?)?;
    http::json(200, &tally)
}

/// Checks `x-sweep-token` against `jobs_sweep_token` in constant time. No token configured
/// means the route is off (503), never open.
fn authorize_sweep(ctx: &Ctx, req: &Request) -> Result<(), ApiError> {
    let expected = ctx
        .config
        .jobs_sweep_token()?
        .ok_or(ApiError::NotConfigured("jobs_sweep_token is not set"))?;
    let presented = req
        .header("x-sweep-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if jobs::secrets_match(presented, expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::InvalidAccessToken(
            "the x-sweep-token header is missing or wrong",
        ))
    }
}

/// Drains due jobs in batches until none is left, or the count or time budget is spent.
fn sweep(worker: &Worker) -> Result<Tally, ApiError> {
    let started = Instant::now();
    let mut tally = Tally::default();
    while tally.total() < SWEEP_MAX_JOBS && started.elapsed().as_secs() < SWEEP_BUDGET_SECONDS {
        let round = worker.drain(SWEEP_BATCH.min(SWEEP_MAX_JOBS - tally.total()))?;
        tally.delivered += round.delivered;
        tally.retrying += round.retrying;
        tally.failed += round.failed;
        if round.total() == 0 {
            break;
        }
    }
    worker.remove_expired()?;
    Ok(tally)
}
