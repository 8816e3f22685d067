//! Data access: every SQL statement of the API, one function each.
//!
//! See `crate::store` for the casting conventions. Writes that touch several tables are
//! single statements with data-modifying CTEs, so they are atomic on any host.

use spin_sdk::pg4::{DbValue, ParameterValue};

use crate::domain::{Email, Instant, Tag, TodoNotes, TodoTitle, Username, Uuid};
use crate::error::ApiError;
use crate::idempotency::{IdempotencyKey, Replay, KEY_TTL_HOURS};
use crate::jobs::{ClaimedJob, MailMessage, LEASE_SECONDS};
use crate::store::{text, Db, RowReader};
use crate::todo_list::{
    Cursor, ListQuery, Order, Todo, Tombstone, NO_DUE_DATE, TOMBSTONE_RETENTION_DAYS,
};

/// `to_char` format giving `2026-11-27T12:34:56.123456Z` (what `Cursor` expects).
macro_rules! ts {
    ($col:expr) => {
        concat!(
            "to_char(",
            $col,
            r#" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#
        )
    };
}

/// A freshly registered user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewUser {
    /// UUID.
    pub id: String,
    /// As registered.
    pub username: String,
    /// Lower-cased.
    pub email: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A committed registration: the user, and the id of their welcome e-mail job.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The new user (the 201 body).
    pub user: NewUser,
    /// The `welcome_email` job written with the user (the transactional outbox).
    pub welcome_job_id: Uuid,
}

