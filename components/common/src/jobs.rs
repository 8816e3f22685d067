//! Background jobs: the transactional outbox in PostgreSQL (`jobs` table, migration 0002)
//! and everything the producer (`auth`) and the worker (`notifier`) agree on.
//!
//! The guarantee rests on the table, not on Redis: a job row is written in the same
//! statement as its cause (see `crate::repo::insert_user`), so it exists exactly when the
//! user does. The job id published on Redis afterwards is only a wake-up call; a lost
//! message (no subscriber, Redis down) delays the job until the next wake-up, the retry
//! timer or the sweep, and never loses it.
//!
//! Claims are leases: claiming a job keeps it `pending`, counts the attempt and moves
//! `next_attempt_at` [`LEASE_SECONDS`] ahead, in one statement that skips rows another
//! worker has locked. So several notifier replicas (pub/sub gives each of them every
//! message) never deliver one job at the same time, a worker that dies mid-delivery only
//! delays its job until the lease ends, and `done`/`failed` jobs are never claimed again.
//! Delivery is at least once: a worker dying after the e-mail left but before it marked
//! the job done causes a second POST with the same `Idempotency-Key` (the job id), which
//! is what the receiving service de-duplicates on.
//!
//! The pure parts (payloads, backoff, message parsing, settings) are tested natively.

use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue;

use crate::config::{self, ConfigError, VariableSource};
use crate::domain::{Email, Username, Uuid};
use crate::error::ApiError;
use crate::store::{text, Db, RowReader};

/// The `kind` of the welcome e-mail job (the only kind so far; the table's CHECK lists it).
pub const WELCOME_EMAIL: &str = "welcome_email";

/// How long a claim keeps a job from other workers, in seconds. Longer than the host's
/// execution timeout (60 s by default in `edge-host` and Spin), so a lease never ends while
/// the instance that holds it may still be delivering.
pub const LEASE_SECONDS: u32 = 120;

/// The e-mail a `welcome_email` job sends: the JSON body POSTed to the mail webhook, and
/// the job's stored payload (built once, at registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailMessage {
    /// Recipient address (the lower-cased address given at registration).
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// The welcome e-mail for a new account.
pub fn welcome_email(username: &Username, email: &Email) -> MailMessage {
    MailMessage {
        to: email.as_str().to_owned(),
        subject: "Welcome to the Todo API".to_owned(),
        body: format!(
            "Hello {},\n\nyour account is ready. Log in with your username and password to \
             start adding todos.\n",
            username.as_str()
        ),
    }
}

/// The Redis channel job ids are published on (`jobs_channel`, default `jobs`). The
/// notifier's `[[trigger.redis]]` subscribes to the same variable.
pub fn channel(src: &dyn VariableSource) -> Result<String, ConfigError> {
    let channel = config::optional(src, "jobs_channel")?.unwrap_or_else(|| "jobs".to_owned());
    if channel.len() > 128 || channel.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Invalid {
            name: "jobs_channel",
            reason: "use at most 128 visible characters".into(),
        });
    }
    Ok(channel)
}

/// Retry policy: exponential backoff with a cap, and a maximum number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt (`jobs_retry_base_seconds`, default 2).
    pub base_seconds: u32,
    /// Longest delay between attempts (`jobs_retry_max_seconds`, default 600).
    pub max_seconds: u32,
    /// Attempts before the job is marked `failed` (`jobs_max_attempts`, default 8).
    pub max_attempts: u32,
}

/// What to do with a job whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this many seconds.
    RetryIn(u32),
    /// The attempts are used up: mark the job `failed`.
    GiveUp,
}

impl RetryPolicy {
    /// Reads and validates the policy.
    pub fn load(src: &dyn VariableSource) -> Result<Self, ConfigError> {
        let base_seconds = config::number(src, "jobs_retry_base_seconds", 2, 1..=3_600)?;
        let max_seconds = config::number(src, "jobs_retry_max_seconds", 600, 1..=86_400)?;
        if max_seconds < base_seconds {
            return Err(ConfigError::Invalid {
                name: "jobs_retry_max_seconds",
                reason: format!("{max_seconds} is below jobs_retry_base_seconds ({base_seconds})"),
            });
        }
        Ok(Self {
            base_seconds,
            max_seconds,
            max_attempts: config::number(src, "jobs_max_attempts", 8, 1..=100)?,
        })
    }

    /// After attempt number `attempts` (1 for the first) failed: `base * 2^(attempts-1)`,
    /// capped at `max_seconds`, or give up once `max_attempts` attempts were made.
    pub fn after_failure(&self, attempts: u32) -> AfterFailure {
        if attempts >= self.max_attempts {
            return AfterFailure::GiveUp;
        }
        let exponent = attempts.saturating_sub(1).min(31);
        let delay = u64::from(self.base_seconds) << exponent;
        AfterFailure::RetryIn(delay.min(u64::from(self.max_seconds)) as u32)
    }
}

