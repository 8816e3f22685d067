//! Typed configuration, read from Spin variables and validated once per request.
//!
//! Every value has a variable name (listed in `spin.toml`'s `[variables]` with its
//! default); an invalid value is an error that names the variable, never a silent
//! fallback. Secrets have no defaults. Settings are grouped so a request reads only the
//! variables it needs (each read is a host call).

use crate::rate_limit::Limit;

/// Where variables come from: Spin's variables interface in a component
/// (`crate::platform::SpinVariables`), a map in tests.
pub trait VariableSource {
    /// The variable's value, `Ok(None)` when it is undefined, `Err` when the host failed.
    fn get(&self, name: &str) -> Result<Option<String>, String>;
}

impl VariableSource for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        Ok(std::collections::HashMap::get(self, name).map(|v| (*v).to_owned()))
    }
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is missing or empty.
    #[error("variable `{0}` is not set")]
    Missing(&'static str),
    /// A variable's value cannot be used.
    #[error("variable `{name}` is invalid: {reason}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The host's variables interface failed.
    #[error("cannot read variable `{name}`: {reason}")]
    Host {
        /// Variable name.
        name: &'static str,
        /// The host's message.
        reason: String,
    },
}

pub(crate) fn optional(
    src: &dyn VariableSource,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    match src.get(name) {
        Ok(Some(v)) if !v.trim().is_empty() => Ok(Some(v.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(reason) => Err(ConfigError::Host { name, reason }),
    }
}

pub(crate) fn required(
    src: &dyn VariableSource,
    name: &'static str,
) -> Result<String, ConfigError> {
    optional(src, name)?.ok_or(ConfigError::Missing(name))
}

pub(crate) fn number(
    src: &dyn VariableSource,
    name: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let Some(raw) = optional(src, name)? else {
        return Ok(default);
    };
    let value: u32 = raw.parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("`{raw}` is not a whole number"),
    })?;
    if !range.contains(&value) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        });
    }
    Ok(value)
}

/// Settings every API request needs: CORS, body limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Origins allowed by CORS (`cors_allowed_origins`, comma-separated; `*` for any;
    /// empty for none, the default: a same-origin or server-side client needs no CORS).
    pub cors_allowed_origins: Vec<String>,
    /// Largest accepted request body (`max_body_bytes`, default 65536).
    pub max_body_bytes: usize,
}

impl HttpSettings {
    /// Reads and validates the HTTP settings.
    pub fn load(src: &dyn VariableSource) -> Result<Self, ConfigError> {
        let cors_allowed_origins = optional(src, "cors_allowed_origins")?
            .map(|raw| {
                raw.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let max_body_bytes = number(src, "max_body_bytes", 65_536, 1..=16 * 1024 * 1024)? as usize;
        Ok(Self {
            cors_allowed_origins,
            max_body_bytes,
        })
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if it is allowed.
    pub fn allowed_origin(&self, origin: &str) -> Option<String> {
        if self.cors_allowed_origins.iter().any(|o| o == "*") {
            return Some("*".to_owned());
        }
        self.cors_allowed_origins
            .iter()
            .find(|o| o.eq_ignore_ascii_case(origin))
            .map(|_| origin.to_owned())
    }
}

/// Where the data lives.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// PostgreSQL connection string (`db_url`, secret).
    pub db_url: String,
    /// Redis URL (`redis_url`, secret).
    pub redis_url: String,
    /// Prefix of every Redis key (`redis_key_prefix`, default `todo`), so deployments or
    /// test runs can share one Redis without seeing each other's counters and caches.
    pub redis_key_prefix: String,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("db_url", &"<secret>")
            .field("redis_url", &"<secret>")
            .field("redis_key_prefix", &self.redis_key_prefix)
            .finish()
    }
}

impl StoreSettings {
    /// Reads the store settings.
    pub fn load(src: &dyn VariableSource) -> Result<Self, ConfigError> {
        let redis_key_prefix =
            optional(src, "redis_key_prefix")?.unwrap_or_else(|| "todo".to_owned());
        if !redis_key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(ConfigError::Invalid {
                name: "redis_key_prefix",
                reason: "use only letters, digits, '_', '-' and '.'".into(),
            });
        }
        Ok(Self {
            db_url: required(src, "db_url")?,
            redis_url: required(src, "redis_url")?,
            redis_key_prefix,
        })
    }
}

/// Access- and refresh-token settings (the key itself is parsed by `crate::tokens`).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `jwt_signing_key` (secret, no default): `None` means "not configured" → 503.
    pub signing_key: Option<String>,
    /// `iss` claim issued and required (`jwt_issuer`, default `todo-api`).
    pub issuer: String,
    /// `aud` claim issued and required (`jwt_audience`, default `todo-api`).
    pub audience: String,
    /// Access-token lifetime (`access_token_ttl_seconds`, default 900 = 15 min).
    pub access_token_ttl_seconds: u32,
    /// Refresh-token lifetime (`refresh_token_ttl_seconds`, default 2592000 = 30 days).
    pub refresh_token_ttl_seconds: u32,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<secret>"),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_token_ttl_seconds", &self.access_token_ttl_seconds)
            .field("refresh_token_ttl_seconds", &self.refresh_token_ttl_seconds)
            .finish()
    }
}

impl TokenSettings {
    /// Reads everything issuing tokens needs (the auth component).
    pub fn load(src: &dyn VariableSource) -> Result<Self, ConfigError> {
        Ok(Self {
            access_token_ttl_seconds: number(src, "access_token_ttl_seconds", 900, 30..=86_400)?,
            refresh_token_ttl_seconds: number(
                src,
                "refresh_token_ttl_seconds",
                2_592_000,
                60..=31_536_000,
            )?,
            ..Self::load_for_verifying(src)?
        })
    }