/// Inserts a user and their welcome e-mail job in one statement, so both commit or
/// neither does (the transactional outbox: a job exists exactly when its user does).
/// `Ok(None)` when the username or e-mail is taken (no exception path: `ON CONFLICT DO
/// NOTHING` covers both unique indexes, and the job insert then selects no row).
pub fn insert_user(
    db: &Db,
    username: &Username,
    email: &Email,
    password_hash: &str,
    welcome: &MailMessage,
) -> Result<Option<Registration>, ApiError> {
    let payload = serde_json::to_string(welcome)
        .map_err(|e| ApiError::Internal(format!("welcome payload: {e}")))?;
    let sql = concat!(
        "WITH new_user AS (",
        " INSERT INTO users (username, email, password_hash)",
        " VALUES ($1::text, $2::text, $3::text)",
        " ON CONFLICT DO NOTHING",
        " RETURNING id, username, email, created_at",
        "), new_job AS (",
        " INSERT INTO jobs (kind, payload)",
        " SELECT 'welcome_email', $4::text::jsonb FROM new_user",
        " RETURNING id",
        ")",
        " SELECT u.id::text, u.username, u.email, ",
        ts!("u.created_at"),
        ", j.id::text FROM new_user u CROSS JOIN new_job j"
    );
    let rows = db.query(
        sql,
        &[
            text(username.as_str()),
            text(email.as_str()),
            text(password_hash),
            text(&payload),
        ],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let r = RowReader(row);
    let welcome_job_id =
        Uuid::parse(&r.text(4)?).ok_or_else(|| ApiError::Internal("bad job id".into()))?;
    Ok(Some(Registration {
        user: NewUser {
            id: r.text(0)?,
            username: r.text(1)?,
            email: r.text(2)?,
            created_at: r.text(3)?,
        },
        welcome_job_id,
    }))
}

/// The key's claim, first step of a keyed create: inserts the key, or takes over an
/// expired one; selects the new resource's id when it did, nothing when the key is taken
/// (a concurrent request with the key waits here for the first to commit). `$K` is the
/// key's parameter number, `$H` the fingerprint's; `source` selects `scope, owner,
/// resource id, user id`.
fn claim_cte(source: &str, k: usize, h: usize) -> String {
    format!(
        "claim AS ( \
             INSERT INTO idempotency_keys AS k \
                 (scope, owner, resource_id, user_id, key, request_hash, expires_at) \
             SELECT s.*, ${k}::text, ${h}::bytea, now() + interval '{KEY_TTL_HOURS} hours' \
             FROM ({source}) s \
             ON CONFLICT (scope, owner, key) DO UPDATE SET \
                 request_hash = EXCLUDED.request_hash, resource_id = EXCLUDED.resource_id, \
                 user_id = EXCLUDED.user_id, created_at = now(), expires_at = EXCLUDED.expires_at \
             WHERE k.expires_at <= now() \
             RETURNING k.resource_id, k.user_id)"
    )
}

/// A live (unexpired) key of `scope`/`owner`: whether `key`'s body matches the first one.
pub fn find_idempotent(
    db: &Db,
    scope: &str,
    owner: &str,
    key: &IdempotencyKey,
) -> Result<Option<Replay>, ApiError> {
    let rows = db.query(
        "SELECT resource_id::text, request_hash = $4::bytea FROM idempotency_keys \
         WHERE scope = $1::text AND owner = $2::text AND key = $3::text AND expires_at > now()",
        &[
            text(scope),
            text(owner),
            text(key.as_str()),
            ParameterValue::Binary(key.fingerprint().to_vec()),
        ],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let r = RowReader(row);
    if !r.boolean(1)? {
        return Ok(Some(Replay::OtherBody));
    }
    let id =
        Uuid::parse(&r.text(0)?).ok_or_else(|| ApiError::Internal("bad resource id".into()))?;
    Ok(Some(Replay::Same(id)))
}

/// What a keyed registration did.
#[derive(Debug)]
pub enum KeyedRegistration {
    /// The user, their job and the key were inserted together.
    Registered(Registration),
    /// The username or e-mail is taken (the statement was rolled back: no key stored).
    Conflict,
    /// The key is taken: look it up ([`find_idempotent`]).
    KeyTaken,
}

/// [`insert_user`] with an `Idempotency-Key` stored in the same statement, as its first
/// step: the key exists exactly when the user does. A taken username or e-mail fails the
/// whole statement (a unique violation, so the key is not kept either).
pub fn insert_user_with_key(
    db: &Db,
    username: &Username,
    email: &Email,
    password_hash: &str,
    welcome: &MailMessage,
    key: &IdempotencyKey,
) -> Result<KeyedRegistration, ApiError> {
    let payload = serde_json::to_string(welcome)
        .map_err(|e| ApiError::Internal(format!("welcome payload: {e}")))?;
    let sql = format!(
        "WITH {}, new_user AS ( \
             INSERT INTO users (id, username, email, password_hash) \
             SELECT resource_id, $1::text, $2::text, $3::text FROM claim \
             RETURNING id, username, email, created_at), \
         new_job AS ( \
             INSERT INTO jobs (kind, payload) \
             SELECT 'welcome_email', $4::text::jsonb FROM new_user RETURNING id) \
         SELECT u.id::text, u.username, u.email, {}, j.id::text \
         FROM new_user u CROSS JOIN new_job j",
        claim_cte(
            "SELECT 'register', '', g.id, g.id FROM (SELECT gen_random_uuid() AS id) g",
            5,
            6
        ),
        ts!("u.created_at"),
    );
    let params = [
        text(username.as_str()),
        text(email.as_str()),
        text(password_hash),
        text(&payload),
        text(key.as_str()),
        ParameterValue::Binary(key.fingerprint().to_vec()),
    ];
    let Some(rows) = db.query_unless_unique_violation(&sql, &params)? else {
        return Ok(KeyedRegistration::Conflict);
    };
    let Some(row) = rows.rows.first() else {
        return Ok(KeyedRegistration::KeyTaken);
    };
    let r = RowReader(row);
    let welcome_job_id =
        Uuid::parse(&r.text(4)?).ok_or_else(|| ApiError::Internal("bad job id".into()))?;
    Ok(KeyedRegistration::Registered(Registration {
        user: NewUser {
            id: r.text(0)?,
            username: r.text(1)?,
            email: r.text(2)?,
            created_at: r.text(3)?,
        },
        welcome_job_id,
    }))
}

/// A user as registration returned them, by id (a replayed registration).
pub fn find_new_user(db: &Db, id: &Uuid) -> Result<Option<NewUser>, ApiError> {
    let sql = format!(
        "SELECT id::text, username, email, {} FROM users WHERE id = $1::text::uuid",
        ts!("created_at")
    );
    let rows = db.query(&sql, &[text(id.as_str())])?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let r = RowReader(row);
    Ok(Some(NewUser {
        id: r.text(0)?,
        username: r.text(1)?,
        email: r.text(2)?,
        created_at: r.text(3)?,
    }))
}

/// After a failed insert: which unique value is taken, as a 409.
pub fn registration_conflict(
    db: &Db,
    username: &Username,
    email: &Email,
) -> Result<ApiError, ApiError> {
    let rows = db.query(
        "SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1::text)), \
                EXISTS (SELECT 1 FROM users WHERE email = $2::text)",
        &[text(username.as_str()), text(email.as_str())],
    )?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| ApiError::Internal("EXISTS returned no row".into()))?;
    let r = RowReader(row);
    Ok(if !r.boolean(0)? && r.boolean(1)? {
        ApiError::Conflict {
            field: "email",
            detail: "An account with this e-mail address already exists.",
        }
    } else {
        ApiError::Conflict {
            field: "username",
            detail: "This username is already taken.",
        }
    })
}

/// A user's id and current token generation (claim `gen` of the access tokens issued now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    /// The user.
    pub user: Uuid,
    /// `users.token_generation`.
    pub generation: i64,
}

fn subject_from(r: &RowReader<'_>, first: usize) -> Result<TokenSubject, ApiError> {
    let user =
        Uuid::parse(&r.text(first)?).ok_or_else(|| ApiError::Internal("bad user id".into()))?;
    Ok(TokenSubject {
        user,
        generation: r.int(first + 1)?,
    })
}