/// The Redis key whose expiry wakes the notifier up to retry `job_id`: the retry timer.
/// Set with the retry delay as its TTL; when Redis expires it, it publishes the key name on
/// `__keyevent@0__:expired` (with `notify-keyspace-events Ex`), which the notifier hears.
pub fn retry_key(prefix: &str, job_id: &Uuid) -> String {
    format!("{prefix}:job-retry:{}", job_id.as_str())
}

/// What a message on one of the notifier's channels asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMessage {
    /// A job id: from the jobs channel (the bare id) or an expired retry key.
    Job(Uuid),
    /// An expiry event for some other key (cache entries, rate-limit windows): ignored
    /// without touching the database.
    OtherKey,
    /// Neither: a producer bug or a stray publish. The handler reports it as an error.
    Malformed,
}

/// Parses a message: a bare job id (jobs channel), `{prefix}:job-retry:<id>` (expiry
/// events), any other `...:...` key name (expiry of a key that is not ours), or garbage.
pub fn parse_message(prefix: &str, message: &[u8]) -> JobMessage {
    let Ok(text) = std::str::from_utf8(message) else {
        return JobMessage::Malformed;
    };
    let text = text.trim();
    if let Some(id) = Uuid::parse(text) {
        return JobMessage::Job(id);
    }
    let retry_prefix = format!("{prefix}:job-retry:");
    match text.strip_prefix(&retry_prefix) {
        Some(rest) => Uuid::parse(rest).map_or(JobMessage::Malformed, JobMessage::Job),
        None if text.contains(':') && text.len() <= 1024 => JobMessage::OtherKey,
        None => JobMessage::Malformed,
    }
}

/// The constant-time comparison of a presented secret with the configured one, so the
/// sweep token cannot be guessed byte by byte from response times. Lengths may leak; the
/// token is random and long.
pub fn secrets_match(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// A job this worker holds the lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job id (and idempotency key).
    pub id: Uuid,
    /// The job kind, e.g. [`WELCOME_EMAIL`].
    pub kind: String,
    /// The payload as JSON text.
    pub payload: String,
    /// Attempts including this one; the fence for [`reschedule`] and [`mark_failed`].
    pub attempts: u32,
}

/// The columns every claim returns, in [`claimed_from`]'s order.
const CLAIM_RETURNING: &str = "RETURNING id::text, kind, payload::text, attempts::int8";

fn claimed_from(row: &[spin_sdk::pg4::DbValue]) -> Result<ClaimedJob, ApiError> {
    let r = RowReader(row);
    let id = Uuid::parse(&r.text(0)?).ok_or_else(|| ApiError::Internal("bad job id".into()))?;
    let attempts = u32::try_from(r.int(3)?)
        .map_err(|_| ApiError::Internal("job attempts out of range".into()))?;
    Ok(ClaimedJob {
        id,
        kind: r.text(1)?,
        payload: r.text(2)?,
        attempts,
    })
}

/// Claims one job by id if it is pending, due, and not locked by another worker. One
/// statement, so the row lock (`FOR UPDATE SKIP LOCKED`) and the lease are one atomic step
/// and no transaction stays open while the e-mail is sent.
pub fn claim_by_id(db: &Db, id: &Uuid) -> Result<Option<ClaimedJob>, ApiError> {
    let sql = format!(
        "UPDATE jobs SET attempts = attempts + 1, updated_at = now(), \
             next_attempt_at = now() + $2::int8 * interval '1 second' \
         WHERE id = (SELECT id FROM jobs \
                     WHERE id = $1::text::uuid AND status = 'pending' AND next_attempt_at <= now() \
                     FOR UPDATE SKIP LOCKED) \
         {CLAIM_RETURNING}"
    );
    let rows = db.query(
        &sql,
        &[
            text(id.as_str()),
            ParameterValue::Int64(i64::from(LEASE_SECONDS)),
        ],
    )?;
    rows.rows.first().map(|row| claimed_from(row)).transpose()
}

/// Claims up to `limit` due jobs, oldest due first (the drain and the sweep).
pub fn claim_due(db: &Db, limit: u32) -> Result<Vec<ClaimedJob>, ApiError> {
    let sql = format!(
        "UPDATE jobs SET attempts = attempts + 1, updated_at = now(), \
             next_attempt_at = now() + $2::int8 * interval '1 second' \
         WHERE id IN (SELECT id FROM jobs \
                      WHERE status = 'pending' AND next_attempt_at <= now() \
                      ORDER BY next_attempt_at LIMIT $1::int8 \
                      FOR UPDATE SKIP LOCKED) \
         {CLAIM_RETURNING}"
    );
    let rows = db.query(
        &sql,
        &[
            ParameterValue::Int64(i64::from(limit)),
            ParameterValue::Int64(i64::from(LEASE_SECONDS)),
        ],
    )?;
    rows.rows.iter().map(|row| claimed_from(row)).collect()
}

/// Marks a delivered job done. Not fenced by `attempts`: the e-mail went out, so `done` is
/// true even if this worker's lease had ended meanwhile.
pub fn mark_done(db: &Db, id: &Uuid) -> Result<(), ApiError> {
    db.execute(
        "UPDATE jobs SET status = 'done', last_error = NULL, updated_at = now() \
         WHERE id = $1::text::uuid AND status = 'pending'",
        &[text(id.as_str())],
    )?;
    Ok(())
}

