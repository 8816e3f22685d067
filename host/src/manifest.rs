//! Spin application manifest, version 2 (`spin.toml`).
//!
//! Parsing is strict on purpose: every table rejects unknown fields, so a typo such as
//! `sorce = ...` fails at start-up with the file, line and field named instead of being
//! silently ignored. Fields that Spin knows but this host does not implement yet
//! (`ai_models`, ...) are accepted by the parser only so that the error
//! can say "not supported" rather than "unknown".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::routes::RoutePattern;
use crate::template::{is_variable_name, Template};

/// Why a manifest could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The whole `spin.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub spin_manifest_version: Spanned<u32>,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, Spanned<VariableDecl>>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Spanned<Component>>,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub targets: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

/// `[application.trigger.*]`: settings shared by all triggers of one type.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTriggers {
    #[serde(default)]
    pub http: Option<ApplicationHttp>,
    #[serde(default)]
    pub redis: Option<ApplicationRedis>,
}

/// `[application.trigger.http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationHttp {
    #[serde(default)]
    pub base: Option<String>,
}

/// `[application.trigger.redis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRedis {
    /// Default server address for Redis triggers; may contain `{{ variable }}` templates.
    pub address: String,
}

/// A `[variables]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// `[[trigger.*]]` arrays.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<Spanned<HttpTrigger>>,
    #[serde(default)]
    pub redis: Vec<Spanned<RedisTrigger>>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub route: Route,
    pub component: String,
    #[serde(default)]
    pub executor: Option<Spanned<toml::Value>>,
}

/// A route: a path pattern, or `{ private = true }` for a component reachable only
/// through local service chaining (which this host does not route to).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Path(String),
    Private { private: bool },
}

/// One `[[trigger.redis]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTrigger {
    #[serde(default)]
    pub id: Option<String>,
    /// Server address; falls back to `[application.trigger.redis] address`.
    #[serde(default)]
    pub address: Option<String>,
    pub channel: String,
    pub component: String,
}

/// A `[component.<id>]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    #[serde(default)]
    pub description: Option<String>,
    pub source: Spanned<Source>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Deprecated Spin 1 spelling of `allowed_outbound_hosts`.
    #[serde(default)]
    pub allowed_http_hosts: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<BuildConfig>,
    /// Static files mounted read-only at `/` in the guest (see [`crate::files`]).
    #[serde(default)]
    pub files: Option<Spanned<Vec<crate::files::FileMount>>>,
    #[serde(default)]
    pub exclude_files: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub key_value_stores: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub sqlite_databases: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub ai_models: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub dependencies: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub tool: Option<toml::Value>,
}

/// Where a component's Wasm comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A path relative to the manifest's directory.
    Local(String),
    /// `{ url = "...", digest = "sha256:..." }`.
    Remote { url: String, digest: String },
}

/// `[component.<id>.build]`, used by `edge-host build`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    pub command: Command,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// A build command: one shell line or several run in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Command {
    One(String),
    Many(Vec<String>),
}

impl Command {
    /// The shell lines to run, in order.
    pub fn lines(&self) -> Vec<&str> {
        match self {
            Command::One(line) => vec![line.as_str()],
            Command::Many(lines) => lines.iter().map(String::as_str).collect(),
        }
    }
}

/// A manifest that parsed and passed the semantic checks, with the path it came from.
#[derive(Debug)]
pub struct LoadedManifest {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// `[[trigger.http]]`, typed: what the HTTP trigger serves.
    pub http_triggers: Vec<HttpTriggerSpec>,
    /// `[[trigger.redis]]`, typed: what the Redis trigger subscribes to.
    pub redis_triggers: Vec<RedisTriggerSpec>,
    /// Components left out by [`LoadedManifest::retain_components`] (`--component-id`):
    /// still in `manifest`, so per-component settings shared by every deployment of the
    /// app stay valid, but no trigger runs them.
    pub deselected: std::collections::BTreeSet<String>,
}