/// The user (with their token generation) and password hash, by username
/// (case-insensitive).
pub fn find_credentials(
    db: &Db,
    username: &Username,
) -> Result<Option<(TokenSubject, String)>, ApiError> {
    let rows = db.query(
        "SELECT id::text, token_generation, password_hash FROM users \
         WHERE lower(username) = lower($1::text)",
        &[text(username.as_str())],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let r = RowReader(row);
    Ok(Some((subject_from(&r, 0)?, r.text(2)?)))
}

/// What a password change needs to know about the caller.
#[derive(Debug, Clone)]
pub struct Account {
    /// As registered.
    pub username: Username,
    /// Lower-cased.
    pub email: Email,
    /// The argon2id PHC string.
    pub password_hash: String,
}

/// The caller's account; `None` if the user no longer exists.
pub fn find_account(db: &Db, user: &Uuid) -> Result<Option<Account>, ApiError> {
    let rows = db.query(
        "SELECT username, email, password_hash FROM users WHERE id = $1::text::uuid",
        &[text(user.as_str())],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let r = RowReader(row);
    let bad = |what: &str| ApiError::Internal(format!("stored {what} is invalid"));
    Ok(Some(Account {
        username: Username::parse(&r.text(0)?).map_err(|_| bad("username"))?,
        email: Email::parse(&r.text(1)?).map_err(|_| bad("e-mail"))?,
        password_hash: r.text(2)?,
    }))
}

/// Deletes the user and, through the foreign keys' `ON DELETE CASCADE`, their todos,
/// refresh tokens and sessions, idempotency keys and tombstones: one statement, so all of
/// it goes or none. `false` if the user was already gone.
pub fn delete_account(db: &Db, user: &Uuid) -> Result<bool, ApiError> {
    Ok(db.execute(
        "DELETE FROM users WHERE id = $1::text::uuid",
        &[text(user.as_str())],
    )? == 1)
}

/// The user's current token generation; `None` if the user no longer exists. The truth
/// behind the Redis copy (`crate::revocation`), read when Redis has none.
pub fn token_generation(db: &Db, user: &Uuid) -> Result<Option<i64>, ApiError> {
    user_counter(
        db,
        "SELECT token_generation FROM users WHERE id = $1::text::uuid",
        user,
    )
}

/// Sets a new password hash, revokes every session of the user and bumps their token
/// generation, in one statement. The new generation; `None` if the user is gone.
pub fn change_password(db: &Db, user: &Uuid, password_hash: &str) -> Result<Option<i64>, ApiError> {
    let rows = db.query(
        "WITH revoked AS ( \
             UPDATE refresh_token_families SET revoked_at = now(), \
                 revoked_reason = 'password-change' \
             WHERE user_id = $1::text::uuid AND revoked_at IS NULL) \
         UPDATE users SET password_hash = $2::text, token_generation = token_generation + 1 \
         WHERE id = $1::text::uuid RETURNING token_generation",
        &[text(user.as_str()), text(password_hash)],
    )?;
    rows.rows
        .first()
        .map(|row| RowReader(row).int(0))
        .transpose()
}

/// Revokes every session of the user and bumps their token generation (logout-all), in
/// one statement. The new generation; `None` if the user is gone.
pub fn revoke_all_sessions(db: &Db, user: &Uuid) -> Result<Option<i64>, ApiError> {
    let rows = db.query(
        "WITH revoked AS ( \
             UPDATE refresh_token_families SET revoked_at = now(), revoked_reason = 'logout-all' \
             WHERE user_id = $1::text::uuid AND revoked_at IS NULL) \
         UPDATE users SET token_generation = token_generation + 1 \
         WHERE id = $1::text::uuid RETURNING token_generation",
        &[text(user.as_str())],
    )?;
    rows.rows
        .first()
        .map(|row| RowReader(row).int(0))
        .transpose()
}

/// Starts a refresh-token family (a login session) with its first token.
pub fn start_refresh_family(
    db: &Db,
    user: &Uuid,
    token_hash: Vec<u8>,
    ttl_seconds: u32,
) -> Result<(), ApiError> {
    let n = db.execute(
        "WITH family AS ( \
             INSERT INTO refresh_token_families (user_id) VALUES ($1::text::uuid) \
             RETURNING id, user_id) \
         INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) \
         SELECT $2::bytea, id, user_id, now() + $3::int8 * interval '1 second' FROM family",
        &[
            text(user.as_str()),
            ParameterValue::Binary(token_hash),
            ParameterValue::Int64(i64::from(ttl_seconds)),
        ],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(ApiError::Internal(format!(
            "refresh family insert affected {n} rows"
        )))
    }
}

/// Outcome of presenting a refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and the replacement is stored.
    Rotated(TokenSubject),
    /// The token had already been rotated: its family is now revoked and the user's token
    /// generation bumped (their access tokens end too).
    ReuseDetected(TokenSubject),
    /// Unknown, expired, or in a revoked family.
    Invalid,
}

/// Consumes `old_hash` and stores `new_hash` in the same family, atomically; on failure,
/// detects reuse and revokes the family.
pub fn rotate_refresh_token(
    db: &Db,
    old_hash: Vec<u8>,
    new_hash: Vec<u8>,
    ttl_seconds: u32,
) -> Result<Rotation, ApiError> {
    // Concurrent presentations of one token serialise on its row lock; the loser sees
    // `used_at` set and is treated as reuse, which is the safe answer.
    let rows = db.query(
        "WITH consumed AS ( \
             UPDATE refresh_tokens t SET used_at = now() \
             FROM refresh_token_families f \
             WHERE t.token_hash = $1::bytea AND t.used_at IS NULL AND t.expires_at > now() \
               AND f.id = t.family_id AND f.revoked_at IS NULL \
             RETURNING t.family_id, t.user_id), \
         replacement AS ( \
             INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) \
             SELECT $2::bytea, family_id, user_id, now() + $3::int8 * interval '1 second' \
             FROM consumed \
             RETURNING user_id) \
         SELECT u.id::text, u.token_generation FROM replacement r JOIN users u ON u.id = r.user_id",
        &[
            ParameterValue::Binary(old_hash.clone()),
            ParameterValue::Binary(new_hash),
            ParameterValue::Int64(i64::from(ttl_seconds)),
        ],
    )?;
    if let Some(row) = rows.rows.first() {
        return Ok(Rotation::Rotated(subject_from(&RowReader(row), 0)?));
    }
    let rows = db.query(
        "WITH revoked AS ( \
             UPDATE refresh_token_families f SET revoked_at = now(), revoked_reason = 'reuse' \
             FROM refresh_tokens t \
             WHERE t.token_hash = $1::bytea AND t.used_at IS NOT NULL \
               AND f.id = t.family_id AND f.revoked_at IS NULL \
             RETURNING f.user_id) \
         UPDATE users SET token_generation = token_generation + 1 \
         WHERE id IN (SELECT user_id FROM revoked) \
         RETURNING id::text, token_generation",
        &[ParameterValue::Binary(old_hash)],
    )?;
    Ok(match rows.rows.first() {
        Some(row) => Rotation::ReuseDetected(subject_from(&RowReader(row), 0)?),
        None => Rotation::Invalid,
    })
}

/// Revokes the family of a refresh token (logout) and bumps its user's token generation,
/// which ends their access tokens (every session's: they are per user; the others refresh).
/// Unknown or already revoked tokens change nothing (`None`).
pub fn revoke_refresh_family(
    db: &Db,
    token_hash: Vec<u8>,
) -> Result<Option<TokenSubject>, ApiError> {
    let rows = db.query(
        "WITH revoked AS ( \
             UPDATE refresh_token_families f SET revoked_at = now(), revoked_reason = 'logout' \
             FROM refresh_tokens t \
             WHERE t.token_hash = $1::bytea AND f.id = t.family_id AND f.revoked_at IS NULL \
             RETURNING f.user_id) \
         UPDATE users SET token_generation = token_generation + 1 \
         WHERE id IN (SELECT user_id FROM revoked) \
         RETURNING id::text, token_generation",
        &[ParameterValue::Binary(token_hash)],
    )?;
    rows.rows
        .first()
        .map(|row| subject_from(&RowReader(row), 0))
        .transpose()
}

/// The columns of a todo, from table alias `t`, in [`todo_from`]'s order.
const TODO_COLUMNS: &str = concat!(
    "t.id::text, t.title, t.completed, ",
    ts!("t.created_at"),
    ", ",
    ts!("t.updated_at"),
    ", t.version, ",
    ts!("t.due_at"),
    ", t.notes, array_to_json(t.tags)::text, t.priority::int8"
);

fn todo_from(r: &RowReader<'_>, first: usize) -> Result<Todo, ApiError> {
    let tags: Vec<String> = serde_json::from_str(&r.text(first + 8)?)
        .map_err(|e| ApiError::Internal(format!("stored tags: {e}")))?;
    Ok(Todo {
        id: r.text(first)?,
        title: r.text(first + 1)?,
        completed: r.boolean(first + 2)?,
        created_at: r.text(first + 3)?,
        updated_at: r.text(first + 4)?,
        version: r.int(first + 5)?,
        due_at: r.opt_text(first + 6)?,
        notes: r.opt_text(first + 7)?,
        tags,
        priority: r.int(first + 9)?,
    })
}

/// A new todo's fields.
#[derive(Debug, Clone)]
pub struct NewTodo {
    /// The title.
    pub title: TodoTitle,
    /// Done already.
    pub completed: bool,
    /// Notes.
    pub notes: Option<TodoNotes>,
    /// Due date.
    pub due_at: Option<Instant>,
    /// Normalised tags.
    pub tags: Vec<Tag>,
    /// 0-3.
    pub priority: i64,
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct TodoChanges {
    /// New title.
    pub title: Option<TodoTitle>,
    /// New completion.
    pub completed: Option<bool>,
    /// New notes, or cleared.
    pub notes: Option<Option<TodoNotes>>,
    /// New due date, or cleared.
    pub due_at: Option<Option<Instant>>,
    /// The new tag set (replaces the old one).
    pub tags: Option<Vec<Tag>>,
    /// New priority.
    pub priority: Option<i64>,
}

impl TodoChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.completed.is_none()
            && self.notes.is_none()
            && self.due_at.is_none()
            && self.tags.is_none()
            && self.priority.is_none()
    }
}

