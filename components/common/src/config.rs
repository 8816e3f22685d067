//! Configuration: every Spin variable the app's code reads, which component reads which,
//! and the typed, validated settings built from them.
//!
//! - [`Variable`] lists every variable the code reads; [`Component::variables`] says which
//!   ones each component reads. That table must equal each `[component.X.variables]`
//!   mapping in `spin.toml` (a unit test below checks both directions).
//! - [`Config`] is the one reader, made once per request (or Redis message): it reads each
//!   variable from the host at most once, refuses variables its component does not list,
//!   and builds the typed settings ([`HttpSettings`], [`StoreSettings`], ...).
//! - Defaults live only in `spin.toml`'s `[variables]`. A variable the component lacks (the
//!   host answers "undefined": it is missing from the component's mapping) is
//!   [`ConfigError::Missing`], a 503 problem naming it; the code never substitutes a value.
//!   An empty value is an error too, except for the variables where empty means "off"
//!   (CORS origins, the signing key, the mail webhook, the sweep token).
//!
//! Settings are read lazily, so a request reads only the variables it needs (each read is
//! a host call) and an error in one setting does not fail routes that do not use it.

use std::cell::RefCell;

use crate::jobs::RetryPolicy;
use crate::rate_limit::Limit;

/// Every variable the app's code reads (`spin.toml` declares a few more that only
/// templates use: `db_host`, `redis_host`, `mail_webhook_origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variable {
    /// PostgreSQL connection URL (secret).
    DbUrl,
    /// Redis URL (secret).
    RedisUrl,
    /// Prefix of every Redis key.
    RedisKeyPrefix,
    /// Ed25519 signing key (secret; empty: the token routes answer 503).
    JwtSigningKey,
    /// `iss` claim.
    JwtIssuer,
    /// `aud` claim.
    JwtAudience,
    /// Access-token lifetime.
    AccessTokenTtlSeconds,
    /// Refresh-token lifetime.
    RefreshTokenTtlSeconds,
    /// Lifetime of a cached `GET /todos` page.
    TodosCacheTtlSeconds,
    /// Per-user limit on `/todos`.
    RateLimitApi,
    /// Per-address limit on login.
    RateLimitLoginAddress,
    /// Per-username failed logins before the guard engages.
    RateLimitLoginUsername,
    /// Failed logins per username and client address.
    RateLimitLoginPair,
    /// The guard's interval: one login per username and unrecognised address.
    LoginGuardIntervalSeconds,
    /// Per-address limit on register.
    RateLimitRegisterAddress,
    /// Per-address limit on the sweep route.
    RateLimitSweepAddress,
    /// CORS origins (empty: none).
    CorsAllowedOrigins,
    /// Largest accepted request body.
    MaxBodyBytes,
    /// Redis channel of new job ids.
    JobsChannel,
    /// Mail webhook URL (secret; empty: e-mails are logged).
    MailWebhookUrl,
    /// First retry delay of a job.
    JobsRetryBaseSeconds,
    /// Longest retry delay of a job.
    JobsRetryMaxSeconds,
    /// Attempts before a job fails.
    JobsMaxAttempts,
    /// Token of the sweep route (secret; empty: the route answers 503).
    JobsSweepToken,
}

impl Variable {
    /// Every variable, in declaration order.
    pub const ALL: [Variable; 24] = [
        Variable::DbUrl,
        Variable::RedisUrl,
        Variable::RedisKeyPrefix,
        Variable::JwtSigningKey,
        Variable::JwtIssuer,
        Variable::JwtAudience,
        Variable::AccessTokenTtlSeconds,
        Variable::RefreshTokenTtlSeconds,
        Variable::TodosCacheTtlSeconds,
        Variable::RateLimitApi,
        Variable::RateLimitLoginAddress,
        Variable::RateLimitLoginUsername,
        Variable::RateLimitLoginPair,
        Variable::LoginGuardIntervalSeconds,
        Variable::RateLimitRegisterAddress,
        Variable::RateLimitSweepAddress,
        Variable::CorsAllowedOrigins,
        Variable::MaxBodyBytes,
        Variable::JobsChannel,
        Variable::MailWebhookUrl,
        Variable::JobsRetryBaseSeconds,
        Variable::JobsRetryMaxSeconds,
        Variable::JobsMaxAttempts,
        Variable::JobsSweepToken,
    ];

