//! Conditional requests (RFC 9110 §13): the `ETag`s of todos and list pages, and the
//! `If-Match` / `If-None-Match` headers that compare against them.
//!
//! A todo's entity tag is its row version (`todos.version`, bumped in the statement of
//! every update): `"v<version>"`. A list page's is the user's list version
//! (`users.todos_version`, bumped by every write to their todos, the same number the
//! cache entries carry): `"l<version>"`. Both are strong: the body for one URL and one
//! version is always the same bytes. `If-Match` on `PATCH`/`DELETE` is checked in the
//! same SQL statement as the write (`version = ANY(...)`), so two clients that read the
//! same version cannot both win: the second gets 412 and nothing is lost.

use spin_sdk::http::{Request, Response};

use crate::error::{ApiError, FieldError};

/// Longest `If-Match`/`If-None-Match` value read; longer is a 400 (a bound on the work).
pub const MAX_CONDITION_BYTES: usize = 1024;

/// One entity tag of a condition header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    /// `W/` prefix.
    pub weak: bool,
    /// The quoted part without the quotes.
    pub opaque: String,
}

/// A parsed `If-Match` or `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags.
    Tags(Vec<EntityTag>),
}

fn invalid(header: &str) -> ApiError {
    ApiError::InvalidParameter(vec![FieldError::new(
        header,
        "must be * or a comma-separated list of entity tags like \"v3\"",
    )])
}

/// Parses `#entity-tag` or `*` (RFC 9110 §8.8.3, §13.1.1); anything else is a 400 naming
/// the header, never silently ignored.
pub fn parse(header: &str, value: &str) -> Result<Condition, ApiError> {
    if value.len() > MAX_CONDITION_BYTES {
        return Err(invalid(header));
    }
    let value = value.trim();
    if value == "*" {
        return Ok(Condition::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let inner = after.strip_prefix('"').ok_or_else(|| invalid(header))?;
        let end = inner.find('"').ok_or_else(|| invalid(header))?;
        let opaque = &inner[..end];
        // etagc = %x21 / %x23-7E / obs-text
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return Err(invalid(header));
        }
        tags.push(EntityTag {
            weak,
            opaque: opaque.to_owned(),
        });
        rest = inner[end + 1..].trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',').ok_or_else(|| invalid(header))?;
    }
    Ok(Condition::Tags(tags))
}

/// The condition in `req`'s `name` header, if the request has one.
pub fn from_request(req: &Request, name: &'static str) -> Result<Option<Condition>, ApiError> {
    match req.header(name) {
        None => Ok(None),
        Some(value) => {
            let value = value.as_str().ok_or_else(|| invalid(name))?;
            parse(name, value).map(Some)
        }
    }
}

impl Condition {
    /// `If-None-Match` semantics: weak comparison against the current tag (§13.1.2).
    pub fn matches_weak(&self, current: &str) -> bool {
        match self {
            Condition::Any => true,
            Condition::Tags(tags) => tags
                .iter()
                .any(|t| format!("\"{}\"", t.opaque) == strip_weak(current)),
        }
    }

    /// `If-Match` on a todo: the row versions it accepts (strong comparison, so `W/` tags
    /// and tags of another form match nothing); `None` for `*` (any existing todo).
    pub fn todo_versions(&self) -> Option<Vec<i64>> {
        match self {
            Condition::Any => None,
            Condition::Tags(tags) => Some(
                tags.iter()
                    .filter(|t| !t.weak)
                    .filter_map(|t| t.opaque.strip_prefix('v')?.parse::<i64>().ok())
                    .filter(|v| *v >= 1)
                    .collect(),
            ),
        }
    }
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// The entity tag of a todo at row version `version`.
pub fn todo_etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// The entity tag of a list page read at list version `version`.
pub fn list_etag(version: i64) -> String {
    format!("\"l{version}\"")
}

/// `304 Not Modified` carrying the current tag.
pub fn not_modified(etag: &str) -> Response {
    Response::builder()
        .status(304)
        .header("etag", etag)
        .body(Vec::<u8>::new())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_star_and_weak_tags() {
        assert_eq!(parse("If-Match", " * ").unwrap(), Condition::Any);
        let Condition::Tags(tags) = parse("If-Match", r#""v1", W/"v2" ,"a,b""#).unwrap() else {
            panic!()
        };
        assert_eq!(tags.len(), 3);
        assert!(tags[1].weak);
        assert_eq!(tags[2].opaque, "a,b");
        for bad in [
            "v1",
            "\"v1",
            "\"v1\" \"v2\"",
            "\"v1\",",
            "",
            "W/v1",
            "\"a\u{1}\"",
        ] {
            assert_eq!(parse("If-Match", bad).unwrap_err().status(), 400, "{bad:?}");
        }
        assert!(parse("If-Match", &format!("\"{}\"", "x".repeat(2000))).is_err());
    }

    #[test]
    fn if_match_compares_strongly_and_if_none_match_weakly() {
        let c = parse("If-Match", r#""v3", W/"v4", "l5", "vx", "v0""#).unwrap();
        assert_eq!(c.todo_versions(), Some(vec![3]));
        assert_eq!(Condition::Any.todo_versions(), None);
        let c = parse("If-None-Match", r#"W/"l7""#).unwrap();
        assert!(c.matches_weak(&list_etag(7)));
        assert!(!c.matches_weak(&list_etag(8)));
        assert!(Condition::Any.matches_weak(&todo_etag(1)));
        assert_eq!(todo_etag(2), "\"v2\"");
    }
}