fn opt_text_param(value: Option<&str>) -> ParameterValue {
    value.map(text).unwrap_or(ParameterValue::DbNull)
}

/// Tags as one JSON-array parameter, turned into `text[]` by the statement (no array
/// binding needed from the host).
fn tags_param(tags: &[Tag]) -> Result<ParameterValue, ApiError> {
    let list: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    serde_json::to_string(&list)
        .map(|json| text(&json))
        .map_err(|e| ApiError::Internal(format!("tags: {e}")))
}

/// The SQL that turns [`tags_param`]'s parameter `n` into `text[]`.
fn tags_sql(n: usize) -> String {
    format!("ARRAY(SELECT jsonb_array_elements_text(${n}::text::jsonb))")
}

/// The outcome of a write to one todo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TodoWrite<T> {
    /// Written.
    Done(T),
    /// No such todo of the user's.
    NotFound,
    /// The todo exists but no longer has a version the client's `If-Match` named (412).
    Stale,
}

/// Adds the accepted versions of an `If-Match` (comma-separated) as a parameter; its
/// number, `None` without one.
fn version_param(expected: Option<&[i64]>, params: &mut Vec<ParameterValue>) -> Option<usize> {
    let versions = expected?;
    let list: Vec<String> = versions.iter().map(i64::to_string).collect();
    params.push(text(&list.join(",")));
    Some(params.len())
}

