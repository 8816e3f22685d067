//! Reading a JSON request body: the media type, the size limit, and a strict reader over
//! the object that collects every field error (the domain types validate the values).

use spin_sdk::http::Request;

use super::Ctx;
use crate::error::{ApiError, FieldError};

impl Ctx<'_> {
    /// Reads a JSON object body: 413 when over the limit, 415 when not JSON, 400 when
    /// malformed.
    pub fn json_body(&self, req: &Request) -> Result<JsonObject, ApiError> {
        let body = req.body();
        if body.len() > self.http.max_body_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: self.http.max_body_bytes,
            });
        }
        let content_type = req
            .header("content-type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if !is_json_media_type(content_type) || !is_utf8_charset(content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        JsonObject::parse(body)
    }
}

/// `application/json` or any `application/*+json`, parameters (charset) ignored.
pub fn is_json_media_type(value: &str) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Whether a `Content-Type`'s `charset` parameter, if any, is UTF-8 (JSON is UTF-8,
/// RFC 8259 §8.1): a body declared `charset=utf-16` or `latin1` is refused (415) rather
/// than misread as UTF-8.
pub fn is_utf8_charset(value: &str) -> bool {
    value.split(';').skip(1).all(|param| {
        let Some((name, val)) = param.split_once('=') else {
            return true;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let val = val.trim().trim_matches('"');
        val.eq_ignore_ascii_case("utf-8") || val.eq_ignore_ascii_case("utf8")
    })
}

/// A JSON object whose keys are all distinct: deserialising it fails on a repeated key,
/// where `serde_json::Map` would silently keep the last value.
struct UniqueKeys(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom("duplicate key in the object"));
                    }
                    let value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(UniqueKeys(map))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A strict reader over a JSON object body: typed field access, every problem collected
/// with its field name, and unknown fields rejected by [`JsonObject::finish`].
pub struct JsonObject {
    fields: serde_json::Map<String, serde_json::Value>,
    errors: Vec<FieldError>,
}

