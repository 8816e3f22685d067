-- Optimistic concurrency (issue 12, conditional requests). Every todo has a row version,
-- set to 1 on insert and bumped in the same statement as every update; it is the todo's
-- ETag ("v<version>"), and a PATCH/DELETE with If-Match updates only while the row still
-- has the version the client read (412 otherwise), so no update is lost between clients.
-- Additive: existing rows start at version 1.
ALTER TABLE todos ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);
