//! The pure parts of listing todos: query parameters, the opaque cursor, and the cache
//! entry format.
//!
//! ## Why the cache can never serve a list older than the caller's last write
//! Every write to a user's todos bumps `users.todos_version` *in the same SQL statement*
//! as the write. A cache entry stores the version it was built from (`<version>\n<body>`),
//! and a hit is served only if that version equals the current one in PostgreSQL (a
//! primary-key lookup). So a write that succeeded is visible to the next read even if the
//! write could not reach Redis, or Redis came back with old data: Redis only ever saves the
//! list query and its serialisation, never decides freshness.
//!
//! ## Why a cache hit still costs a PostgreSQL round trip
//! A hit is one Redis `EVAL` (rate limit + entry) and one primary-key lookup of
//! `users.todos_version`. Deciding freshness in Redis alone (a version or "dirty" key that
//! writers bump, read in the same `EVAL`) cannot keep read-your-writes on every failure
//! this design survives today:
//!
//! - **A Redis write that fails after the PostgreSQL commit.** The writer cannot tell
//!   Redis about a commit it could not reach Redis for, and a mark set *before* the commit
//!   does not help: a reader that sees the mark, reads PostgreSQL before the commit and
//!   stores the old list under the new mark serves it after the write returned. Closing
//!   that race needs a second, post-commit Redis write (clear the mark, bump again), which
//!   is exactly the write that can fail; leaving the mark set on failure (caching off for
//!   that user) only works if the pre-commit write succeeded.
//! - **Redis unreachable during a write.** Writes succeed without Redis today (the rate
//!   limit fails open). With freshness in Redis, a write that could not set its mark would
//!   have to be refused (503), or Redis must be trusted to still hold every entry that was
//!   fresh before it went away.
//! - **Redis coming back with old data** (a restart from a snapshot, a failover to a
//!   lagging replica): old entries and old versions reappear together and match.
//!
//! ## Why one user cannot grow the cache without bound
//! Every distinct query (limit, filter, cursor) is its own page, and a client can make
//! as many distinct queries as its rate limit allows. So a page is stored with
//! [`CACHE_WRITE_SCRIPT`], which also keeps the user's page keys in a list,
//! `{prefix}:todos-index:<user>` ([`cache_index_key`]), in the order they were written, and
//! deletes the oldest pages beyond [`MAX_CACHED_PAGES_PER_USER`]: one `EVAL` instead of the
//! `SET` the miss path made before, so no extra round trip, and the hit path is unchanged
//! (a plain `GET` of the page in the rate-limit script). Pages of older list versions are
//! never served and are the first to go. The index has the pages' TTL, renewed on every
//! write, so it outlives every page it names; if Redis evicts the index alone (memory
//! pressure, README "Redis memory"), the pages it named are left to their TTL and the cap
//! starts again from zero: at most one cap's worth of pages more, for one TTL.
//!
//! So the version lookup stays: it is the one read that sees every committed write, and it
//! is a single-row index lookup on the connection the miss path needs anyway. What a hit
//! does not do: a second Redis command, a PostgreSQL write, JSON work (the body is served
//! as stored).

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use serde::Serialize;

use crate::domain::{Instant, Tag, Uuid};
use crate::error::{ApiError, FieldError};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page size.
pub const MAX_LIMIT: u32 = 100;
/// Longest search query `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// How long deletions are kept for `updated_since` (an older `updated_since` is 410).
pub const TOMBSTONE_RETENTION_DAYS: u32 = 30;
/// Where todos without a due date sort (last) under `sort=due`: the largest instant the
/// API accepts as a due date's day, so the cursor keeps its one timestamp form.
pub const NO_DUE_DATE: &str = "9999-12-31T23:59:59.999999Z";

/// A todo as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Todo {
    /// UUID.
    pub id: String,
    /// Trimmed title.
    pub title: String,
    /// Free text, searched with the title; `null` when none.
    pub notes: Option<String>,
    /// Done or not.
    pub completed: bool,
    /// 0 (none) to 3 (highest).
    pub priority: i64,
    /// RFC 3339 UTC with microseconds; `null` when none.
    pub due_at: Option<String>,
    /// Normalised tags, sorted.
    pub tags: Vec<String>,
    /// RFC 3339 UTC with microseconds.
    pub created_at: String,
    /// RFC 3339 UTC with microseconds.
    pub updated_at: String,
    /// Row version (`todos.version`): the ETag, not part of the body.
    #[serde(skip)]
    pub version: i64,
}

