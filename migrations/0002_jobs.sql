-- The job outbox: background work (the welcome e-mail) written in the same transaction as
-- the change that causes it, so a job exists exactly when its cause committed. Redis pub/sub
-- only wakes the notifier up; this table is the source of truth.
--
-- Lifecycle: pending -> done, or pending -> (retries with backoff) -> failed.
-- A claim keeps the job `pending`, increments `attempts` and pushes `next_attempt_at`
-- forward by a lease: while the lease runs no other worker picks the job up; if the worker
-- dies, the job is due again when the lease ends. A `done` or `failed` job is never claimed.

CREATE TABLE jobs (
    -- Also the delivery's Idempotency-Key.
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text        NOT NULL CHECK (kind IN ('welcome_email')),
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'done', 'failed')),
    -- Claims so far (a crashed worker's claim counts: the attempt limit bounds crash loops).
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the job may next be claimed: creation time, a retry time, or a lease's end.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Why the last attempt failed (no secrets: status codes and short host messages).
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The drain: WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY next_attempt_at.
-- Partial, so finished jobs (almost all rows) cost the index nothing.
CREATE INDEX jobs_pending_due_idx ON jobs (next_attempt_at) WHERE status = 'pending';
