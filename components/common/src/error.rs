//! The one error type of the API and its mapping to RFC 9457 `application/problem+json`.
//!
//! Every handler returns `Result<_, ApiError>`; [`ApiError::to_problem`] is the only place
//! that decides status codes and client-visible wording. Internal details (SQL, host
//! messages) travel in [`ApiError::Internal`] / [`ApiError::Unavailable`] for the log line
//! only and never reach the client.

use serde::Serialize;

use crate::rate_limit::RateLimitDecision;

/// Prefix of every problem `type`. A URN: stable, and not pretending to be a page we host.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:todo-api:problem:";

/// At most this many entries in a problem's `errors` (the detail says how many more were
/// left out), so a body of thousands of unknown fields cannot make a larger answer.
pub const MAX_FIELD_ERRORS: usize = 10;

/// Longest field name echoed in a problem (longer ones are cut, with `…`).
pub const MAX_FIELD_NAME_CHARS: usize = 64;

/// One failing field of a request, reported in the problem body's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON field (or query parameter) name, e.g. `username`.
    pub field: String,
    /// What is wrong with it, in words a client developer understands.
    pub message: String,
}

impl FieldError {
    /// A field error for `field` with `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything that can go wrong in a request, as the client should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not syntactically valid JSON (400).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// A query parameter or other non-body input is invalid (400).
    #[error("invalid request: {0:?}")]
    InvalidParameter(Vec<FieldError>),
    /// The body is JSON but does not describe a valid request (422).
    #[error("validation failed: {0:?}")]
    Validation(Vec<FieldError>),
    /// The request body is not `application/json` (415).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The request body exceeds the configured limit (413).
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Wrong username or password; deliberately says nothing about which (401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Missing, malformed, expired or otherwise unacceptable access token (401).
    #[error("invalid access token: {0}")]
    InvalidAccessToken(&'static str),
    /// Unknown, expired, rotated or revoked refresh token (401).
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// The resource does not exist *for this caller* (404): also used for other users' data.
    #[error("not found")]
    NotFound,
    /// The route exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: &'static str,
    },
    /// A unique value is already taken (409).
    #[error("conflict on {field}")]
    Conflict {
        /// The field whose value is taken.
        field: &'static str,
        /// Client-facing explanation.
        detail: &'static str,
    },
    /// An `If-Match` precondition failed: the resource changed since the client read it
    /// (412, optimistic concurrency).
    #[error("precondition failed")]
    PreconditionFailed,
    /// An `Idempotency-Key` was already used with a different request body (422).
    #[error("idempotency key reused with another body")]
    IdempotencyKeyReused,
    /// An `updated_since` older than the tombstone retention: deletions before it may be
    /// gone, so the client must list everything again (410).
    #[error("sync window expired")]
    SyncExpired {
        /// The retention in days.
        days: u32,
    },
    /// Too many requests in the current window (429).
    #[error("rate limited")]
    RateLimited(RateLimitDecision),
    /// The deployment lacks required configuration, e.g. the signing key (503).
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// The component has no such variable: its `[component.X.variables]` in `spin.toml`
    /// does not map it (503). The problem names the variable, so the deployment can be fixed.
    #[error("variable `{0}` is not defined for this component")]
    MissingVariable(&'static str),
    /// A configuration value is invalid (503). The string names the variable, for the log.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// A dependency (PostgreSQL) is unreachable (503). The string is for the log only.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// A bug or unexpected host answer (500). The string is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The serialisable problem document (RFC 9457) plus our extensions.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Stable identifier of the problem kind, `urn:todo-api:problem:<slug>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short, human summary of the problem kind (same for every occurrence).
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// Human explanation of this occurrence.
    pub detail: String,
    /// The request id, so a client can quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Failing fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// Shorthand for a single-field validation error (422).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::MalformedJson(_) | ApiError::InvalidParameter(_) => 400,
            ApiError::InvalidCredentials
            | ApiError::InvalidAccessToken(_)
            | ApiError::InvalidRefreshToken => 401,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict { .. } => 409,
            ApiError::SyncExpired { .. } => 410,
            ApiError::PreconditionFailed => 412,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => 422,
            ApiError::RateLimited(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::NotConfigured(_)
            | ApiError::MissingVariable(_)
            | ApiError::Misconfigured(_)
            | ApiError::Unavailable(_) => 503,
        }
    }

    /// Whether this error is worth a warning in the log (the server's fault, not the client's).
    pub fn is_server_side(&self) -> bool {
        self.status() >= 500
    }

    /// The problem document a client receives. Never contains internal messages.
    pub fn to_problem(&self, request_id: Option<&str>) -> Problem {
        let (slug, title, detail, errors): (&str, &'static str, String, Vec<FieldError>) =
            match self {
                ApiError::MalformedJson(why) => (
                    "malformed-json",
                    "Malformed JSON",
                    format!("The request body is not valid JSON: {why}."),
                    Vec::new(),
                ),
                ApiError::InvalidParameter(errors) => {
                    let (errors, omitted) = bounded(errors);
                    (
                        "invalid-parameter",
                        "Invalid request parameter",
                        describe_fields("Invalid request parameter", &errors, omitted),
                        errors,
                    )
                }
                ApiError::Validation(errors) => {
                    let (errors, omitted) = bounded(errors);
                    (
                        "validation",
                        "Validation failed",
                        describe_fields("The request body is invalid", &errors, omitted),
                        errors,
                    )
                }
                ApiError::UnsupportedMediaType => (
                    "unsupported-media-type",
                    "Unsupported media type",
                    "The request body must be JSON in UTF-8, sent with Content-Type: application/json."
                        .to_owned(),
                    Vec::new(),
                ),
                ApiError::PayloadTooLarge { limit } => (
                    "payload-too-large",
                    "Payload too large",
                    format!("The request body must not exceed {limit} bytes."),
                    Vec::new(),
                ),
                ApiError::InvalidCredentials => (
                    "invalid-credentials",
                    "Invalid credentials",
                    "The username or password is incorrect.".to_owned(),
                    Vec::new(),
                ),
                ApiError::InvalidAccessToken(why) => (
                    "invalid-token",
                    "Invalid access token",
                    format!("A valid bearer access token is required: {why}."),
                    Vec::new(),
                ),
                ApiError::InvalidRefreshToken => (
                    "invalid-refresh-token",
                    "Invalid refresh token",
                    "The refresh token is unknown, expired or no longer valid.".to_owned(),
                    Vec::new(),
                ),
                ApiError::NotFound => (
                    "not-found",
                    "Not found",
                    "No such resource.".to_owned(),
                    Vec::new(),
                ),
                ApiError::MethodNotAllowed { allow } => (
                    "method-not-allowed",
                    "Method not allowed",
                    format!("This route accepts: {allow}."),
                    Vec::new(),
                ),
                ApiError::Conflict { field, detail } => (
                    "conflict",
                    "Conflict",
                    (*detail).to_owned(),
                    vec![FieldError::new(*field, *detail)],
                ),
                ApiError::PreconditionFailed => (
                    "precondition-failed",
                    "Precondition failed",
                    "The resource has changed since the version named in If-Match; read it again."
                        .to_owned(),
                    Vec::new(),
                ),
                ApiError::IdempotencyKeyReused => (
                    "idempotency-key-reused",
                    "Idempotency key reused",
                    "This Idempotency-Key was already used with a different request body."
                        .to_owned(),
                    vec![FieldError::new(
                        "Idempotency-Key",
                        "was already used with a different request body",
                    )],
                ),
                ApiError::SyncExpired { days } => (
                    "sync-expired",
                    "Sync window expired",
                    format!(
                        "updated_since is older than the {days} days deletions are kept; list \
                         every todo again and sync from the time of that read."
                    ),
                    Vec::new(),
                ),
                ApiError::RateLimited(decision) => (
                    "rate-limited",
                    "Too many requests",
                    format!(
                        "Rate limit exceeded; retry in {} seconds.",
                        decision.reset_seconds
                    ),
                    Vec::new(),
                ),
                ApiError::NotConfigured(what) => (
                    "not-configured",
                    "Service not configured",
                    format!("The service is not configured: {what}."),
                    Vec::new(),
                ),
                ApiError::MissingVariable(name) => (
                    "not-configured",
                    "Service not configured",
                    format!(
                        "The service is not configured: variable `{name}` is not defined for \
                         this component."
                    ),
                    Vec::new(),
                ),
                ApiError::Misconfigured(_) => (
                    "not-configured",
                    "Service not configured",
                    "The service configuration is invalid; the details are in the server log."
                        .to_owned(),
                    Vec::new(),
                ),
                ApiError::Unavailable(_) => (
                    "unavailable",
                    "Service unavailable",
                    "A backing service is unavailable; try again shortly.".to_owned(),
                    Vec::new(),
                ),
                ApiError::Internal(_) => (
                    "internal",
                    "Internal server error",
                    "An unexpected error occurred.".to_owned(),
                    Vec::new(),
                ),
            };
        Problem {
            problem_type: format!("{PROBLEM_TYPE_PREFIX}{slug}"),
            title,
            status: self.status(),
            detail,
            request_id: request_id.map(str::to_owned),
            errors,
        }
    }
}

impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> Self {
        use crate::config::ConfigError;
        match e {
            ConfigError::Missing(name) => ApiError::MissingVariable(name),
            // A bug, not a deployment problem: a 500 whose detail stays in the log.
            e @ ConfigError::NotListed { .. } => ApiError::Internal(e.to_string()),
            e => ApiError::Misconfigured(e.to_string()),
        }
    }
}

/// The first [`MAX_FIELD_ERRORS`] errors with field names cut to [`MAX_FIELD_NAME_CHARS`],
/// and how many were left out.
fn bounded(errors: &[FieldError]) -> (Vec<FieldError>, usize) {
    let kept = errors
        .iter()
        .take(MAX_FIELD_ERRORS)
        .map(|e| {
            let field = if e.field.chars().count() > MAX_FIELD_NAME_CHARS {
                let cut: String = e.field.chars().take(MAX_FIELD_NAME_CHARS).collect();
                format!("{cut}…")
            } else {
                e.field.clone()
            };
            FieldError::new(field, e.message.clone())
        })
        .collect();
    (kept, errors.len().saturating_sub(MAX_FIELD_ERRORS))
}

fn describe_fields(prefix: &str, errors: &[FieldError], omitted: usize) -> String {
    let names: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    let more = if omitted > 0 {
        format!(" (and {omitted} more)")
    } else {
        String::new()
    };
    if names.is_empty() {
        format!("{prefix}.")
    } else {
        format!("{prefix}: {}{more}.", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_names_the_fields() {
        let err = ApiError::Validation(vec![
            FieldError::new("username", "too short"),
            FieldError::new("email", "not an address"),
        ]);
        let p = err.to_problem(Some("req-1"));
        assert_eq!(p.status, 422);
        assert_eq!(p.problem_type, "urn:todo-api:problem:validation");
        assert!(p.detail.contains("username, email"));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["errors"][0]["field"], "username");
        assert_eq!(json["request_id"], "req-1");
    }

    #[test]
    fn field_errors_are_bounded_in_number_and_name_length() {
        let mut errors: Vec<FieldError> = (0..500)
            .map(|i| FieldError::new(format!("unknown{i}"), "is not a known field"))
            .collect();
        errors.insert(0, FieldError::new("x".repeat(1000), "is not a known field"));
        let p = ApiError::Validation(errors).to_problem(None);
        assert_eq!(p.errors.len(), MAX_FIELD_ERRORS);
        assert!(p.detail.contains("(and 491 more)"), "{}", p.detail);
        assert_eq!(p.errors[0].field.chars().count(), MAX_FIELD_NAME_CHARS + 1);
        assert!(serde_json::to_string(&p).unwrap().len() < 2000);
        let p = ApiError::invalid_field("title", "must not be empty").to_problem(None);
        assert_eq!(p.detail, "The request body is invalid: title.");
    }

    #[test]
    fn a_missing_variable_is_a_503_naming_it() {
        let err = ApiError::from(crate::config::ConfigError::Missing("rate_limit_api"));
        let p = err.to_problem(Some("req-2"));
        assert_eq!(p.status, 503);
        assert_eq!(p.problem_type, "urn:todo-api:problem:not-configured");
        assert!(p.detail.contains("`rate_limit_api`"), "{}", p.detail);
        let err = ApiError::from(crate::config::ConfigError::Invalid {
            name: "db_url",
            reason: "postgres://secret".into(),
        });
        let body = serde_json::to_string(&err.to_problem(None)).unwrap();
        assert!(
            !body.contains("secret") && body.contains("\"status\":503"),
            "{body}"
        );
    }

    #[test]
    fn internal_messages_never_reach_the_client() {
        let err = ApiError::Internal("syntax error at or near SELECT".into());
        let body = serde_json::to_string(&err.to_problem(None)).unwrap();
        assert!(!body.contains("SELECT"));
        let err = ApiError::Unavailable("connection refused to 10.0.0.1".into());
        let body = serde_json::to_string(&err.to_problem(None)).unwrap();
        assert!(!body.contains("10.0.0.1"));
        assert_eq!(err.status(), 503);
    }
}
