//! Delivering jobs: claim (a lease, see `common::jobs`), send, record the outcome.
//!
//! Every outcome is written back to the job row, so the table always says what happened:
//! `done`, `pending` with the next attempt time and `last_error`, or `failed`.

use common::config::Config;
use common::domain::Uuid;
use common::jobs::{self, AfterFailure, ClaimedJob, MailMessage, RetryPolicy};
use common::repo;
use common::store::{Db, Redis};
use common::{log, ApiError};
use serde::Serialize;
use spin_sdk::http::{Method, Request, Response};

/// Jobs the drain claims on each message, besides the message's own job: enough to work
/// off a backlog quickly once messages flow again, small enough that one message's
/// instance stays short (each job is one HTTP POST).
pub const DRAIN_BATCH: u32 = 10;

/// Extra time on a retry timer beyond the job's `next_attempt_at`, so the expiry event
/// never arrives before the job is due (Redis and PostgreSQL clocks may differ slightly).
const RETRY_TIMER_MARGIN_MS: u64 = 250;

/// What happened to one claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent (or logged) and marked `done`.
    Delivered,
    /// The attempt failed; the job is due again after this many seconds.
    Retrying(u32),
    /// Attempts used up (or undeliverable): marked `failed`.
    Failed,
}

/// Counts of outcomes, the sweep route's answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Jobs delivered.
    pub delivered: u32,
    /// Jobs that failed this attempt and will be retried.
    pub retrying: u32,
    /// Jobs given up on.
    pub failed: u32,
}

impl Tally {
    /// Adds one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Retrying(_) => self.retrying += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    /// Jobs handled in total.
    pub fn total(&self) -> u32 {
        self.delivered + self.retrying + self.failed
    }
}

/// One instance's worker: its connections and settings, loaded once per message/request.
pub struct Worker {
    db: Db,
    redis: Redis,
    redis_key_prefix: String,
    policy: RetryPolicy,
    /// Where e-mails go (`mail_webhook_url`); `None`: they are logged, for development.
    webhook_url: Option<String>,
}

impl Worker {
    /// Reads the settings and opens PostgreSQL (required). Redis is used for retry timers
    /// only, so its connection is opened when the first timer is armed (most runs arm none
    /// and open no Redis connection); a failure there is logged when a timer cannot be set.
    pub fn open(config: &Config) -> Result<Self, ApiError> {
        let store = config.store()?;
        Self::open_with(config, Redis::new(&store.redis_url))
    }

    /// As [`Worker::open`], reusing a Redis handle the request already has (the sweep's
    /// rate limit), so the run opens at most one Redis connection.
    pub fn open_with(config: &Config, redis: Redis) -> Result<Self, ApiError> {
        let store = config.store()?;
        Ok(Self {
            db: Db::open(&store.db_url)?,
            redis,
            redis_key_prefix: store.redis_key_prefix,
            policy: config.retry_policy()?,
            webhook_url: config.mail_webhook_url()?,
        })
    }

    /// Handles the job a message named, if it is still pending and due (another replica,
    /// an earlier drain or the sweep may have taken it: then there is nothing to do).
    pub fn run_one(&self, id: &Uuid) -> Result<Option<Outcome>, ApiError> {
        match repo::claim_job_by_id(&self.db, id)? {
            Some(job) => Ok(Some(self.process(&job)?)),
            None => Ok(None),
        }
    }

    /// Claims up to `limit` due jobs and handles them.
    pub fn drain(&self, limit: u32) -> Result<Tally, ApiError> {
        let mut tally = Tally::default();
        for job in repo::claim_due_jobs(&self.db, limit)? {
            tally.add(self.process(&job)?);
        }
        Ok(tally)
    }

    /// Deletes what outlived its retention: `Idempotency-Key`s after 24 hours
    /// (`common::idempotency`) and todo tombstones after 31 days (`updated_since` refuses
    /// anything older than 30). Part of every sweep (the CronJob runs one a minute). How
    /// many rows went.
    pub fn remove_expired(&self) -> Result<u64, ApiError> {
        Ok(repo::delete_expired_idempotency_keys(&self.db)?
            + repo::delete_old_tombstones(&self.db)?)
    }