/// Why `--component-id` could not select components. The wording is Spin's
/// (`spin_app::retain_components` and `validate_service_chaining_for_components`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("Specified component \"{0}\" not found in application")]
    NotFound(String),
    #[error("Selected component '{0}' cannot use wildcard service chaining: allowed_outbound_hosts = [\"http://*.spin.internal\"]")]
    WildcardChaining(String),
    #[error("Selected component '{component}' cannot use service chaining to unselected component: allowed_outbound_hosts = [\"http://{target}.spin.internal\"]")]
    ChainsToUnselected { component: String, target: String },
}

/// One `[[trigger.http]]` as the HTTP trigger needs it, its route already parsed.
#[derive(Debug, Clone)]
pub struct HttpTriggerSpec {
    /// The route; `None` for `route = { private = true }` (reachable only through
    /// local service chaining, which this host does not route to).
    pub route: Option<RoutePattern>,
    pub component: String,
}

/// One `[[trigger.redis]]` as the Redis trigger needs it: the address with the
/// application default applied. Both strings may hold `{{ variable }}` templates,
/// expanded once variables are resolved.
#[derive(Debug, Clone)]
pub struct RedisTriggerSpec {
    pub address: String,
    pub channel: String,
    pub component: String,
}

impl LoadedManifest {
    /// The directory relative paths in the manifest are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// Every component some trigger runs (private routes included), each once.
    pub fn triggered_components(&self) -> std::collections::BTreeSet<&str> {
        let http = self.http_triggers.iter().map(|t| t.component.as_str());
        let redis = self.redis_triggers.iter().map(|t| t.component.as_str());
        http.chain(redis).collect()
    }

    /// Keeps only the triggers of `selected` components, as `spin up --component-id`
    /// (Spin's selective deployment, which SpinKube's `spec.components` uses): so one app
    /// can run as several deployments, e.g. the HTTP API without the Redis-triggered
    /// notifier. An empty selection keeps everything. As in Spin, every id must name a
    /// component, and a selected component may not chain (`http://X.spin.internal`) to
    /// one left out; templated hosts are not checked.
    pub fn retain_components(&mut self, selected: &[String]) -> Result<(), SelectionError> {
        if selected.is_empty() {
            return Ok(());
        }
        if let Some(missing) = selected
            .iter()
            .find(|id| !self.manifest.component.contains_key(*id))
        {
            return Err(SelectionError::NotFound(missing.clone()));
        }
        let is_selected = |id: &str| selected.iter().any(|s| s == id);
        for id in self
            .triggered_components()
            .into_iter()
            .filter(|id| is_selected(id))
        {
            let hosts = &self.manifest.component[id].get_ref().allowed_outbound_hosts;
            for target in hosts.iter().filter_map(|host| chaining_target(host)) {
                if target == "*" {
                    return Err(SelectionError::WildcardChaining(id.to_owned()));
                }
                if !is_selected(target) {
                    return Err(SelectionError::ChainsToUnselected {
                        component: id.to_owned(),
                        target: target.to_owned(),
                    });
                }
            }
        }
        self.http_triggers.retain(|t| is_selected(&t.component));
        self.redis_triggers.retain(|t| is_selected(&t.component));
        let kept = self.triggered_components();
        self.deselected = (self.manifest.component.keys())
            .filter(|id| !kept.contains(id.as_str()))
            .cloned()
            .collect();
        Ok(())
    }
}

/// The component an `allowed_outbound_hosts` entry reaches by local service chaining
/// (`scheme://<component>.spin.internal[:port]`), `*` for any; `None` for other hosts and
/// for templated ones, which are not resolved yet.
fn chaining_target(host: &str) -> Option<&str> {
    if host.contains("{{") {
        return None;
    }
    let authority = host.split_once("://").map_or(host, |(_, rest)| rest);
    let name = authority.split(['/', ':']).next()?;
    name.strip_suffix(".spin.internal")
}

/// Reads, parses and checks `path`.
pub fn load(path: &Path) -> Result<LoadedManifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and checks manifest text; `path` is used only in messages.
pub fn parse(path: &Path, text: &str) -> Result<LoadedManifest, ManifestError> {
    let manifest: Manifest = toml::from_str(text).map_err(|err| ManifestError::Parse {
        path: path.to_owned(),
        message: err.to_string().trim_end().to_owned(),
    })?;
    let checker = Checker { path, text };
    checker.check(&manifest)?;
    let http_triggers = manifest
        .trigger
        .http
        .iter()
        .map(|trigger| checker.http_spec(trigger))
        .collect::<Result<_, _>>()?;
    let redis_triggers = manifest
        .trigger
        .redis
        .iter()
        .map(|trigger| checker.redis_spec(trigger, &manifest))
        .collect::<Result<_, _>>()?;
    Ok(LoadedManifest {
        path: path.to_owned(),
        manifest,
        http_triggers,
        redis_triggers,
        deselected: Default::default(),
    })
}