/// The `AND <column> = ANY(...)` condition for [`version_param`]'s parameter; empty
/// without one.
fn version_check(column: &str, param: Option<usize>) -> String {
    param
        .map(|n| format!(" AND {column} = ANY(string_to_array(${n}::text, ',')::int8[])"))
        .unwrap_or_default()
}

/// After a write that matched no row: `Stale` if the todo exists (so only the version
/// differed), `NotFound` otherwise.
fn missed_write<T>(
    db: &Db,
    user: &Uuid,
    id: &Uuid,
    expected: Option<&[i64]>,
) -> Result<TodoWrite<T>, ApiError> {
    if expected.is_none() {
        return Ok(TodoWrite::NotFound);
    }
    Ok(match get_todo(db, user, id)? {
        Some(_) => TodoWrite::Stale,
        None => TodoWrite::NotFound,
    })
}

/// The current `todos_version` of a user; `None` if the user no longer exists.
pub fn todos_version(db: &Db, user: &Uuid) -> Result<Option<i64>, ApiError> {
    user_counter(
        db,
        "SELECT todos_version FROM users WHERE id = $1::text::uuid",
        user,
    )
}

/// The one integer `sql` selects for `user`; `None` if the user no longer exists.
fn user_counter(db: &Db, sql: &str, user: &Uuid) -> Result<Option<i64>, ApiError> {
    let rows = db.query(sql, &[text(user.as_str())])?;
    rows.rows
        .first()
        .map(|row| RowReader(row).int(0))
        .transpose()
}

/// A page's rows: a todo, or (under `updated_since`) a tombstone.
pub type ListRow = Result<Todo, Tombstone>;