    /// The variable's name in `spin.toml`.
    pub const fn name(self) -> &'static str {
        match self {
            Variable::DbUrl => "db_url",
            Variable::RedisUrl => "redis_url",
            Variable::RedisKeyPrefix => "redis_key_prefix",
            Variable::JwtSigningKey => "jwt_signing_key",
            Variable::JwtIssuer => "jwt_issuer",
            Variable::JwtAudience => "jwt_audience",
            Variable::AccessTokenTtlSeconds => "access_token_ttl_seconds",
            Variable::RefreshTokenTtlSeconds => "refresh_token_ttl_seconds",
            Variable::TodosCacheTtlSeconds => "todos_cache_ttl_seconds",
            Variable::RateLimitApi => "rate_limit_api",
            Variable::RateLimitLoginAddress => "rate_limit_login_address",
            Variable::RateLimitLoginUsername => "rate_limit_login_username",
            Variable::RateLimitLoginPair => "rate_limit_login_pair",
            Variable::LoginGuardIntervalSeconds => "login_guard_interval_seconds",
            Variable::RateLimitRegisterAddress => "rate_limit_register_address",
            Variable::RateLimitSweepAddress => "rate_limit_sweep_address",
            Variable::CorsAllowedOrigins => "cors_allowed_origins",
            Variable::MaxBodyBytes => "max_body_bytes",
            Variable::JobsChannel => "jobs_channel",
            Variable::MailWebhookUrl => "mail_webhook_url",
            Variable::JobsRetryBaseSeconds => "jobs_retry_base_seconds",
            Variable::JobsRetryMaxSeconds => "jobs_retry_max_seconds",
            Variable::JobsMaxAttempts => "jobs_max_attempts",
            Variable::JobsSweepToken => "jobs_sweep_token",
        }
    }
}

/// The app's components, each with the variables its code reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Liveness and readiness.
    Health,
    /// Accounts and tokens.
    Auth,
    /// The caller's todos.
    Todos,
    /// Background jobs and the sweep route.
    Notifier,
}

impl Component {
    /// Every component.
    pub const ALL: [Component; 4] = [
        Component::Health,
        Component::Auth,
        Component::Todos,
        Component::Notifier,
    ];

    /// The component's name in `spin.toml` (and in log lines).
    pub const fn name(self) -> &'static str {
        match self {
            Component::Health => "health",
            Component::Auth => "auth",
            Component::Todos => "todos",
            Component::Notifier => "notifier",
        }
    }

    /// The variables the component's code reads: exactly its `[component.X.variables]`.
    /// Every component served through `crate::http::serve` reads `cors_allowed_origins`
    /// and `max_body_bytes`.
    pub const fn variables(self) -> &'static [Variable] {
        use Variable::*;
        match self {
            Component::Health => &[DbUrl, RedisUrl],
            Component::Auth => &[
                DbUrl,
                RedisUrl,
                RedisKeyPrefix,
                JwtSigningKey,
                JwtIssuer,
                JwtAudience,
                AccessTokenTtlSeconds,
                RefreshTokenTtlSeconds,
                RateLimitLoginAddress,
                RateLimitLoginUsername,
                RateLimitLoginPair,
                LoginGuardIntervalSeconds,
                RateLimitRegisterAddress,
                RateLimitApi,
                JobsChannel,
                CorsAllowedOrigins,
                MaxBodyBytes,
            ],
            Component::Todos => &[
                DbUrl,
                RedisUrl,
                RedisKeyPrefix,
                JwtSigningKey,
                JwtIssuer,
                JwtAudience,
                TodosCacheTtlSeconds,
                RateLimitApi,
                CorsAllowedOrigins,
                MaxBodyBytes,
            ],
            Component::Notifier => &[
                DbUrl,
                RedisUrl,
                RedisKeyPrefix,
                MailWebhookUrl,
                JobsRetryBaseSeconds,
                JobsRetryMaxSeconds,
                JobsMaxAttempts,
                JobsSweepToken,
                RateLimitSweepAddress,
                CorsAllowedOrigins,
                MaxBodyBytes,
            ],
        }
    }

    /// Whether the component's code reads `variable`.
    pub fn reads(self, variable: Variable) -> bool {
        self.variables().contains(&variable)
    }
}

