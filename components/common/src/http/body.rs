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
        if !is_json_media_type(content_type) {
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

/// A strict reader over a JSON object body: typed field access, every problem collected
/// with its field name, and unknown fields rejected by [`JsonObject::finish`].
pub struct JsonObject {
    fields: serde_json::Map<String, serde_json::Value>,
    errors: Vec<FieldError>,
}

impl JsonObject {
    /// Parses `body` as a JSON object. Invalid JSON is a 400; valid JSON that is not an
    /// object is a 422.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            // serde_json's message names line/column only, never the payload itself.
            ApiError::MalformedJson(e.to_string())
        })?;
        match value {
            serde_json::Value::Object(fields) => Ok(Self {
                fields,
                errors: Vec::new(),
            }),
            _ => Err(ApiError::invalid_field("(body)", "must be a JSON object")),
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
