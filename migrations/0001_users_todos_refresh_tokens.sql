-- Users, their todos, and refresh-token families for rotation with reuse detection.
-- gen_random_uuid() is built into PostgreSQL 13 and later.

CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored as given; unique case-insensitively (users_username_lower_key).
    username      text        NOT NULL CHECK (char_length(username) BETWEEN 3 AND 32),
    -- Lower-cased by the application; the welcome e-mail goes here.
    email         text        NOT NULL CHECK (char_length(email) <= 254 AND email = lower(email)),
    -- argon2id PHC string; never returned or logged.
    password_hash text        NOT NULL,
    -- Bumped in the same statement as every write to this user's todos; cached list pages
    -- carry the version they were read at and are served only while it is current.
    todos_version bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE todos (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 255),
    completed  boolean     NOT NULL DEFAULT false,
    -- clock_timestamp(), not now(): distinct values even inside one transaction.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The list query: WHERE user_id = $1 [AND completed = $2]
-- [AND (created_at, id) < cursor] ORDER BY created_at DESC, id DESC LIMIT n.
CREATE INDEX todos_user_created_idx ON todos (user_id, created_at DESC, id DESC);
CREATE INDEX todos_user_completed_created_idx ON todos (user_id, completed, created_at DESC, id DESC);

-- One family per login; every refresh rotates the token within its family. Presenting an
-- already-rotated token revokes the whole family (the token was stolen or replayed).
CREATE TABLE refresh_token_families (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text        CHECK (revoked_reason IN ('logout', 'reuse'))
);
CREATE INDEX refresh_token_families_user_idx ON refresh_token_families (user_id);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the token; the token itself is never stored.
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    family_id  uuid        NOT NULL REFERENCES refresh_token_families (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set when the token is rotated; a second use is reuse.
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