    /// Delivers a claimed job and records the outcome.
    fn process(&self, job: &ClaimedJob) -> Result<Outcome, ApiError> {
        let result = match job.kind.as_str() {
            jobs::WELCOME_EMAIL => match serde_json::from_str::<MailMessage>(&job.payload) {
                Ok(mail) => self.send_mail(job, &mail),
                Err(e) => {
                    // A payload this code cannot read will not improve with retries.
                    let error = format!("unreadable payload: {e}");
                    repo::mark_job_failed(&self.db, job, &error)?;
                    self.log_outcome("error", "job failed", job, &error);
                    return Ok(Outcome::Failed);
                }
            },
            other => {
                let error = format!("unknown job kind `{}`", log::sanitize(other));
                repo::mark_job_failed(&self.db, job, &error)?;
                self.log_outcome("error", "job failed", job, &error);
                return Ok(Outcome::Failed);
            }
        };
        match result {
            Ok(()) => {
                repo::mark_job_done(&self.db, &job.id)?;
                self.log_outcome("info", "job delivered", job, "");
                Ok(Outcome::Delivered)
            }
            Err(error) => match self.policy.after_failure(job.attempts) {
                AfterFailure::RetryIn(seconds) => {
                    repo::reschedule_job(&self.db, job, seconds, &error)?;
                    self.arm_retry_timer(job, seconds);
                    self.log_outcome("warn", "job attempt failed, will retry", job, &error);
                    Ok(Outcome::Retrying(seconds))
                }
                AfterFailure::GiveUp => {
                    repo::mark_job_failed(&self.db, job, &error)?;
                    self.log_outcome("error", "job failed: attempts used up", job, &error);
                    Ok(Outcome::Failed)
                }
            },
        }
    }

    /// Sets the job's retry key to expire when the job is due again; its expiry event
    /// brings the job back to a notifier without waiting for the sweep. Best effort: with
    /// Redis down (or keyspace events disabled) the sweep still finds the job.
    fn arm_retry_timer(&self, job: &ClaimedJob, seconds: u32) {
        let key = jobs::retry_key(&self.redis_key_prefix, &job.id);
        let ttl_ms = u64::from(seconds) * 1000 + RETRY_TIMER_MARGIN_MS;
        if let Err(e) = self.redis.set_px(&key, b"1", ttl_ms) {
            log::event(
                "warn",
                "retry timer not set; the sweep will pick the job up",
                &[
                    ("component", "notifier"),
                    ("job_id", job.id.as_str()),
                    ("detail", &log::sanitize(&e)),
                ],
            );
        }
    }

    /// POSTs the e-mail to the webhook with the job id as `Idempotency-Key`; any 2xx is
    /// success. Without a webhook the e-mail is logged instead.
    fn send_mail(&self, job: &ClaimedJob, mail: &MailMessage) -> Result<(), String> {
        let Some(url) = &self.webhook_url else {
            log::event(
                "info",
                "e-mail (no mail_webhook_url configured: logged, not sent)",
                &[
                    ("component", "notifier"),
                    ("job_id", job.id.as_str()),
                    ("to", &mail.to),
                    ("subject", &mail.subject),
                    ("body", &mail.body),
                ],
            );
            return Ok(());
        };
        let body = serde_json::to_vec(mail).map_err(|e| format!("encoding the e-mail: {e}"))?;
        let request = Request::builder()
            .method(Method::Post)
            .uri(url.as_str())
            .header("content-type", "application/json")
            .header("idempotency-key", job.id.as_str())
            .body(body)
            .build();
        // A nested executor run is fine here: the handler is synchronous and this is the
        // only future in flight.
        let response: Response = spin_sdk::http::run(spin_sdk::http::send(request))
            .map_err(|e| format!("webhook request failed: {}", log::sanitize(&e.to_string())))?;
        let status = *response.status();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("webhook answered {status}"))
        }
    }

    fn log_outcome(&self, level: &str, msg: &str, job: &ClaimedJob, error: &str) {
        let attempts = job.attempts.to_string();
        let mut fields = vec![
            ("component", "notifier"),
            ("job_id", job.id.as_str()),
            ("kind", job.kind.as_str()),
            ("attempts", attempts.as_str()),
        ];
        if !error.is_empty() {
            fields.push(("error", error));
        }
        log::event_with_numbers(level, msg, &fields, &["attempts"]);
    }
}