/// Where variables come from: Spin's variables interface in a component
/// (`crate::store::SpinVariables`), a map in tests.
pub trait VariableSource {
    /// The variable's value; `Ok(None)` when the host says it is undefined for this
    /// component (not in its `[component.X.variables]`); `Err` when the host failed.
    fn get(&self, name: &str) -> Result<Option<String>, String>;
}

impl VariableSource for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        Ok(std::collections::HashMap::get(self, name).map(|v| (*v).to_owned()))
    }
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The component has no such variable: it is missing from its `[component.X.variables]`.
    #[error("variable `{0}` is not defined for this component")]
    Missing(&'static str),
    /// The variable is set to an empty value where one is needed.
    #[error("variable `{0}` is empty")]
    Empty(&'static str),
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
    /// The code read a variable its component does not list in [`Component::variables`]:
    /// a bug (the list and `spin.toml` are checked against each other by a test).
    #[error("component `{component}` read variable `{name}`, which it does not list")]
    NotListed {
        /// The component.
        component: &'static str,
        /// Variable name.
        name: &'static str,
    },
}

/// The one reader of variables for one request or message: each variable is read from the
/// host at most once, and only if the component lists it.
pub struct Config<'s> {
    component: Component,
    source: &'s dyn VariableSource,
    read: RefCell<Vec<(Variable, Result<String, ConfigError>)>>,
}

impl std::fmt::Debug for Config<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: only the names that were read.
        let read: Vec<&str> = self.read.borrow().iter().map(|(v, _)| v.name()).collect();
        f.debug_struct("Config")
            .field("component", &self.component)
            .field("read", &read)
            .finish()
    }
}

impl<'s> Config<'s> {
    /// A reader for `component`'s variables from `source`.
    pub fn new(component: Component, source: &'s dyn VariableSource) -> Self {
        Self {
            component,
            source,
            read: RefCell::new(Vec::new()),
        }
    }

    /// The component this configuration is for.
    pub fn component(&self) -> Component {
        self.component
    }

    /// The variable's trimmed value (possibly empty), read from the host once.
    pub fn value(&self, variable: Variable) -> Result<String, ConfigError> {
        let name = variable.name();
        if !self.component.reads(variable) {
            return Err(ConfigError::NotListed {
                component: self.component.name(),
                name,
            });
        }
        if let Some((_, value)) = self.read.borrow().iter().find(|(v, _)| *v == variable) {
            return value.clone();
        }
        let value = match self.source.get(name) {
            Ok(Some(v)) => Ok(v.trim().to_owned()),
            Ok(None) => Err(ConfigError::Missing(name)),
            Err(reason) => Err(ConfigError::Host { name, reason }),
        };
        self.read.borrow_mut().push((variable, value.clone()));
        value
    }

    /// A value that must not be empty.
    fn non_empty(&self, variable: Variable) -> Result<String, ConfigError> {
        let value = self.value(variable)?;
        if value.is_empty() {
            return Err(ConfigError::Empty(variable.name()));
        }
        Ok(value)
    }

    /// A value where empty means "off".
    fn optional(&self, variable: Variable) -> Result<Option<String>, ConfigError> {
        let value = self.value(variable)?;
        Ok((!value.is_empty()).then_some(value))
    }