/// One page of the user's todos (one more than `limit` if there are more) and the
/// version it was read at, in one statement (one snapshot). `None` if the user is gone.
/// Under `updated_since` ([`Order::Sync`]) the page merges changed todos and tombstones
/// by change time.
pub fn list_todos(
    db: &Db,
    user: &Uuid,
    query: &ListQuery,
) -> Result<Option<(i64, Vec<ListRow>)>, ApiError> {
    let mut params = vec![
        text(user.as_str()),
        ParameterValue::Int64(i64::from(query.limit) + 1),
    ];
    let mut push = |value: ParameterValue| {
        params.push(value);
        params.len()
    };
    let mut filters = String::new();
    if let Some(completed) = query.completed {
        let n = push(ParameterValue::Boolean(completed));
        filters.push_str(&format!(" AND completed = ${n}::bool"));
    }
    if let Some(tag) = &query.tag {
        let n = push(text(tag.as_str()));
        filters.push_str(&format!(" AND tags @> ARRAY[${n}::text]"));
    }
    if let Some(before) = &query.due_before {
        let n = push(text(before.as_str()));
        filters.push_str(&format!(" AND due_at < ${n}::text::timestamptz"));
    }
    if let Some(after) = &query.due_after {
        let n = push(text(after.as_str()));
        filters.push_str(&format!(" AND due_at >= ${n}::text::timestamptz"));
    }
    if let Some(q) = &query.q {
        let n = push(text(q));
        filters.push_str(&format!(
            " AND search @@ websearch_to_tsquery('simple', ${n}::text)"
        ));
    }
    let due_key = due_sort_key();
    let mut cursor_sql = String::new();
    let mut tomb_cursor = String::new();
    if let Some(Cursor {
        at, priority, id, ..
    }) = &query.cursor
    {
        let a = push(text(at));
        let i = push(text(id.as_str()));
        let (at, id) = (
            format!("${a}::text::timestamptz"),
            format!("${i}::text::uuid"),
        );
        cursor_sql = match query.order {
            Order::Created => format!(" AND (created_at, id) < ({at}, {id})"),
            Order::Due => format!(" AND ({due_key}, id) > ({at}, {id})"),
            Order::Priority => {
                let p = push(ParameterValue::Int64(*priority));
                format!(" AND (priority, created_at, id) < (${p}::int8::int2, {at}, {id})")
            }
            Order::Sync => format!(" AND (updated_at, id) > ({at}, {id})"),
        };
        tomb_cursor = format!(" AND (deleted_at, id) > ({at}, {id})");
    }
    if query.order == Order::Sync {
        return list_changes(db, query, params, &cursor_sql, &tomb_cursor);
    }
    let order = match query.order {
        Order::Created | Order::Sync => "created_at DESC, id DESC".to_owned(),
        Order::Due => format!("{due_key} ASC, id ASC"),
        Order::Priority => "priority DESC, created_at DESC, id DESC".to_owned(),
    };
    let sql = format!(
        "SELECT u.todos_version, {TODO_COLUMNS} \
         FROM users u LEFT JOIN LATERAL ( \
             SELECT * FROM todos \
             WHERE user_id = u.id{filters}{cursor_sql} \
             ORDER BY {order} LIMIT $2::int8) t ON true \
         WHERE u.id = $1::text::uuid"
    );
    let rows = db.query(&sql, &params)?;
    let Some(first) = rows.rows.first() else {
        return Ok(None);
    };
    let version = RowReader(first).int(0)?;
    let mut todos = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let r = RowReader(row);
        if r.is_null(1)? {
            continue; // the user has no (matching) todos: one row of NULLs from the join
        }
        todos.push(Ok(todo_from(&r, 1)?));
    }
    Ok(Some((version, todos)))
}

/// The `sort=due` key: todos without a due date last. Migration 0007 indexes exactly this
/// expression (PostgreSQL matches index expressions by their text), so keep them equal.
fn due_sort_key() -> String {
    format!("coalesce(due_at, '{NO_DUE_DATE}'::timestamptz)")
}

/// The `updated_since` page: todos changed and tombstones written after the instant,
/// oldest change first (a tombstone's change time is its `deleted_at`).
fn list_changes(
    db: &Db,
    query: &ListQuery,
    mut params: Vec<ParameterValue>,
    cursor_sql: &str,
    tomb_cursor: &str,
) -> Result<Option<(i64, Vec<ListRow>)>, ApiError> {
    let since = query
        .updated_since
        .as_ref()
        .ok_or_else(|| ApiError::Internal("sync without updated_since".into()))?;
    params.push(text(since.as_str()));
    let s = params.len();
    let sql = format!(
        "SELECT u.todos_version, t.deleted, {TODO_COLUMNS}, {} \
         FROM users u LEFT JOIN LATERAL ( \
             (SELECT false AS deleted, updated_at AS changed_at, id, title, completed, \
                     created_at, updated_at, version, due_at, notes, tags, priority \
              FROM todos \
              WHERE user_id = u.id AND updated_at > ${s}::text::timestamptz{cursor_sql}) \
             UNION ALL \
             (SELECT true, deleted_at, id, '', false, deleted_at, deleted_at, 1::int8, \
                     NULL::timestamptz, NULL::text, '{{}}'::text[], 0::int2 \
              FROM todo_tombstones \
              WHERE user_id = u.id AND deleted_at > ${s}::text::timestamptz{tomb_cursor}) \
             ORDER BY changed_at, id LIMIT $2::int8) t ON true \
         WHERE u.id = $1::text::uuid",
        ts!("t.changed_at"),
    );
    let rows = db.query(&sql, &params)?;
    let Some(first) = rows.rows.first() else {
        return Ok(None);
    };
    let version = RowReader(first).int(0)?;
    let mut out = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let r = RowReader(row);
        if r.is_null(1)? {
            continue;
        }
        if r.boolean(1)? {
            out.push(Err(Tombstone {
                id: r.text(2)?,
                deleted_at: r.text(12)?,
            }));
        } else {
            out.push(Ok(todo_from(&r, 2)?));
        }
    }
    Ok(Some((version, out)))
}

