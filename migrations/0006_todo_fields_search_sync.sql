-- Todos people would choose (issue 12): due dates, notes, tags, priority, full-text
-- search, and incremental sync. Additive: every new column has a default (NULL, '{}', 0),
-- so existing rows and older code keep working.
ALTER TABLE todos
    ADD COLUMN due_at   timestamptz,
    ADD COLUMN notes    text CHECK (char_length(notes) <= 10000),
    -- Normalised by the application (trimmed, lower-case, 1-32 characters, sorted, no
    -- duplicates); at most 20.
    ADD COLUMN tags     text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
    ADD COLUMN priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3),
    -- `q`: the 'simple' configuration (lower-cased words, no stemming, no stop words), so
    -- every word of any language is found as written.
    ADD COLUMN search   tsvector GENERATED ALWAYS AS
        (to_tsvector('simple', title || ' ' || coalesce(notes, ''))) STORED;
CREATE INDEX todos_search_idx ON todos USING GIN (search);
CREATE INDEX todos_tags_idx ON todos USING GIN (tags);
-- `updated_since`: WHERE user_id = $1 AND updated_at > $2 ORDER BY updated_at, id.
CREATE INDEX todos_user_updated_idx ON todos (user_id, updated_at, id);

-- Deleted todos, kept 30 days so `updated_since` can report deletions; swept after 31
-- (POST /internal/jobs/sweep). Only the id and the time: nothing of the content is kept.
CREATE TABLE todo_tombstones (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    deleted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX todo_tombstones_user_deleted_idx ON todo_tombstones (user_id, deleted_at, id);
CREATE INDEX todo_tombstones_deleted_idx ON todo_tombstones (deleted_at);
