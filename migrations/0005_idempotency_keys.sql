-- Idempotent creates (issue 12): an Idempotency-Key on POST /todos or POST /auth/register
-- is stored in the same statement as the row it creates, so the key exists exactly when
-- the todo (or user) does. A retry with the same key and the same body (SHA-256 of the
-- bytes) replays the creation; the same key with another body is a 422. Keys are kept
-- 24 hours (expires_at), then a new request may take the key over; POST
-- /internal/jobs/sweep deletes expired rows.
CREATE TABLE idempotency_keys (
    -- Which create: 'todos' (per user) or 'register' (one namespace: there is no caller yet).
    scope        text        NOT NULL CHECK (scope IN ('todos', 'register')),
    -- The calling user's id for 'todos'; '' for 'register'.
    owner        text        NOT NULL,
    key          text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash bytea       NOT NULL CHECK (octet_length(request_hash) = 32),
    -- The todo or user the first request created.
    resource_id  uuid        NOT NULL,
    -- Whose key it is; deleting the account deletes its keys.
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, owner, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_user_idx ON idempotency_keys (user_id);
