//! Domain values that can only be built valid ("parse, don't validate").
//!
//! Handlers never see a raw `String` from a client: they get a [`Username`], an
//! [`Email`], a [`TodoTitle`]... whose constructors are the only validation there is.
//! Reading them out of a request body is the HTTP layer's job (`crate::http::JsonObject`).

/// A username: 3–32 characters of `[A-Za-z0-9_.-]`. Compared case-insensitively by the
/// database (unique index on `lower(username)`), stored as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validates a username.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let len = raw.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters long".into());
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The username as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased form used for rate-limit keys (matches the DB's uniqueness rule).
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A plausible e-mail address of at most 254 characters, stored lower-cased.
///
/// "Plausible" on purpose: one `@`, a non-empty local part of at most 64 characters
/// without spaces or control characters, and a domain of dot-separated DNS labels with at
/// least one dot. Real validation is delivering mail, which the welcome e-mail does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates and lower-cases an address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let lower = trimmed.to_lowercase();
        let Some((local, domain)) = lower.rsplit_once('@') else {
            return Err("must be an e-mail address like name@example.com".into());
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.chars().any(|c| c.is_whitespace() || c.is_control())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !(local_ok && domain_ok) {
            return Err("must be an e-mail address like name@example.com".into());
        }
        Ok(Self(lower))
    }

    /// The lower-cased address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8–128 characters. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Validates a password's length (in characters, not bytes).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err("must be 8 to 128 characters long".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// Validates a *new* password (registration, password change): the length, then
    /// [`crate::password_policy`] for the account's username and e-mail (`None` when
    /// unknown or invalid).
    pub fn parse_new(
        raw: &str,
        username: Option<&Username>,
        email: Option<&Email>,
    ) -> Result<Self, String> {
        let password = Self::parse(raw)?;
        crate::password_policy::check(
            raw,
            username.map(Username::as_str),
            email.map(Email::as_str),
        )?;
        Ok(password)
    }

    /// The password bytes, for hashing only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A todo title: 1–255 characters after trimming surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoTitle(String);

impl TodoTitle {
    /// Trims and validates a title.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if len == 0 {
            return Err("must not be empty".into());
        }
        if len > 255 {
            return Err("must be at most 255 characters".into());
        }
        if trimmed.chars().any(|c| c.is_control()) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The trimmed title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UUID in canonical lower-case hyphenated form, as produced by PostgreSQL.
///
/// Parsed before any SQL sees it, so a malformed id is a 404 and never a database error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uuid(String);

impl Uuid {
    /// Accepts the canonical 8-4-4-4-12 hex form (any case), stores it lower-cased.
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        for (i, b) in bytes.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            };
            if !ok {
                return None;
            }
        }
        Some(Self(raw.to_ascii_lowercase()))
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "a.b-c_d", "A1234567890123456789012345678901"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "", "has space", "émile", "a/b", &"x".repeat(33)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Username::parse("MiXed").unwrap().normalized(), "mixed");
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        assert!(Email::parse("a.b+tag@sub.example.org").is_ok());
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            ".a@example.com",
            "a..b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(190));
        assert!(long.len() > 254);
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn passwords_count_characters_and_hide_in_debug() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"é".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        // Logging in checks only the length; new passwords meet the policy too.
        assert!(Password::parse("password").is_ok());
        let user = Username::parse("alice").unwrap();
        assert!(Password::parse_new("password", None, None).is_err());
        assert!(Password::parse_new("alice1234", Some(&user), None).is_err());
        assert!(Password::parse_new("short", None, None)
            .unwrap_err()
            .contains("8 to 128"));
        assert!(Password::parse_new("correct horse battery", Some(&user), None).is_ok());
        let p = Password::parse("supersecret").unwrap();
        assert!(!format!("{p:?}").contains("supersecret"));
    }

    #[test]
    fn titles_are_trimmed() {
        assert_eq!(TodoTitle::parse("  milk \n").unwrap().as_str(), "milk");
        assert!(TodoTitle::parse("   ").is_err());
        assert!(TodoTitle::parse(&"t".repeat(255)).is_ok());
        assert!(TodoTitle::parse(&"t".repeat(256)).is_err());
        assert!(TodoTitle::parse("a\u{0}b").is_err());
    }

    #[test]
    fn uuids() {
        let u = Uuid::parse("3F2504E0-4F89-11D3-9A0C-0305E82C3301").unwrap();
        assert_eq!(u.as_str(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert!(Uuid::parse("3f2504e0-4f89-11d3-9a0c-0305e82c330").is_none());
        assert!(Uuid::parse("3f2504e0x4f89-11d3-9a0c-0305e82c3301").is_none());
        assert!(Uuid::parse("' OR 1=1 --").is_none());
    }
}

/// Optional notes of a todo: at most 10,000 characters; no control characters other than
/// line breaks and tabs. Searched with the title (`q`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoNotes(String);

/// Longest notes, in characters.
pub const MAX_NOTES_CHARS: usize = 10_000;

impl TodoNotes {
    /// Validates notes (kept as given).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > MAX_NOTES_CHARS {
            return Err("must be at most 10000 characters".into());
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(
                "must not contain control characters other than line breaks and tabs".into(),
            );
        }
        Ok(Self(raw.to_owned()))
    }

    /// The notes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Most tags on one todo.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 32;