/// A deleted todo, as `updated_since` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tombstone {
    /// The deleted todo's id.
    pub id: String,
    /// RFC 3339 UTC with microseconds.
    pub deleted_at: String,
}

/// One page of todos.
#[derive(Debug, Clone, Serialize)]
pub struct TodoPage {
    /// In the query's order.
    pub items: Vec<Todo>,
    /// With `updated_since` only: todos deleted since, in the page's range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<Tombstone>>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (`created_at DESC, id DESC`), the default.
    Created,
    /// Soonest due first, todos without a due date last (`due_at ASC, id ASC`).
    Due,
    /// Highest priority first, then newest (`priority DESC, created_at DESC, id DESC`).
    Priority,
    /// `updated_since`: oldest change first (`updated_at ASC, id ASC`, deletions merged).
    Sync,
}

/// Position after the last item of a page, in its order: the item's timestamp (created,
/// due or changed), its priority under `sort=priority`, and its id (tie-breaker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Which order the cursor belongs to (a cursor of another order is a 400).
    pub order: Order,
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` exactly as produced by the list query.
    pub at: String,
    /// Under `sort=priority` only.
    pub priority: i64,
    /// The todo's id (tie-breaker).
    pub id: Uuid,
}

/// Whether `s` has the list query's timestamp shape *and* names an instant that exists.
///
/// The shape alone is not enough: `2026-13-45T25:61:61.000000Z` or year `0000` has it, and
/// PostgreSQL's `::timestamptz` cast then fails the whole query with a 500 (issue 10,
/// item 7). Checking the calendar here turns such a cursor into the 400 any other forgery
/// gets. Second 60 is refused too: PostgreSQL would roll it over, and the list query never
/// produces it.
fn is_timestamp(s: &str) -> bool {
    // 2026-11-27T12:34:56.123456Z
    let b = s.as_bytes();
    let shape = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return false;
    }
    let num = |from: usize, to: usize| s[from..to].parse::<u32>().unwrap_or(u32::MAX);
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1
        && (1..=days).contains(&day)
        && num(11, 13) < 24
        && num(14, 16) < 60
        && num(17, 19) < 60
}

impl Cursor {
    /// The opaque form given to clients: base64url of `<at>|<id>` for the default order
    /// (the form cursors always had), `d|`, `s|` or `p<priority>|` before it otherwise.
    pub fn encode(&self) -> String {
        let prefix = match self.order {
            Order::Created => String::new(),
            Order::Due => "d|".to_owned(),
            Order::Sync => "s|".to_owned(),
            Order::Priority => format!("p{}|", self.priority),
        };
        Base64UrlSafeNoPadding::encode_to_string(format!("{prefix}{}|{}", self.at, self.id))
            .unwrap_or_default()
    }

    /// Parses a client's cursor; anything we did not produce is rejected before SQL.
    pub fn decode(raw: &str) -> Option<Self> {
        if raw.len() > 128 {
            return None;
        }
        let bytes = Base64UrlSafeNoPadding::decode_to_vec(raw, None).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let parts: Vec<&str> = text.split('|').collect();
        let (order, priority, at, id) = match parts.as_slice() {
            [at, id] => (Order::Created, 0, *at, *id),
            ["d", at, id] => (Order::Due, 0, *at, *id),
            ["s", at, id] => (Order::Sync, 0, *at, *id),
            [p, at, id] if p.len() == 2 && p.starts_with('p') => {
                let priority = p[1..].parse::<i64>().ok().filter(|p| (0..=3).contains(p))?;
                (Order::Priority, priority, *at, *id)
            }
            _ => return None,
        };
        if !is_timestamp(at) {
            return None;
        }
        Some(Self {
            order,
            at: at.to_owned(),
            priority,
            id: Uuid::parse(id)?,
        })
    }

    /// The position after `todo` in `order` (not for [`Order::Sync`], whose rows may be
    /// tombstones: built from the change time directly).
    pub fn after(order: Order, todo: &Todo) -> Option<Self> {
        let at = match order {
            Order::Created | Order::Priority => todo.created_at.clone(),
            Order::Due => todo
                .due_at
                .clone()
                .unwrap_or_else(|| NO_DUE_DATE.to_owned()),
            Order::Sync => todo.updated_at.clone(),
        };
        Some(Self {
            order,
            at,
            priority: todo.priority,
            id: Uuid::parse(&todo.id)?,
        })
    }
}

/// Validated `GET /todos` query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// 1–100, default 20.
    pub limit: u32,
    /// Only completed / only open todos.
    pub completed: Option<bool>,
    /// Only todos with this tag.
    pub tag: Option<Tag>,
    /// Only todos due before this instant (exclusive).
    pub due_before: Option<Instant>,
    /// Only todos due at or after this instant.
    pub due_after: Option<Instant>,
    /// Full-text search over title and notes (`websearch_to_tsquery('simple', q)`).
    pub q: Option<String>,
    /// The order (`sort`, or [`Order::Sync`] with `updated_since`).
    pub order: Order,
    /// Incremental sync: todos changed and deleted after this instant.
    pub updated_since: Option<Instant>,
    /// Start after this position.
    pub cursor: Option<Cursor>,
    raw_cursor: Option<String>,
}

impl ListQuery {
    /// Parses the query string; unknown or repeated parameters are errors (400).
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            completed: None,
            tag: None,
            due_before: None,
            due_after: None,
            q: None,
            order: Order::Created,
            updated_since: None,
            cursor: None,
            raw_cursor: None,
        };
        let mut sort_given = false;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if seen.iter().any(|s| *s == name) {
                errors.push(FieldError::new(name.as_ref(), "must be given at most once"));
                continue;
            }
            seen.push(name.to_string());
            let instant = |errors: &mut Vec<FieldError>, field: &str| match Instant::parse(&value) {
                Ok(i) => Some(i),
                Err(m) => {
                    errors.push(FieldError::new(field, m));
                    None
                }
            };
            match name.as_ref() {
                "limit" => match value.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                    _ => errors.push(FieldError::new(
                        "limit",
                        "must be a whole number from 1 to 100",
                    )),
                },
                "completed" => match value.as_ref() {
                    "true" => q.completed = Some(true),
                    "false" => q.completed = Some(false),
                    _ => errors.push(FieldError::new("completed", "must be true or false")),
                },
                "tag" => match Tag::parse(&value) {
                    Ok(tag) => q.tag = Some(tag),
                    Err(m) => errors.push(FieldError::new("tag", m)),
                },
                "due_before" => q.due_before = instant(&mut errors, "due_before"),
                "due_after" => q.due_after = instant(&mut errors, "due_after"),
                "updated_since" => q.updated_since = instant(&mut errors, "updated_since"),
                "q" => {
                    let empty = value.trim().is_empty();
                    let long = value.chars().count() > MAX_QUERY_CHARS;
                    if empty || long || value.chars().any(char::is_control) {
                        errors.push(FieldError::new(
                            "q",
                            "must be 1 to 200 characters without control characters",
                        ));
                    } else {
                        q.q = Some(value.trim().to_owned());
                    }
                }
                "sort" => {
                    sort_given = true;
                    match value.as_ref() {
                        "created" => q.order = Order::Created,
                        "due" => q.order = Order::Due,
                        "priority" => q.order = Order::Priority,
                        _ => {
                            errors.push(FieldError::new("sort", "must be created, due or priority"))
                        }
                    }
                }
                "cursor" => match Cursor::decode(&value) {
                    Some(c) => {
                        q.cursor = Some(c);
                        q.raw_cursor = Some(value.to_string());
                    }
                    None => errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor returned by this API",
                    )),
                },
                other => errors.push(FieldError::new(other, "is not a known parameter")),
            }
        }
        if q.updated_since.is_some() {
            let filtered = sort_given
                || q.completed.is_some()
                || q.tag.is_some()
                || q.due_before.is_some()
                || q.due_after.is_some()
                || q.q.is_some();
            if filtered {
                errors.push(FieldError::new(
                    "updated_since",
                    "cannot be combined with sort or filters: a sync returns every change",
                ));
            }
            q.order = Order::Sync;
        }
        if let Some(cursor) = &q.cursor {
            if cursor.order != q.order {
                errors.push(FieldError::new(
                    "cursor",
                    "belongs to another sort order than this query's",
                ));
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(ApiError::InvalidParameter(errors))
        }
    }

    /// The Redis key of this page for `user`: one entry per distinct query. Every value
    /// is percent-encoded, so no two queries share a key.
    pub fn cache_key(&self, prefix: &str, user: &Uuid) -> String {
        let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let completed = match self.completed {
            None => "any",
            Some(true) => "true",
            Some(false) => "false",
        };
        let order = match self.order {
            Order::Created => "created",
            Order::Due => "due",
            Order::Priority => "priority",
            Order::Sync => "sync",
        };
        let opt = |v: Option<&str>| v.map(enc).unwrap_or_else(|| "-".to_owned());
        format!(
            "{prefix}:todos:{user}:v2:l{}:c{completed}:s{order}:t{}:b{}:a{}:u{}:q{}:{}",
            self.limit,
            opt(self.tag.as_ref().map(Tag::as_str)),
            opt(self.due_before.as_ref().map(Instant::as_str)),
            opt(self.due_after.as_ref().map(Instant::as_str)),
            opt(self.updated_since.as_ref().map(Instant::as_str)),
            opt(self.q.as_deref()),
            self.raw_cursor.as_deref().unwrap_or("first"),
        )
    }
}

/// Most list pages kept in the cache per user (all queries, all list versions). A page is
/// at most 100 todos (about 43 KB with 255-character ASCII titles, 9 KB for a default page
/// of 20 short ones), so one user's cache stays under ~0.7 MB whatever they query; the
/// usual handful of pages (first page, a filter, the next few cursors) fits.
pub const MAX_CACHED_PAGES_PER_USER: usize = 16;

/// The Redis list of a user's cached page keys, oldest first ([`CACHE_WRITE_SCRIPT`]).
pub fn cache_index_key(prefix: &str, user: &Uuid) -> String {
    format!("{prefix}:todos-index:{user}")
}

/// Stores a page and bounds the user's pages. `KEYS[1]` = the page, `KEYS[2]` = the user's
/// index ([`cache_index_key`]); `ARGV` = entry, TTL seconds, the cap. The page is moved to
/// the end of the index (a rewrite counts as the newest), the oldest pages beyond the cap
/// are deleted with their index entries, and the index gets the pages' TTL. Replies the
/// number of pages deleted.
///
/// The deleted pages are not in `KEYS` (they are read from the index), which is fine on
/// one Redis; on Redis Cluster every key of a user would need one hash slot (`{user}`
/// hash tags), as the rate-limit script's keys already would.
pub const CACHE_WRITE_SCRIPT: &str = r#"
local cap = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('LREM', KEYS[2], 0, KEYS[1])
local len = redis.call('RPUSH', KEYS[2], KEYS[1])
local deleted = 0
while len > cap do
  local oldest = redis.call('LPOP', KEYS[2])
  redis.call('DEL', oldest)
  deleted = deleted + 1
  len = len - 1
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return deleted
"#;

/// The keys and arguments of [`CACHE_WRITE_SCRIPT`] for `entry` stored under `page_key`.
pub fn cache_write_arguments(
    prefix: &str,
    user: &Uuid,
    page_key: &str,
    entry: &[u8],
    ttl_seconds: u32,
) -> (Vec<String>, Vec<Vec<u8>>) {
    (
        vec![page_key.to_owned(), cache_index_key(prefix, user)],
        vec![
            entry.to_vec(),
            ttl_seconds.to_string().into_bytes(),
            MAX_CACHED_PAGES_PER_USER.to_string().into_bytes(),
        ],
    )
}

/// Builds a cache entry: the version the page was read at, then the response body.
pub fn encode_cache_entry(version: i64, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{version}\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// Splits a cache entry into version and body; `None` for anything malformed.
pub fn decode_cache_entry(entry: &[u8]) -> Option<(i64, &[u8])> {
    let newline = entry.iter().position(|b| *b == b'\n')?;
    let version = std::str::from_utf8(&entry[..newline]).ok()?.parse().ok()?;
    Some((version, &entry[newline + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap()
    }

    #[test]
    fn cursor_timestamps_must_be_real_instants() {
        assert!(is_timestamp("2024-02-29T23:59:59.999999Z"));
        for bad in [
            "2026-13-01T00:00:00.000000Z",
            "2026-02-29T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "0000-01-01T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2026-01-00T00:00:00.000000Z",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
        // Every cursor we hand out is 86 characters (openapi.yaml's pattern relies on it).
        let c = Cursor {
            order: Order::Created,
            at: "2026-11-27T12:34:56.123456Z".into(),
            priority: 0,
            id: id(),
        };
        assert_eq!(c.encode().len(), 86);
    }

    #[test]
    fn cursor_round_trip_and_rejects_forgeries() {
        let c = Cursor {
            order: Order::Created,
            at: "2026-11-27T12:34:56.123456Z".into(),
            priority: 0,
            id: id(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for (order, priority) in [(Order::Due, 0), (Order::Sync, 0), (Order::Priority, 3)] {
            let c = Cursor {
                order,
                at: "2026-11-27T12:34:56.123456Z".into(),
                priority,
                id: id(),
            };
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        for bad in [
            "",
            "!!!",
            &Base64UrlSafeNoPadding::encode_to_string("x|y").unwrap(),
            &Base64UrlSafeNoPadding::encode_to_string(
                "2026-11-27 12:34:56|3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            )
            .unwrap(),
            &Base64UrlSafeNoPadding::encode_to_string(
                "2026-11-27T12:34:56.123456Z|'; DROP TABLE todos; --",
            )
            .unwrap(),
        ] {
            assert!(Cursor::decode(bad).is_none(), "{bad}");
        }
    }

    /// Cursors of the right shape that name no instant: each used to reach PostgreSQL's
    /// `::timestamptz` cast and fail the query with a 500 (issue 10, item 7).
    #[test]
    fn cursor_with_impossible_timestamp_is_rejected() {
        for impossible in [
            "0000-01-01T00:00:00.000000Z",
            "2026-00-10T00:00:00.000000Z",
            "2026-13-10T00:00:00.000000Z",
            "2026-02-30T00:00:00.000000Z",
            "2025-02-29T00:00:00.000000Z",
            "2026-01-00T00:00:00.000000Z",
            "2026-01-32T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T99:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2026-01-01T00:00:60.000000Z",
            "9999-99-99T99:99:99.999999Z",
        ] {
            let raw =
                Base64UrlSafeNoPadding::encode_to_string(format!("{impossible}|{}", id())).unwrap();
            assert!(Cursor::decode(&raw).is_none(), "{impossible}");
            let err = ListQuery::parse(&format!("cursor={raw}")).unwrap_err();
            assert_eq!(err.status(), 400, "{impossible}");
        }
        for possible in [
            "0001-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let raw =
                Base64UrlSafeNoPadding::encode_to_string(format!("{possible}|{}", id())).unwrap();
            assert!(Cursor::decode(&raw).is_some(), "{possible}");
        }
    }

    #[test]
    fn list_query_defaults_and_bounds() {
        let q = ListQuery::parse("").unwrap();
        assert_eq!((q.limit, q.completed), (20, None));
        let q = ListQuery::parse("limit=100&completed=false").unwrap();
        assert_eq!((q.limit, q.completed), (100, Some(false)));
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "completed=yes",
            "sort=asc",
            "limit=5&limit=6",
            "cursor=zz",
        ] {
            let err = ListQuery::parse(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
        let ApiError::InvalidParameter(fields) = ListQuery::parse("limit=0").unwrap_err() else {
            panic!()
        };
        assert_eq!(fields[0].field, "limit");
    }

    #[test]
    fn cache_keys_differ_per_query_and_user() {
        let a = ListQuery::parse("limit=5").unwrap().cache_key("p", &id());
        let b = ListQuery::parse("limit=6").unwrap().cache_key("p", &id());
        let c = ListQuery::parse("limit=5&completed=true")
            .unwrap()
            .cache_key("p", &id());
        let other = Uuid::parse("00000000-0000-0000-0000-000000000001").unwrap();
        let d = ListQuery::parse("limit=5").unwrap().cache_key("p", &other);
        let all = [&a, &b, &c, &d];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert!(a.starts_with("p:todos:"));
    }

    #[test]
    fn cache_writes_name_the_page_and_the_users_index() {
        let page = ListQuery::parse("limit=5").unwrap().cache_key("p", &id());
        let (keys, args) = cache_write_arguments("p", &id(), &page, b"7\n{}", 300);
        assert_eq!(
            keys,
            [page.clone(), format!("p:todos-index:{}", id().as_str())]
        );
        assert_eq!(args, [b"7\n{}".to_vec(), b"300".to_vec(), b"16".to_vec()]);
        // The index is not a page key of any query, so no page can overwrite it.
        assert!(!keys[1].starts_with(&format!("p:todos:{}", id().as_str())));
        // The script reads its cap from ARGV and its keys from KEYS only.
        assert!(CACHE_WRITE_SCRIPT.contains("KEYS[2]") && !CACHE_WRITE_SCRIPT.contains("KEYS[3]"));
        assert!(CACHE_WRITE_SCRIPT.contains("ARGV[3]"));
    }

    #[test]
    fn cache_entries() {
        let e = encode_cache_entry(42, b"{\"items\":[]}");
        assert_eq!(decode_cache_entry(&e), Some((42, &b"{\"items\":[]}"[..])));
        assert_eq!(decode_cache_entry(b"garbage"), None);
        assert_eq!(decode_cache_entry(b"x\n{}"), None);
    }
}