    /// A whole number within `range`.
    fn number(
        &self,
        variable: Variable,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<u32, ConfigError> {
        let name = variable.name();
        let raw = self.non_empty(variable)?;
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

    /// The HTTP settings every API request needs.
    pub fn http(&self) -> Result<HttpSettings, ConfigError> {
        let cors_allowed_origins = self
            .optional(Variable::CorsAllowedOrigins)?
            .map(|raw| {
                raw.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let max_body_bytes = self.number(Variable::MaxBodyBytes, 1..=16 * 1024 * 1024)? as usize;
        Ok(HttpSettings {
            cors_allowed_origins,
            max_body_bytes,
        })
    }

    /// The PostgreSQL connection URL (`db_url`).
    pub fn db_url(&self) -> Result<String, ConfigError> {
        self.non_empty(Variable::DbUrl)
    }

    /// The Redis URL (`redis_url`).
    pub fn redis_url(&self) -> Result<String, ConfigError> {
        self.non_empty(Variable::RedisUrl)
    }

    /// Where the data lives.
    pub fn store(&self) -> Result<StoreSettings, ConfigError> {
        let redis_key_prefix = self.non_empty(Variable::RedisKeyPrefix)?;
        if !redis_key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(ConfigError::Invalid {
                name: Variable::RedisKeyPrefix.name(),
                reason: "use only letters, digits, '_', '-' and '.'".into(),
            });
        }
        Ok(StoreSettings {
            db_url: self.db_url()?,
            redis_url: self.redis_url()?,
            redis_key_prefix,
        })
    }

    /// What verifying (and issuing) an access token needs: key, `iss`, `aud`.
    pub fn tokens(&self) -> Result<TokenSettings, ConfigError> {
        Ok(TokenSettings {
            signing_key: self.optional(Variable::JwtSigningKey)?,
            issuer: self.non_empty(Variable::JwtIssuer)?,
            audience: self.non_empty(Variable::JwtAudience)?,
        })
    }

    /// Token lifetimes (issuing only: the auth component).
    pub fn token_lifetimes(&self) -> Result<TokenLifetimes, ConfigError> {
        Ok(TokenLifetimes {
            access_token_ttl_seconds: self.number(Variable::AccessTokenTtlSeconds, 30..=86_400)?,
            refresh_token_ttl_seconds: self
                .number(Variable::RefreshTokenTtlSeconds, 60..=31_536_000)?,
        })
    }

    /// One rate limit, `<requests>/<window seconds>`.
    pub fn rate_limit(&self, which: RateLimitName) -> Result<Limit, ConfigError> {
        let variable = which.variable();
        let name = variable.name();
        let raw = self.non_empty(variable)?;
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

    /// While the login guard is engaged for a username, how often an address that has not
    /// logged in to it before may try (`login_guard_interval_seconds`).
    pub fn login_guard_interval_seconds(&self) -> Result<u32, ConfigError> {
        self.number(Variable::LoginGuardIntervalSeconds, 1..=86_400)
    }

    /// How long a cached `GET /todos` page lives (0 disables the cache).
    pub fn todos_cache_ttl_seconds(&self) -> Result<u32, ConfigError> {
        self.number(Variable::TodosCacheTtlSeconds, 0..=86_400)
    }

    /// The Redis channel job ids are published on. The notifier's `[[trigger.redis]]`
    /// subscribes to the same variable (through the manifest, not through code).
    pub fn jobs_channel(&self) -> Result<String, ConfigError> {
        let channel = self.non_empty(Variable::JobsChannel)?;
        if channel.len() > 128 || channel.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid {
                name: Variable::JobsChannel.name(),
                reason: "use at most 128 visible characters".into(),
            });
        }
        Ok(channel)
    }

    /// The jobs' retry policy.
    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        let base_seconds = self.number(Variable::JobsRetryBaseSeconds, 1..=3_600)?;
        let max_seconds = self.number(Variable::JobsRetryMaxSeconds, 1..=86_400)?;
        if max_seconds < base_seconds {
            return Err(ConfigError::Invalid {
                name: Variable::JobsRetryMaxSeconds.name(),
                reason: format!("{max_seconds} is below jobs_retry_base_seconds ({base_seconds})"),
            });
        }
        Ok(RetryPolicy {
            base_seconds,
            max_seconds,
            max_attempts: self.number(Variable::JobsMaxAttempts, 1..=100)?,
        })
    }

    /// Where e-mails go (secret: a webhook URL often carries a token). Empty: e-mails are
    /// written to the log and recorded as delivered, for local development.
    pub fn mail_webhook_url(&self) -> Result<Option<String>, ConfigError> {
        let url = self.optional(Variable::MailWebhookUrl)?;
        if let Some(url) = &url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    name: Variable::MailWebhookUrl.name(),
                    reason: "must be an http:// or https:// URL".into(),
                });
            }
        }
        Ok(url)
    }

    /// The sweep route's token. Empty: the route is off (503), never open.
    pub fn jobs_sweep_token(&self) -> Result<Option<String>, ConfigError> {
        self.optional(Variable::JobsSweepToken)
    }
}