/// Semantic checks that serde cannot express, reported with line and column.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: std::ops::Range<usize>, message: String) -> ManifestError {
        let (line, column) = line_column(self.text, span.start);
        ManifestError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    fn check(&self, manifest: &Manifest) -> Result<(), ManifestError> {
        let version = &manifest.spin_manifest_version;
        if *version.get_ref() != 2 {
            return Err(self.error(
                version.span(),
                format!(
                    "field `spin_manifest_version`: version {} is not supported; edge-host reads version 2",
                    version.get_ref()
                ),
            ));
        }
        if let Some(targets) = &manifest.application.targets {
            return Err(self.unsupported(targets.span(), "application.targets"));
        }
        for (name, decl) in &manifest.variables {
            self.check_variable(name, decl)?;
        }
        for (id, component) in &manifest.component {
            self.check_component(id, component, &manifest.variables)?;
        }
        for trigger in &manifest.trigger.http {
            self.check_http_trigger(trigger, manifest)?;
        }
        for trigger in &manifest.trigger.redis {
            let redis = trigger.get_ref();
            if !manifest.component.contains_key(&redis.component) {
                return Err(self.error(
                    trigger.span(),
                    format!(
                        "field `trigger.redis.component`: no component named `{}`",
                        redis.component
                    ),
                ));
            }
        }
        Ok(())
    }

    fn http_spec(&self, trigger: &Spanned<HttpTrigger>) -> Result<HttpTriggerSpec, ManifestError> {
        let http = trigger.get_ref();
        let route = match &http.route {
            Route::Path(route) => Some(RoutePattern::parse(route).map_err(|err| {
                self.error(trigger.span(), format!("field `trigger.http.route`: {err}"))
            })?),
            Route::Private { .. } => None,
        };
        Ok(HttpTriggerSpec {
            route,
            component: http.component.clone(),
        })
    }

    fn redis_spec(
        &self,
        trigger: &Spanned<RedisTrigger>,
        manifest: &Manifest,
    ) -> Result<RedisTriggerSpec, ManifestError> {
        let redis = trigger.get_ref();
        let address = redis
            .address
            .clone()
            .or_else(|| manifest.application.trigger.redis.as_ref().map(|app| app.address.clone()))
            .ok_or_else(|| {
                self.error(
                    trigger.span(),
                    "field `trigger.redis.address`: missing, and there is no `[application.trigger.redis] address` to fall back on".into(),
                )
            })?;
        Ok(RedisTriggerSpec {
            address,
            channel: redis.channel.clone(),
            component: redis.component.clone(),
        })
    }

    fn unsupported(&self, span: std::ops::Range<usize>, field: &str) -> ManifestError {
        self.error(
            span,
            format!("field `{field}` is not supported by edge-host yet"),
        )
    }

    fn check_variable(
        &self,
        name: &str,
        decl: &Spanned<VariableDecl>,
    ) -> Result<(), ManifestError> {
        if !is_variable_name(name) {
            return Err(self.error(
                decl.span(),
                format!("variable `{name}`: names are lower-case letters, digits and `_`, starting with a letter"),
            ));
        }
        let body = decl.get_ref();
        if body.required && body.default.is_some() {
            return Err(self.error(
                decl.span(),
                format!("variable `{name}`: `required = true` and `default` exclude each other"),
            ));
        }
        if !body.required && body.default.is_none() {
            return Err(self.error(
                decl.span(),
                format!("variable `{name}`: give it a `default` or mark it `required = true`"),
            ));
        }
        Ok(())
    }

    fn check_component(
        &self,
        id: &str,
        component: &Spanned<Component>,
        variables: &BTreeMap<String, Spanned<VariableDecl>>,
    ) -> Result<(), ManifestError> {
        let span = component.span();
        let body = component.get_ref();
        let prefix = format!("component.{id}");
        if let Source::Remote { .. } = body.source.get_ref() {
            return Err(self.unsupported(body.source.span(), &format!("{prefix}.source.url")));
        }
        let unsupported_values = [
            ("allowed_http_hosts", body.allowed_http_hosts.as_ref()),
            ("dependencies", body.dependencies.as_ref()),
            (
                "dependencies_inherit_configuration",
                body.dependencies_inherit_configuration.as_ref(),
            ),
        ];
        for (field, value) in unsupported_values {
            if let Some(value) = value {
                return Err(self.unsupported(value.span(), &format!("{prefix}.{field}")));
            }
        }
        if let Some(files) = &body.files {
            let exclude = body.exclude_files.as_ref().map_or(&[][..], |e| e.get_ref());
            crate::files::check(files.get_ref(), exclude).map_err(|err| {
                self.error(files.span(), format!("field `{prefix}.files`: {err}"))
            })?;
        }
        if let Some(list) = body.ai_models.as_ref().filter(|l| !l.get_ref().is_empty()) {
            return Err(self.unsupported(list.span(), &format!("{prefix}.ai_models")));
        }
        let templates = body
            .variables
            .iter()
            .map(|(key, value)| (format!("{prefix}.variables.{key}"), value))
            .chain(
                body.allowed_outbound_hosts
                    .iter()
                    .map(|host| (format!("{prefix}.allowed_outbound_hosts"), host)),
            );
        for (field, value) in templates {
            let template = Template::parse(value)
                .map_err(|err| self.error(span.clone(), format!("field `{field}`: {err}")))?;
            for name in template.references() {
                if !variables.contains_key(name) {
                    return Err(self.error(
                        span.clone(),
                        format!("field `{field}`: refers to undeclared variable `{name}`"),
                    ));
                }
            }
        }
        for key in body.variables.keys() {
            if !is_variable_name(key) {
                return Err(self.error(
                    span.clone(),
                    format!("field `{prefix}.variables.{key}`: names are lower-case letters, digits and `_`, starting with a letter"),
                ));
            }
        }
        Ok(())
    }

    fn check_http_trigger(
        &self,
        trigger: &Spanned<HttpTrigger>,
        manifest: &Manifest,
    ) -> Result<(), ManifestError> {
        let http = trigger.get_ref();
        if let Some(executor) = &http.executor {
            let is_spin = executor
                .get_ref()
                .get("type")
                .and_then(toml::Value::as_str)
                .is_some_and(|kind| kind == "spin");
            if !is_spin {
                return Err(self.unsupported(executor.span(), "trigger.http.executor"));
            }
        }
        if !manifest.component.contains_key(&http.component) {
            return Err(self.error(
                trigger.span(),
                format!(
                    "field `trigger.http.component`: no component named `{}`",
                    http.component
                ),
            ));
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
spin_manifest_version = 2

[application]
name = "todo"
version = "0.1.0"

[variables]
db_url = { required = true, secret = true }
db_host = { default = "127.0.0.1:5432" }

[[trigger.http]]
route = "/health/..."
component = "health"

[component.health]
source = "target/health.wasm"
allowed_outbound_hosts = ["postgres://{{ db_host }}"]
[component.health.variables]
db_url = "{{ db_url }}"
[component.health.build]
command = "cargo build"
watch = ["src/**/*.rs"]
"#;

    fn parse_text(text: &str) -> Result<LoadedManifest, ManifestError> {
        parse(Path::new("spin.toml"), text)
    }

    #[test]
    fn parses_a_valid_manifest() {
        let loaded = parse_text(VALID).expect("valid manifest");
        let manifest = loaded.manifest;
        assert_eq!(manifest.application.name, "todo");
        assert_eq!(manifest.trigger.http.len(), 1);
        let health = manifest.component["health"].get_ref();
        assert_eq!(health.allowed_outbound_hosts, ["postgres://{{ db_host }}"]);
        assert!(manifest.variables["db_url"].get_ref().secret);
    }

    #[test]
    fn typo_in_a_field_name_is_reported_with_line_and_field() {
        let text = VALID.replace("source =", "sorce =");
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("spin.toml"), "{err}");
        assert!(err.contains("sorce"), "{err}");
        assert!(err.contains("line 17") || err.contains(":17:"), "{err}");
    }

    #[test]
    fn unsupported_fields_are_named() {
        let text = VALID.replace(
            "[component.health.variables]",
            "dependencies = { \"a:b/c\" = \"1.0\" }\n[component.health.variables]",
        );
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(
            err.contains("component.health.dependencies") && err.contains("not supported"),
            "{err}"
        );
    }

    #[test]
    fn undeclared_template_variable_is_an_error() {
        let text = VALID.replace("{{ db_url }}", "{{ db_uri }}");
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("db_uri"), "{err}");
    }

    #[test]
    fn trigger_must_name_a_component() {
        let text = VALID.replace("component = \"health\"", "component = \"healht\"");
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("healht"), "{err}");
    }

    #[test]
    fn wrong_manifest_version_is_rejected() {
        let text = VALID.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("spin_manifest_version"), "{err}");
    }

    #[test]
    fn required_and_default_together_are_rejected() {
        let text = VALID.replace(
            "{ required = true, secret = true }",
            "{ required = true, default = \"x\" }",
        );
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("db_url"), "{err}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let err = parse_text("spin_manifest_version = \n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") || err.contains("spin.toml"), "{err}");
    }

    const THREE_COMPONENTS: &str = r#"