/// One todo of the user's; another user's todo is `None`, like a missing one.
pub fn get_todo(db: &Db, user: &Uuid, id: &Uuid) -> Result<Option<Todo>, ApiError> {
    let sql = format!(
        "SELECT {TODO_COLUMNS} FROM todos t WHERE id = $1::text::uuid AND user_id = $2::text::uuid"
    );
    let rows = db.query(&sql, &[text(id.as_str()), text(user.as_str())])?;
    rows.rows
        .first()
        .map(|row| todo_from(&RowReader(row), 0))
        .transpose()
}

/// Creates a todo and bumps the user's list version. `None` if the user is gone, or
/// (with `key`) if the key is taken: then [`find_idempotent`] says what to answer. With
/// a key, the key is inserted first in the same statement and the todo only if it was
/// (`crate::idempotency`).
pub fn create_todo(
    db: &Db,
    user: &Uuid,
    todo: &NewTodo,
    key: Option<&IdempotencyKey>,
) -> Result<Option<Todo>, ApiError> {
    let mut params = vec![
        text(user.as_str()),
        text(todo.title.as_str()),
        ParameterValue::Boolean(todo.completed),
        opt_text_param(todo.notes.as_ref().map(TodoNotes::as_str)),
        opt_text_param(todo.due_at.as_ref().map(Instant::as_str)),
        tags_param(&todo.tags)?,
        ParameterValue::Int64(todo.priority),
    ];
    let fields = "title, completed, notes, due_at, tags, priority";
    let values = format!(
        "$2::text, $3::bool, $4::text, $5::text::timestamptz, {}, $7::int8::int2",
        tags_sql(6)
    );
    let sql = match key {
        None => format!(
            "WITH bump AS ( \
                 UPDATE users SET todos_version = todos_version + 1 \
                 WHERE id = $1::text::uuid RETURNING id) \
             INSERT INTO todos AS t (user_id, {fields}) \
             SELECT id, {values} FROM bump \
             RETURNING {TODO_COLUMNS}"
        ),
        Some(key) => {
            params.push(text(key.as_str()));
            params.push(ParameterValue::Binary(key.fingerprint().to_vec()));
            format!(
                "WITH {}, bump AS ( \
                     UPDATE users SET todos_version = todos_version + 1 \
                     WHERE id = $1::text::uuid AND EXISTS (SELECT 1 FROM claim) RETURNING id) \
                 INSERT INTO todos AS t (id, user_id, {fields}) \
                 SELECT claim.resource_id, bump.id, {values} FROM claim CROSS JOIN bump \
                 RETURNING {TODO_COLUMNS}",
                claim_cte(
                    "SELECT 'todos', id::text, gen_random_uuid(), id FROM users WHERE id = $1::text::uuid",
                    8,
                    9
                )
            )
        }
    };
    let rows = db.query(&sql, &params)?;
    rows.rows
        .first()
        .map(|row| todo_from(&RowReader(row), 0))
        .transpose()
}

/// Deletes the idempotency keys that expired (the sweep); how many.
pub fn delete_expired_idempotency_keys(db: &Db) -> Result<u64, ApiError> {
    db.execute(
        "DELETE FROM idempotency_keys WHERE expires_at <= now()",
        &[],
    )
}

/// Applies a partial update under an optional `If-Match` (`expected`: the accepted row
/// versions), bumping the row version and the user's list version, in one statement.
///
/// The user's row is locked first (`bump`) and the todo updated after it (`FROM bump`):
/// so the version check and the write are one step, and every write of a user takes its
/// `updated_at` while holding that lock, in commit order (what `updated_since` relies on).
/// Two clients that read the same version: the second waits for the first's lock, then
/// PostgreSQL rechecks `version` on the updated row, matches nothing, and gets `Stale`.
pub fn update_todo(
    db: &Db,
    user: &Uuid,
    id: &Uuid,
    changes: &TodoChanges,
    expected: Option<&[i64]>,
) -> Result<TodoWrite<Todo>, ApiError> {
    let mut params = vec![text(user.as_str()), text(id.as_str())];
    let mut sets = vec![
        "updated_at = clock_timestamp()".to_owned(),
        "version = t.version + 1".to_owned(),
    ];
    if let Some(title) = &changes.title {
        params.push(text(title.as_str()));
        sets.push(format!("title = ${}::text", params.len()));
    }
    if let Some(completed) = changes.completed {
        params.push(ParameterValue::Boolean(completed));
        sets.push(format!("completed = ${}::bool", params.len()));
    }
    if let Some(notes) = &changes.notes {
        params.push(opt_text_param(notes.as_ref().map(TodoNotes::as_str)));
        sets.push(format!("notes = ${}::text", params.len()));
    }
    if let Some(due_at) = &changes.due_at {
        params.push(opt_text_param(due_at.as_ref().map(Instant::as_str)));
        sets.push(format!("due_at = ${}::text::timestamptz", params.len()));
    }
    if let Some(tags) = &changes.tags {
        params.push(tags_param(tags)?);
        sets.push(format!("tags = {}", tags_sql(params.len())));
    }
    if let Some(priority) = changes.priority {
        params.push(ParameterValue::Int64(priority));
        sets.push(format!("priority = ${}::int8::int2", params.len()));
    }
    let param = version_param(expected, &mut params);
    let (check, check_t) = (
        version_check("version", param),
        version_check("t.version", param),
    );
    let sql = format!(
        "WITH bump AS ( \
             UPDATE users SET todos_version = todos_version + 1 \
             WHERE id = $1::text::uuid AND EXISTS ( \
                 SELECT 1 FROM todos WHERE id = $2::text::uuid AND user_id = $1::text::uuid{check}) \
             RETURNING id), \
         changed AS ( \
             UPDATE todos t SET {} FROM bump \
             WHERE t.id = $2::text::uuid AND t.user_id = bump.id{check_t} \
             RETURNING t.*) \
         SELECT {TODO_COLUMNS} FROM changed t",
        sets.join(", ")
    );
    let rows = db.query(&sql, &params)?;
    match rows.rows.first() {
        Some(row) => Ok(TodoWrite::Done(todo_from(&RowReader(row), 0)?)),
        None => missed_write(db, user, id, expected),
    }
}