/// Settings every API request needs: CORS, body limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Origins allowed by CORS (`cors_allowed_origins`, comma-separated; `*` for any;
    /// empty for none: a same-origin or server-side client needs no CORS).
    pub cors_allowed_origins: Vec<String>,
    /// Largest accepted request body (`max_body_bytes`).
    pub max_body_bytes: usize,
}

impl HttpSettings {
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
    /// Prefix of every Redis key (`redis_key_prefix`), so deployments or test runs can
    /// share one Redis without seeing each other's counters and caches.
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

/// What verifying and issuing access tokens needs (the key itself is parsed by
/// `crate::tokens`).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `jwt_signing_key` (secret): `None` (empty) means "not configured" → 503.
    pub signing_key: Option<String>,
    /// `iss` claim issued and required (`jwt_issuer`).
    pub issuer: String,
    /// `aud` claim issued and required (`jwt_audience`).
    pub audience: String,
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
            .finish()
    }
}

/// Token lifetimes, for issuing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    /// Access-token lifetime (`access_token_ttl_seconds`).
    pub access_token_ttl_seconds: u32,
    /// Refresh-token lifetime (`refresh_token_ttl_seconds`).
    pub refresh_token_ttl_seconds: u32,
}

/// The rate limits, each `<requests>/<window seconds>` in its own variable. Read one at a
/// time, so a component reads (and maps in `spin.toml`) only the limits it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitName {
    /// Per user on authenticated routes (`rate_limit_api`).
    Api,
    /// Per client address on login (`rate_limit_login_address`).
    LoginAddress,
    /// Failed logins per username from all addresses (`rate_limit_login_username`): over
    /// it, the login guard engages (`crate::login_guard`); never a refusal by itself.
    LoginUsername,
    /// Failed logins per username and client address (`rate_limit_login_pair`): over it,
    /// that address (only) is refused for that username.
    LoginPair,
    /// Per client address on register (`rate_limit_register_address`).
    RegisterAddress,
    /// Per client address on the sweep route, before its token is compared
    /// (`rate_limit_sweep_address`).
    SweepAddress,
}