spin_manifest_version = 2

[application]
name = "todo"

[variables]
peer = { default = "health" }

[[trigger.http]]
route = "/health/..."
component = "health"

[[trigger.http]]
route = "/todos/..."
component = "todos"

[[trigger.redis]]
address = "redis://127.0.0.1:6379"
channel = "jobs"
component = "notifier"

[component.health]
source = "health.wasm"

[component.todos]
source = "todos.wasm"
allowed_outbound_hosts = ["http://{{ peer }}.spin.internal"]

[component.notifier]
source = "notifier.wasm"
"#;

    fn selecting(text: &str, ids: &[&str]) -> Result<LoadedManifest, SelectionError> {
        let mut loaded = parse_text(text).expect("valid manifest");
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        loaded.retain_components(&ids).map(|()| loaded)
    }

    #[test]
    fn retain_components_keeps_only_the_selected_triggers() {
        let loaded = selecting(THREE_COMPONENTS, &["health", "todos"]).unwrap();
        let http: Vec<_> = loaded.http_triggers.iter().map(|t| &t.component).collect();
        assert_eq!(http, ["health", "todos"]);
        assert!(loaded.redis_triggers.is_empty());
        assert_eq!(loaded.deselected, ["notifier".to_owned()].into());
        assert_eq!(
            loaded.manifest.component.len(),
            3,
            "settings stay checkable"
        );

        let loaded = selecting(THREE_COMPONENTS, &["notifier"]).unwrap();
        assert!(loaded.http_triggers.is_empty());
        assert_eq!(loaded.redis_triggers[0].component, "notifier");

        let all = selecting(THREE_COMPONENTS, &[]).unwrap();
        assert_eq!((all.http_triggers.len(), all.redis_triggers.len()), (2, 1));
        assert!(all.deselected.is_empty());
    }

    #[test]
    fn retain_components_refuses_what_spin_refuses() {
        let err = selecting(THREE_COMPONENTS, &["health", "nope"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Specified component "nope" not found in application"#
        );

        let chaining = THREE_COMPONENTS.replace(
            r#"source = "health.wasm""#,
            r#"source = "health.wasm"
allowed_outbound_hosts = ["http://todos.spin.internal:80"]"#,
        );
        let err = selecting(&chaining, &["health"]).unwrap_err();
        assert_eq!(
            err,
            SelectionError::ChainsToUnselected {
                component: "health".into(),
                target: "todos".into()
            }
        );
        assert!(selecting(&chaining, &["health", "todos"]).is_ok());

        let wildcard = chaining.replace("todos.spin.internal:80", "*.spin.internal");
        let err = selecting(&wildcard, &["health", "todos", "notifier"]).unwrap_err();
        assert_eq!(err, SelectionError::WildcardChaining("health".into()));
    }
}