impl JsonObject {
    /// Parses `body` as a JSON object. Invalid JSON, and an object with a repeated key
    /// (which parsers disagree on: first wins, last wins, error), is a 400; valid JSON that
    /// is not an object is a 422.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        // serde_json's messages name line/column only, never the payload itself.
        match serde_json::from_slice::<UniqueKeys>(body) {
            Ok(UniqueKeys(fields)) => Ok(Self {
                fields,
                errors: Vec::new(),
            }),
            // Valid JSON of another shape (an array, a number...) is a 422; anything else
            // (syntax, a repeated key) a 400.
            Err(e) => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(value) if !value.is_object() => {
                    Err(ApiError::invalid_field("(body)", "must be a JSON object"))
                }
                _ => Err(ApiError::MalformedJson(e.to_string())),
            },
        }
    }

    /// A required string field; records an error and returns `None` if absent or not a string.
    pub fn required_str(&mut self, name: &str) -> Option<String> {
        match self.fields.remove(name) {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
            None => {
                self.error(name, "is required");
                None
            }
        }
    }

    /// An optional string field (absent is fine; `null` or a non-string is an error).
    pub fn optional_str(&mut self, name: &str) -> Option<String> {
        match self.fields.remove(name) {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
            None => None,
        }
    }

    /// An optional field that may be `null` (to clear it): `None` when absent,
    /// `Some(None)` for `null`.
    pub fn nullable_str(&mut self, name: &str) -> Option<Option<String>> {
        match self.fields.remove(name) {
            Some(serde_json::Value::String(s)) => Some(Some(s)),
            Some(serde_json::Value::Null) => Some(None),
            Some(_) => {
                self.error(name, "must be a string or null");
                None
            }
            None => None,
        }
    }

    /// An optional whole number in `min..=max`.
    pub fn optional_int(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        match self.fields.remove(name) {
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    self.error(name, format!("must be a whole number from {min} to {max}"));
                    None
                }
            },
            Some(_) => {
                self.error(name, format!("must be a whole number from {min} to {max}"));
                None
            }
            None => None,
        }
    }

    /// An optional array of strings.
    pub fn optional_str_array(&mut self, name: &str) -> Option<Vec<String>> {
        match self.fields.remove(name) {
            Some(serde_json::Value::Array(items)) => {
                let strings: Option<Vec<String>> = items
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                if strings.is_none() {
                    self.error(name, "must be an array of strings");
                }
                strings
            }
            Some(_) => {
                self.error(name, "must be an array of strings");
                None
            }
            None => None,
        }
    }

    /// An optional boolean field (absent is fine; `null` or a non-boolean is an error).
    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        match self.fields.remove(name) {
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(_) => {
                self.error(name, "must be a boolean");
                None
            }
            None => None,
        }
    }

    /// Parses a present field's value with a domain constructor, recording its error.
    pub fn parse_with<T>(
        &mut self,
        name: &str,
        value: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value?;
        match parse(&value) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(name, message);
                None
            }
        }
    }

    /// Records a field error.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Rejects unknown fields and returns all recorded errors as one 422, if any.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let mut unknown: Vec<String> = self.fields.keys().cloned().collect();
        unknown.sort();
        for name in unknown {
            self.errors
                .push(FieldError::new(name, "is not a known field"));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use spin_sdk::http::Method;

    use super::*;
    use crate::config::{Component, Config, HttpSettings};

    #[test]
    fn json_object_collects_all_errors_and_unknown_fields() {
        let mut obj = JsonObject::parse(br#"{"title": 5, "extra": 1, "other": true}"#).unwrap();
        assert_eq!(obj.required_str("title"), None);
        assert_eq!(obj.optional_bool("completed"), None);
        let err = obj.finish().unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("expected validation error")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "extra", "other"]);
    }

    #[test]
    fn json_object_distinguishes_malformed_from_wrong_shape() {
        assert!(matches!(
            JsonObject::parse(b"{not json"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            JsonObject::parse(b"[1,2]"),
            Err(ApiError::Validation(_))
        ));
        let mut obj = JsonObject::parse(br#"{"completed": null}"#).unwrap();
        assert_eq!(obj.optional_bool("completed"), None);
        assert!(obj.finish().is_err());
    }

    #[test]
    fn repeated_keys_are_malformed_at_any_position() {
        for body in [
            &br#"{"title": "a", "title": "b"}"#[..],
            br#"{"title": "a", "completed": true, "title": "a"}"#,
        ] {
            let Err(ApiError::MalformedJson(why)) = JsonObject::parse(body) else {
                panic!("accepted {}", String::from_utf8_lossy(body))
            };
            assert!(why.contains("duplicate key"), "{why}");
        }
        // Same key in different objects is fine.
        assert!(JsonObject::parse(br#"{"a": {"x": 1}, "b": {"x": 2}}"#).is_ok());
    }

    #[test]
    fn charsets_other_than_utf8_are_refused() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json; foo=bar",
        ] {
            assert!(is_utf8_charset(ok), "{ok}");
        }
        for bad in [
            "application/json; charset=utf-16",
            "application/json; charset=iso-8859-1",
            "application/json; charset=\"utf-32\"",
        ] {
            assert!(!is_utf8_charset(bad), "{bad}");
        }
    }

    #[test]
    fn media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type(""));
        assert!(!is_json_media_type("application/jsonx"));
    }

    #[test]
    fn body_checks() {
        let no_vars = HashMap::new();
        let ctx_for = |limit: usize| Ctx {
            request_id: "r".into(),
            component: "t",
            route: "",
            user_id: None,
            client_addr: String::new(),
            cache: None,
            degraded: vec![],
            rate_limit: None,
            http: HttpSettings {
                cors_allowed_origins: vec![],
                max_body_bytes: limit,
            },
            config: Config::new(Component::Todos, &no_vars),
            started: Instant::now(),
        };
        let req = |ct: &str, body: &[u8]| {
            Request::builder()
                .method(Method::Post)
                .uri("/x")
                .header("content-type", ct)
                .body(body.to_vec())
                .build()
        };
        let ctx = ctx_for(10);
        assert!(matches!(
            ctx.json_body(&req("application/json", b"{\"a\":\"0123456789\"}")),
            Err(ApiError::PayloadTooLarge { limit: 10 })
        ));
        assert!(matches!(
            ctx.json_body(&req("text/plain", b"{}")),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(matches!(
            ctx.json_body(&req("application/json", b"{")),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(ctx.json_body(&req("application/json", b"{}")).is_ok());
    }
}