/// Schedules the next attempt of a job whose attempt failed. Fenced by `attempts`: if the
/// lease ended and another worker claimed the job since, its newer claim stands.
pub fn reschedule(
    db: &Db,
    job: &ClaimedJob,
    delay_seconds: u32,
    error: &str,
) -> Result<(), ApiError> {
    db.execute(
        "UPDATE jobs SET next_attempt_at = now() + $3::int8 * interval '1 second', \
             last_error = $4::text, updated_at = now() \
         WHERE id = $1::text::uuid AND status = 'pending' AND attempts = $2::int8",
        &[
            text(job.id.as_str()),
            ParameterValue::Int64(i64::from(job.attempts)),
            ParameterValue::Int64(i64::from(delay_seconds)),
            text(error),
        ],
    )?;
    Ok(())
}

/// Marks a job `failed` (attempts used up, or a payload that can never be delivered).
pub fn mark_failed(db: &Db, job: &ClaimedJob, error: &str) -> Result<(), ApiError> {
    db.execute(
        "UPDATE jobs SET status = 'failed', last_error = $3::text, updated_at = now() \
         WHERE id = $1::text::uuid AND status = 'pending' AND attempts = $2::int8",
        &[
            text(job.id.as_str()),
            ParameterValue::Int64(i64::from(job.attempts)),
            text(error),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ID: &str = "0b5e3c0e-8f0a-4b8e-9a53-5d0f1f3a2b7c";

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let policy = RetryPolicy {
            base_seconds: 2,
            max_seconds: 10,
            max_attempts: 5,
        };
        let delays: Vec<_> = (1..=5).map(|a| policy.after_failure(a)).collect();
        assert_eq!(
            delays,
            vec![
                AfterFailure::RetryIn(2),
                AfterFailure::RetryIn(4),
                AfterFailure::RetryIn(8),
                AfterFailure::RetryIn(10),
                AfterFailure::GiveUp,
            ]
        );
        let long = RetryPolicy {
            base_seconds: 3600,
            max_seconds: 86_400,
            max_attempts: 100,
        };
        assert_eq!(long.after_failure(99), AfterFailure::RetryIn(86_400));
    }

    #[test]
    fn policy_defaults_and_validation() {
        let vars: HashMap<&str, &str> = HashMap::new();
        assert_eq!(
            RetryPolicy::load(&vars).unwrap(),
            RetryPolicy {
                base_seconds: 2,
                max_seconds: 600,
                max_attempts: 8
            }
        );
        let vars = HashMap::from([
            ("jobs_retry_base_seconds", "30"),
            ("jobs_retry_max_seconds", "5"),
        ]);
        let err = RetryPolicy::load(&vars).unwrap_err();
        assert!(err.to_string().contains("jobs_retry_max_seconds"), "{err}");
        let vars = HashMap::from([("jobs_max_attempts", "0")]);
        assert!(RetryPolicy::load(&vars).is_err());
        assert_eq!(channel(&HashMap::new()).unwrap(), "jobs");
        assert!(channel(&HashMap::from([("jobs_channel", "a b")])).is_err());
    }

    #[test]
    fn messages_are_job_ids_retry_keys_other_keys_or_malformed() {
        let id = Uuid::parse(ID).unwrap();
        assert_eq!(
            parse_message("todo", ID.as_bytes()),
            JobMessage::Job(id.clone())
        );
        let key = retry_key("todo", &id);
        assert_eq!(key, format!("todo:job-retry:{ID}"));
        assert_eq!(parse_message("todo", key.as_bytes()), JobMessage::Job(id));
        assert_eq!(
            parse_message("todo", b"todo:rl:login:1.2.3.4"),
            JobMessage::OtherKey
        );
        assert_eq!(parse_message("other", key.as_bytes()), JobMessage::OtherKey);
        assert_eq!(
            parse_message("todo", b"todo:job-retry:nope"),
            JobMessage::Malformed
        );
        assert_eq!(parse_message("todo", b"hello"), JobMessage::Malformed);
        assert_eq!(parse_message("todo", &[0xff, 0xfe]), JobMessage::Malformed);
    }

    #[test]
    fn welcome_email_is_addressed_to_the_registered_address() {
        let mail = welcome_email(
            &Username::parse("Alice").unwrap(),
            &Email::parse("Alice@Example.COM").unwrap(),
        );
        assert_eq!(mail.to, "alice@example.com");
        assert!(mail.body.contains("Alice"));
        let json = serde_json::to_string(&mail).unwrap();
        let back: MailMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, mail);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_match(b"s3cret-token", b"s3cret-token"));
        assert!(!secrets_match(b"s3cret-tokem", b"s3cret-token"));
        assert!(!secrets_match(b"s3cret", b"s3cret-token"));
        assert!(!secrets_match(b"", b"x"));
    }
}