/// Deletes a todo of the user's under an optional `If-Match`, bumping the list version,
/// in one statement (locked in the same order as [`update_todo`]).
pub fn delete_todo(
    db: &Db,
    user: &Uuid,
    id: &Uuid,
    expected: Option<&[i64]>,
) -> Result<TodoWrite<()>, ApiError> {
    let mut params = vec![text(user.as_str()), text(id.as_str())];
    let param = version_param(expected, &mut params);
    let (check, check_t) = (
        version_check("version", param),
        version_check("t.version", param),
    );
    let sql = format!(
        "WITH bump AS ( \
             UPDATE users SET todos_version = todos_version + 1 \
             WHERE id = $1::text::uuid AND EXISTS ( \
                 SELECT 1 FROM todos WHERE id = $2::text::uuid AND user_id = $1::text::uuid{check}) \
             RETURNING id), \
         gone AS ( \
             DELETE FROM todos t USING bump \
             WHERE t.id = $2::text::uuid AND t.user_id = bump.id{check_t} \
             RETURNING t.id, t.user_id), \
         tombstone AS ( \
             INSERT INTO todo_tombstones (id, user_id) SELECT id, user_id FROM gone \
             ON CONFLICT (id) DO UPDATE SET deleted_at = clock_timestamp()) \
         SELECT count(*) FROM gone"
    );
    let rows = db.query(&sql, &params)?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| ApiError::Internal("count returned no row".into()))?;
    if RowReader(row).int(0)? > 0 {
        Ok(TodoWrite::Done(()))
    } else {
        missed_write(db, user, id, expected)
    }
}

// --- Background jobs (the worker side of the outbox; see `crate::jobs`) -----------------

/// The columns every claim returns, in [`claimed_from`]'s order.
const CLAIM_RETURNING: &str = "RETURNING id::text, kind, payload::text, attempts::int8";

fn claimed_from(row: &[DbValue]) -> Result<ClaimedJob, ApiError> {
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
pub fn claim_job_by_id(db: &Db, id: &Uuid) -> Result<Option<ClaimedJob>, ApiError> {
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
pub fn claim_due_jobs(db: &Db, limit: u32) -> Result<Vec<ClaimedJob>, ApiError> {
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
pub fn mark_job_done(db: &Db, id: &Uuid) -> Result<(), ApiError> {
    db.execute(
        "UPDATE jobs SET status = 'done', last_error = NULL, updated_at = now() \
         WHERE id = $1::text::uuid AND status = 'pending'",
        &[text(id.as_str())],
    )?;
    Ok(())
}

/// Schedules the next attempt of a job whose attempt failed. Fenced by `attempts`: if the
/// lease ended and another worker claimed the job since, its newer claim stands.
pub fn reschedule_job(
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
pub fn mark_job_failed(db: &Db, job: &ClaimedJob, error: &str) -> Result<(), ApiError> {
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

/// Deletes tombstones a day past their retention (the sweep; the day covers clock skew
/// between the component, which refuses an older `updated_since`, and PostgreSQL); how
/// many.
pub fn delete_old_tombstones(db: &Db) -> Result<u64, ApiError> {
    db.execute(
        &format!(
            "DELETE FROM todo_tombstones WHERE deleted_at < now() - interval '{} days'",
            TOMBSTONE_RETENTION_DAYS + 1
        ),
        &[],
    )
}

#[cfg(test)]
mod tests {
    /// The due-date order can use its index only while the query's expression and the
    /// migration's are the same text.
    #[test]
    fn the_due_sort_key_is_the_indexed_expression() {
        let migration = include_str!("../../../migrations/0007_todo_sort_indexes.sql");
        assert!(
            migration.contains(&super::due_sort_key()),
            "migration 0007 does not index {}",
            super::due_sort_key()
        );
    }
}