    /// Reads only what verifying an access token needs (key, `iss`, `aud`), leaving the
    /// lifetimes at their defaults: the hot path of every authenticated request.
    pub fn load_for_verifying(src: &dyn VariableSource) -> Result<Self, ConfigError> {
        Ok(Self {
            signing_key: optional(src, "jwt_signing_key")?,
            issuer: optional(src, "jwt_issuer")?.unwrap_or_else(|| "todo-api".to_owned()),
            audience: optional(src, "jwt_audience")?.unwrap_or_else(|| "todo-api".to_owned()),
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 2_592_000,
        })
    }
}

/// The rate limits, each `<requests>/<window seconds>` in its own variable. Read one at a
/// time, so a component reads (and declares in `spin.toml`) only the limits it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitName {
    /// Per user on authenticated routes (`rate_limit_api`, default `600/60`).
    Api,
    /// Per client address on login (`rate_limit_login_address`, default `30/60`).
    LoginAddress,
    /// Per username on login (`rate_limit_login_username`, default `10/300`): slows
    /// password guessing against one account from many addresses.
    LoginUsername,
    /// Per client address on register (`rate_limit_register_address`, default `20/3600`).
    RegisterAddress,
}

impl RateLimitName {
    /// The variable and its default.
    pub fn variable(self) -> (&'static str, Limit) {
        let l = |max_requests, window_seconds| Limit {
            max_requests,
            window_seconds,
        };
        match self {
            RateLimitName::Api => ("rate_limit_api", l(600, 60)),
            RateLimitName::LoginAddress => ("rate_limit_login_address", l(30, 60)),
            RateLimitName::LoginUsername => ("rate_limit_login_username", l(10, 300)),
            RateLimitName::RegisterAddress => ("rate_limit_register_address", l(20, 3600)),
        }
    }

    /// Reads and validates the limit.
    pub fn load(self, src: &dyn VariableSource) -> Result<Limit, ConfigError> {
        let (name, default) = self.variable();
        let Some(raw) = optional(src, name)? else {
            return Ok(default);
        };
        let invalid = || ConfigError::Invalid {
            name,
            reason: format!("`{raw}` is not `<requests>/<window seconds>`, e.g. 600/60"),
        };
        let (n, w) = raw.split_once('/').ok_or_else(invalid)?;
        let max_requests: u32 = n.trim().parse().map_err(|_| invalid())?;
        let window_seconds: u32 = w.trim().parse().map_err(|_| invalid())?;
        if max_requests == 0 || window_seconds == 0 || window_seconds > 86_400 {
            return Err(invalid());
        }
        Ok(Limit {
            max_requests,
            window_seconds,
        })
    }
}

/// How long a cached `GET /todos` page lives (`todos_cache_ttl_seconds`, default 300;
/// 0 disables the cache).
pub fn todos_cache_ttl_seconds(src: &dyn VariableSource) -> Result<u32, ConfigError> {
    number(src, "todos_cache_ttl_seconds", 300, 0..=86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_and_secrets_are_required() {
        let vars: HashMap<&str, &str> = HashMap::new();
        let http = HttpSettings::load(&vars).unwrap();
        assert_eq!(http.max_body_bytes, 65_536);
        assert!(http.cors_allowed_origins.is_empty());
        assert_eq!(
            StoreSettings::load(&vars).unwrap_err(),
            ConfigError::Missing("db_url")
        );
        let tokens = TokenSettings::load(&vars).unwrap();
        assert!(tokens.signing_key.is_none());
        assert_eq!(tokens.access_token_ttl_seconds, 900);
        assert_eq!(tokens.refresh_token_ttl_seconds, 30 * 24 * 3600);
        let api = RateLimitName::Api.load(&vars).unwrap();
        assert_eq!(api.max_requests, 600);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let vars = HashMap::from([
            ("max_body_bytes", "lots"),
            ("rate_limit_api", "5 per minute"),
        ]);
        let err = HttpSettings::load(&vars).unwrap_err();
        assert!(err.to_string().contains("max_body_bytes"));
        let err = RateLimitName::Api.load(&vars).unwrap_err();
        assert!(err.to_string().contains("rate_limit_api"));
        let vars = HashMap::from([("rate_limit_api", "0/60")]);
        assert!(RateLimitName::Api.load(&vars).is_err());
        let vars = HashMap::from([("rate_limit_api", " 5 / 10 ")]);
        assert_eq!(
            RateLimitName::Api.load(&vars).unwrap(),
            Limit {
                max_requests: 5,
                window_seconds: 10
            }
        );
    }

    #[test]
    fn cors_origins() {
        let vars = HashMap::from([(
            "cors_allowed_origins",
            "https://app.example.com/, http://localhost:5173",
        )]);
        let http = HttpSettings::load(&vars).unwrap();
        assert_eq!(
            http.allowed_origin("https://app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert!(http.allowed_origin("https://evil.example.com").is_none());
        let any = HttpSettings::load(&HashMap::from([("cors_allowed_origins", "*")])).unwrap();
        assert_eq!(
            any.allowed_origin("https://x.example").as_deref(),
            Some("*")
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let vars = HashMap::from([
            ("db_url", "postgres://todo:hunter2@127.0.0.1/todo"),
            ("redis_url", "redis://:pw@127.0.0.1"),
            ("jwt_signing_key", "ed25519:k:SECRET"),
        ]);
        let s = format!(
            "{:?} {:?}",
            StoreSettings::load(&vars).unwrap(),
            TokenSettings::load(&vars).unwrap()
        );
        assert!(!s.contains("hunter2") && !s.contains("SECRET") && !s.contains(":pw@"));
    }
}