/// A tag in its normal form: trimmed, lower-cased, 1–32 characters, no control characters
/// and no commas. Tags belong to the user's todos (a filter only sees the caller's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Normalises and validates a tag.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let tag = raw.trim().to_lowercase();
        let len = tag.chars().count();
        if len == 0 || len > MAX_TAG_CHARS {
            return Err("each tag must be 1 to 32 characters after trimming".into());
        }
        if tag.chars().any(|c| c.is_control() || c == ',') {
            return Err("tags must not contain control characters or commas".into());
        }
        Ok(Self(tag))
    }

    /// Normalises a list: each tag, duplicates (after normalising) dropped, sorted; at
    /// most [`MAX_TAGS`].
    pub fn parse_list(raw: &[String]) -> Result<Vec<Self>, String> {
        if raw.len() > MAX_TAGS {
            return Err("must have at most 20 tags".into());
        }
        let mut tags = raw
            .iter()
            .map(|t| Self::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// The normal form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A todo's priority: 0 (none, the default) to 3 (highest).
pub const MAX_PRIORITY: i64 = 3;

/// An instant given as RFC 3339 with an offset (`Z` or `±hh:mm`), e.g. `due_at`,
/// `due_before`, `updated_since`; held in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form
/// the API returns. A date without time or offset is refused (it names no instant), and
/// so is a UTC year outside 1–9998 (the sort's cursor stays one fixed-width form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instant(String);

impl Instant {
    /// Parses RFC 3339 with an offset.
    pub fn parse(raw: &str) -> Result<Self, String> {
        use chrono::{Datelike, Timelike};
        let message =
            "must be an RFC 3339 date-time with an offset, e.g. 2026-12-24T18:00:00+01:00";
        // chrono also takes a space between date and time; RFC 3339's `T` only here.
        let raw = raw.trim();
        if !matches!(raw.as_bytes().get(10), Some(b'T' | b't')) || raw.contains(' ') {
            return Err(message.into());
        }
        let parsed = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| message.to_owned())?;
        let utc = parsed.with_timezone(&chrono::Utc);
        if !(1..=9998).contains(&utc.year())
            || utc.second() >= 60
            || utc.nanosecond() >= 1_000_000_000
        {
            return Err(message.into());
        }
        Ok(Self(utc.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
    }

    /// UTC, microseconds (PostgreSQL's precision).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod todo_field_tests {
    use super::*;

    #[test]
    fn tags_are_normalised_deduplicated_and_bounded() {
        let raw: Vec<String> = [" Work ", "work", "home", "WORK"]
            .map(String::from)
            .to_vec();
        let tags: Vec<String> = Tag::parse_list(&raw)
            .unwrap()
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        assert_eq!(tags, ["home", "work"]);
        assert!(Tag::parse("").is_err());
        assert!(Tag::parse("a,b").is_err());
        assert!(Tag::parse(&"x".repeat(33)).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(Tag::parse_list(&many).is_err());
        assert_eq!(Tag::parse_list(&many[..20]).unwrap().len(), 20);
    }

    #[test]
    fn instants_need_an_offset_and_come_out_in_utc() {
        assert_eq!(
            Instant::parse("2026-12-24T18:00:00+01:00")
                .unwrap()
                .as_str(),
            "2026-12-24T17:00:00.000000Z"
        );
        assert_eq!(
            Instant::parse("2026-01-01T00:00:00.1234567Z")
                .unwrap()
                .as_str(),
            "2026-01-01T00:00:00.123456Z"
        );
        for bad in [
            "2026-12-24",
            "2026-12-24T18:00:00",
            "2026-12-24 18:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:60Z",
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:00:00+01:00",
            "tomorrow",
        ] {
            assert!(Instant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn notes_allow_line_breaks_only() {
        assert!(TodoNotes::parse("line 1\nline 2\ttab").is_ok());
        assert!(TodoNotes::parse("a\u{0}b").is_err());
        assert!(TodoNotes::parse(&"n".repeat(10_000)).is_ok());
        assert!(TodoNotes::parse(&"n".repeat(10_001)).is_err());
    }
}
