-- Revocation that ends access tokens too (issue 13). Every access token carries the
-- user's token generation at issue time (claim `gen`); logout, logout-all, a password
-- change and refresh-token reuse bump it in the same statement as the refresh-token
-- revocation, and a token whose `gen` is below the current value is refused. Redis holds a
-- copy checked in the rate-limit round trip; this column is the truth (README,
-- "Revocation").
ALTER TABLE users ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;

-- Two more reasons a session ends: every session at once, and a password change.
ALTER TABLE refresh_token_families DROP CONSTRAINT refresh_token_families_revoked_reason_check;
ALTER TABLE refresh_token_families ADD CONSTRAINT refresh_token_families_revoked_reason_check
    CHECK (revoked_reason IN ('logout', 'logout-all', 'reuse', 'password-change'));