impl RateLimitName {
    /// The variable holding the limit.
    pub const fn variable(self) -> Variable {
        match self {
            RateLimitName::Api => Variable::RateLimitApi,
            RateLimitName::LoginAddress => Variable::RateLimitLoginAddress,
            RateLimitName::LoginUsername => Variable::RateLimitLoginUsername,
            RateLimitName::LoginPair => Variable::RateLimitLoginPair,
            RateLimitName::RegisterAddress => Variable::RateLimitRegisterAddress,
            RateLimitName::SweepAddress => Variable::RateLimitSweepAddress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::{BTreeSet, HashMap};

    /// spin.toml's defaults, as a component whose mapping has every variable sees them.
    fn manifest() -> toml::Table {
        let text = include_str!("../../../spin.toml");
        text.parse().expect("spin.toml is TOML")
    }

    fn defaults() -> HashMap<&'static str, &'static str> {
        let manifest = Box::leak(Box::new(manifest()));
        manifest["variables"]
            .as_table()
            .unwrap()
            .iter()
            .filter_map(|(name, decl)| Some((name.as_str(), decl.get("default")?.as_str()?)))
            .collect()
    }

    fn everything() -> HashMap<&'static str, &'static str> {
        let mut vars = defaults();
        vars.insert("db_url", "postgres://todo:hunter2@127.0.0.1/todo");
        vars.insert("redis_url", "redis://:pw@127.0.0.1");
        vars
    }

    #[test]
    fn every_components_mapping_is_exactly_what_its_code_reads() {
        let manifest = manifest();
        let components = manifest["component"].as_table().unwrap();
        let declared: BTreeSet<&str> = manifest["variables"]
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut problems = Vec::new();
        for component in Component::ALL {
            let name = component.name();
            let mapped: BTreeSet<&str> = components
                .get(name)
                .unwrap_or_else(|| panic!("spin.toml has no [component.{name}]"))
                .get("variables")
                .and_then(|v| v.as_table())
                .map(|t| t.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let read: BTreeSet<&str> = component.variables().iter().map(|v| v.name()).collect();
            for missing in read.difference(&mapped) {
                problems.push(format!(
                    "{name} reads `{missing}` but [component.{name}.variables] does not map it"
                ));
            }
            for unused in mapped.difference(&read) {
                problems.push(format!(
                    "[component.{name}.variables] maps `{unused}` but the code never reads it \
                     (config::Component::variables)"
                ));
            }
            for undeclared in read.difference(&declared) {
                problems.push(format!(
                    "{name} reads `{undeclared}`, which spin.toml's [variables] does not declare"
                ));
            }
        }
        // The web component serves static files and reads no variables (nor this module).
        for (name, component) in components {
            if Component::ALL.iter().any(|c| c.name() == name) {
                continue;
            }
            if name != "web" {
                problems.push(format!(
                    "[component.{name}] in spin.toml has no entry in config::Component"
                ));
            } else if component.get("variables").is_some() {
                problems.push(format!(
                    "[component.{name}.variables]: the web component reads no variables"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_checker_notices_either_direction() {
        // The same comparison as above, on a broken mapping, so the test can fail.
        let read: BTreeSet<&str> = Component::Todos
            .variables()
            .iter()
            .map(|v| v.name())
            .collect();
        let mut mapped = read.clone();
        mapped.remove("rate_limit_api");
        mapped.insert("jobs_channel");
        assert_eq!(
            read.difference(&mapped).collect::<Vec<_>>(),
            [&"rate_limit_api"]
        );
        assert_eq!(
            mapped.difference(&read).collect::<Vec<_>>(),
            [&"jobs_channel"]
        );
    }

    #[test]
    fn variable_names_are_unique_and_all_listed() {
        let names: BTreeSet<&str> = Variable::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(names.len(), Variable::ALL.len());
        for component in Component::ALL {
            for v in component.variables() {
                assert!(Variable::ALL.contains(v), "{v:?}");
            }
        }
    }

    #[test]
    fn spin_toml_defaults_are_valid_settings() {
        let vars = everything();
        let all = |component| Config::new(component, &vars);
        let auth = all(Component::Auth);
        assert_eq!(auth.http().unwrap().max_body_bytes, 65_536);
        assert!(auth.http().unwrap().cors_allowed_origins.is_empty());
        assert_eq!(auth.store().unwrap().redis_key_prefix, "todo");
        let tokens = auth.tokens().unwrap();
        assert!(tokens.signing_key.is_none());
        assert_eq!(tokens.issuer, "todo-api");
        let lifetimes = auth.token_lifetimes().unwrap();
        assert_eq!(lifetimes.access_token_ttl_seconds, 900);
        assert_eq!(lifetimes.refresh_token_ttl_seconds, 30 * 24 * 3600);
        assert_eq!(auth.jobs_channel().unwrap(), "jobs");
        for limit in [
            RateLimitName::LoginAddress,
            RateLimitName::LoginUsername,
            RateLimitName::LoginPair,
            RateLimitName::RegisterAddress,
        ] {
            auth.rate_limit(limit).unwrap();
        }
        assert_eq!(auth.login_guard_interval_seconds().unwrap(), 300);
        let todos = all(Component::Todos);
        assert_eq!(
            todos.rate_limit(RateLimitName::Api).unwrap().max_requests,
            600
        );
        assert_eq!(todos.todos_cache_ttl_seconds().unwrap(), 300);
        let notifier = all(Component::Notifier);
        assert_eq!(
            notifier.retry_policy().unwrap(),
            RetryPolicy {
                base_seconds: 2,
                max_seconds: 600,
                max_attempts: 8
            }
        );
        assert_eq!(notifier.mail_webhook_url().unwrap(), None);
        assert_eq!(notifier.jobs_sweep_token().unwrap(), None);
        notifier.rate_limit(RateLimitName::SweepAddress).unwrap();
    }

    #[test]
    fn a_variable_the_component_lacks_is_missing_not_defaulted() {
        let mut vars = everything();
        vars.remove("max_body_bytes");
        vars.remove("jwt_issuer");
        let config = Config::new(Component::Todos, &vars);
        assert_eq!(
            config.http().unwrap_err(),
            ConfigError::Missing("max_body_bytes")
        );
        assert_eq!(
            config.tokens().unwrap_err(),
            ConfigError::Missing("jwt_issuer")
        );
        // Empty is not "use a default" either, except where empty means off.
        let vars = HashMap::from([("max_body_bytes", ""), ("cors_allowed_origins", "")]);
        let config = Config::new(Component::Todos, &vars);
        assert_eq!(
            config.http().unwrap_err(),
            ConfigError::Empty("max_body_bytes")
        );
    }

    #[test]
    fn a_variable_the_component_does_not_list_is_refused() {
        let vars = everything();
        let health = Config::new(Component::Health, &vars);
        assert!(matches!(
            health.store().unwrap_err(),
            ConfigError::NotListed {
                component: "health",
                name: "redis_key_prefix"
            }
        ));
        assert!(health.db_url().is_ok());
    }

    /// Counts host reads.
    struct Counting<'a>(&'a HashMap<&'static str, &'static str>, Cell<u32>);

    impl VariableSource for Counting<'_> {
        fn get(&self, name: &str) -> Result<Option<String>, String> {
            self.1.set(self.1.get() + 1);
            VariableSource::get(self.0, name)
        }
    }

    #[test]
    fn each_variable_is_read_once_per_config() {
        let vars = everything();
        let source = Counting(&vars, Cell::new(0));
        let config = Config::new(Component::Todos, &source);
        config.store().unwrap();
        config.store().unwrap();
        config.db_url().unwrap();
        assert_eq!(source.1.get(), 3);
        let failing = HashMap::new();
        let source = Counting(&failing, Cell::new(0));
        let config = Config::new(Component::Todos, &source);
        assert!(config.db_url().is_err() && config.db_url().is_err());
        assert_eq!(source.1.get(), 1);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let mut vars = everything();
        vars.insert("max_body_bytes", "lots");
        vars.insert("rate_limit_api", "5 per minute");
        let config = Config::new(Component::Todos, &vars);
        assert!(config
            .http()
            .unwrap_err()
            .to_string()
            .contains("max_body_bytes"));
        let err = config.rate_limit(RateLimitName::Api).unwrap_err();
        assert!(err.to_string().contains("rate_limit_api"));
        for (raw, ok) in [("0/60", None), (" 5 / 10 ", Some((5, 10)))] {
            let vars = HashMap::from([("rate_limit_api", raw)]);
            let limit = Config::new(Component::Todos, &vars)
                .rate_limit(RateLimitName::Api)
                .ok()
                .map(|l| (l.max_requests, l.window_seconds));
            assert_eq!(limit, ok, "{raw}");
        }
        let vars = HashMap::from([
            ("jobs_retry_base_seconds", "30"),
            ("jobs_retry_max_seconds", "5"),
            ("jobs_max_attempts", "8"),
        ]);
        let err = Config::new(Component::Notifier, &vars)
            .retry_policy()
            .unwrap_err();
        assert!(err.to_string().contains("jobs_retry_max_seconds"), "{err}");
        let vars = HashMap::from([("jobs_channel", "a b")]);
        assert!(Config::new(Component::Auth, &vars).jobs_channel().is_err());
        let vars = HashMap::from([("mail_webhook_url", "ftp://x")]);
        assert!(Config::new(Component::Notifier, &vars)
            .mail_webhook_url()
            .is_err());
    }

    #[test]
    fn cors_origins() {
        let vars = HashMap::from([
            (
                "cors_allowed_origins",
                "https://app.example.com/, http://localhost:5173",
            ),
            ("max_body_bytes", "100"),
        ]);
        let http = Config::new(Component::Todos, &vars).http().unwrap();
        assert_eq!(
            http.allowed_origin("https://app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert!(http.allowed_origin("https://evil.example.com").is_none());
        let vars = HashMap::from([("cors_allowed_origins", "*"), ("max_body_bytes", "100")]);
        let any = Config::new(Component::Todos, &vars).http().unwrap();
        assert_eq!(
            any.allowed_origin("https://x.example").as_deref(),
            Some("*")
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut vars = everything();
        vars.insert("jwt_signing_key", "ed25519:k:SECRET");
        let config = Config::new(Component::Auth, &vars);
        let s = format!(
            "{:?} {:?} {config:?}",
            config.store().unwrap(),
            config.tokens().unwrap(),
        );
        assert!(!s.contains("hunter2") && !s.contains("SECRET") && !s.contains(":pw@"));
    }
}
