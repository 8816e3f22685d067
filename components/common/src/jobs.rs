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
//! This module is the pure part (payloads, backoff, message parsing), tested natively; the
//! statements that claim and record jobs are in `crate::repo`, the settings in
//! `crate::config`.

use serde::{Deserialize, Serialize};

use crate::domain::{Email, Username, Uuid};

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
    /// Attempts including this one; the fence for `crate::repo::reschedule_job` and
    /// `crate::repo::mark_job_failed`.
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

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
