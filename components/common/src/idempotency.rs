//! Idempotent creates: the `Idempotency-Key` request header (IETF
//! draft-ietf-httpapi-idempotency-key-header) on `POST /todos` and `POST /auth/register`.
//!
//! The key is stored in the statement that creates the todo or user (`crate::repo`,
//! table `idempotency_keys`), as its first step: a concurrent request with the same key
//! waits on the key's unique index, then finds it taken and inserts nothing. So a key
//! exists exactly when its creation committed, and one key never creates two rows. A
//! request whose key is taken is answered from the stored row:
//!
//! - same body (SHA-256 of the request body's bytes): the creation is replayed: `201`,
//!   the same `Location`, the created resource as it is now, and `Idempotent-Replayed:
//!   true` (a todo deleted since is a 404: there is nothing left to show);
//! - another body: `422` `idempotency-key-reused`.
//!
//! Keys are kept [`KEY_TTL_HOURS`] hours; after that the key may be used again, and
//! `POST /internal/jobs/sweep` deletes the expired rows.

use crate::error::{ApiError, FieldError};

/// How long a key is remembered.
pub const KEY_TTL_HOURS: u32 = 24;
/// Longest key accepted.
pub const MAX_KEY_CHARS: usize = 255;

/// A validated `Idempotency-Key` with the fingerprint of the request body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: [u8; 32],
}

impl IdempotencyKey {
    /// Parses the header value: 1–255 visible ASCII characters (`!` to `~`), optionally
    /// in double quotes (the draft's structured-field string form, quotes not part of the
    /// key). Anything else is a 400 naming the header.
    pub fn parse(value: &str, body: &[u8]) -> Result<Self, ApiError> {
        let trimmed = value.trim();
        let key = trimmed
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(trimmed);
        let ok = !key.is_empty()
            && key.len() <= MAX_KEY_CHARS
            && key.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"');
        if !ok {
            return Err(ApiError::InvalidParameter(vec![FieldError::new(
                "idempotency-key",
                "must be 1 to 255 visible ASCII characters (e.g. a UUID)",
            )]));
        }
        Ok(Self {
            key: key.to_owned(),
            fingerprint: hmac_sha256::Hash::hash(body),
        })
    }

    /// The key of `req`'s `Idempotency-Key` header, if it has one.
    pub fn from_request(req: &spin_sdk::http::Request) -> Result<Option<Self>, ApiError> {
        match req.header("idempotency-key") {
            None => Ok(None),
            Some(value) => {
                let value = value.as_str().unwrap_or("\u{0}");
                Self::parse(value, req.body()).map(Some)
            }
        }
    }

    /// The key as the client sent it (without quotes).
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// SHA-256 of the request body.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// What a taken key says about a new request with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Same body: replay the creation of this resource.
    Same(crate::domain::Uuid),
    /// Another body: 422.
    OtherBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_and_may_be_quoted() {
        let k = IdempotencyKey::parse("\"abc-123\"", b"{}").unwrap();
        assert_eq!(k.as_str(), "abc-123");
        assert_eq!(
            IdempotencyKey::parse("abc-123", b"{}").unwrap(),
            k,
            "quoted and bare are the same key"
        );
        assert_ne!(
            IdempotencyKey::parse("abc-123", b"{ }")
                .unwrap()
                .fingerprint(),
            k.fingerprint()
        );
        for bad in ["", "\"\"", "a b", "é", &"x".repeat(256), "a\"b"] {
            assert_eq!(
                IdempotencyKey::parse(bad, b"").unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
        assert!(IdempotencyKey::parse(&"x".repeat(255), b"").is_ok());
    }
}
