//! Application variables: where their values come from and how `{{ name }}` templates
//! in component variables and `allowed_outbound_hosts` are expanded.
//!
//! Precedence, highest first, as with `spin up`: `--variable NAME=VALUE` on the command
//! line, then the environment (`SPIN_VARIABLE_NAME`), then the manifest's `default`.
//! Values are resolved once at start-up; a required variable without a value stops the
//! host with a message naming it, and secret values never appear in logs or errors.

use std::collections::{BTreeMap, HashMap};

use crate::manifest::{Manifest, VariableDecl};
pub use crate::template::Template;

impl Template {
    /// Expands the template with resolved application variables.
    pub fn render(&self, values: &ResolvedVariables) -> Result<String, VariableError> {
        self.render_with(|name| values.get(name))
    }
}

/// A variable that has no value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VariableError {
    #[error("variable `{0}` is not declared in the manifest's [variables]")]
    Undeclared(String),
    #[error(
        "required variable `{name}` has no value: pass `--variable {name}=VALUE` or set {env}"
    )]
    Missing { name: String, env: String },
    #[error("`--variable {0}`: expected NAME=VALUE")]
    BadFlag(String),
}

/// Application variables with their final values.
#[derive(Clone, Default)]
pub struct ResolvedVariables {
    values: HashMap<String, String>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ResolvedVariables {
    /// Prints names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl ResolvedVariables {
    /// Resolves every declared variable from flags, the environment and defaults.
    pub fn resolve(
        manifest: &Manifest,
        flags: &[String],
        env: &HashMap<String, String>,
    ) -> Result<Self, VariableError> {
        let from_flags = parse_flags(flags)?;
        let declared: BTreeMap<&String, &VariableDecl> = manifest
            .variables
            .iter()
            .map(|(name, decl)| (name, decl.get_ref()))
            .collect();
        if let Some(unknown) = from_flags.keys().find(|name| !declared.contains_key(name)) {
            return Err(VariableError::Undeclared(unknown.clone()));
        }
        let mut resolved = Self::default();
        for (name, decl) in declared {
            let env_name = env_name(name);
            let value = from_flags
                .get(name)
                .cloned()
                .or_else(|| env.get(&env_name).cloned())
                .or_else(|| decl.default.clone())
                .ok_or_else(|| VariableError::Missing {
                    name: name.clone(),
                    env: env_name,
                })?;
            if decl.secret {
                resolved.secrets.push(name.clone());
            }
            resolved.values.insert(name.clone(), value);
        }
        Ok(resolved)
    }

    /// The value of a declared variable.
    pub fn get(&self, name: &str) -> Result<&str, VariableError> {
        self.values
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| VariableError::Undeclared(name.to_owned()))
    }

    /// Whether the variable is marked `secret = true`.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|secret| secret == name)
    }

    /// Builds a set directly, for tests.
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            values: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            secrets: Vec::new(),
        }
    }
}

/// `SPIN_VARIABLE_` followed by the upper-cased name, as Spin's environment provider reads.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

fn parse_flags(flags: &[String]) -> Result<HashMap<String, String>, VariableError> {
    flags
        .iter()
        .map(|flag| {
            let (name, value) = flag
                .split_once('=')
                .ok_or_else(|| VariableError::BadFlag(flag.clone()))?;
            Ok((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trip() {
        let template = Template::parse("postgres://{{ db_host }}/{{x}}").unwrap();
        let names: Vec<_> = template.references().collect();
        assert_eq!(names, ["db_host", "x"]);
        let values = ResolvedVariables::from_pairs(&[("db_host", "h:1"), ("x", "y")]);
        assert_eq!(template.render(&values).unwrap(), "postgres://h:1/y");
    }

    fn manifest() -> Manifest {
        crate::manifest::parse(
            std::path::Path::new("spin.toml"),
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
token = { required = true, secret = true }
level = { default = "info" }
"#,
        )
        .unwrap()
        .manifest
    }

    #[test]
    fn precedence_is_flag_then_env_then_default() {
        let env = HashMap::from([
            ("SPIN_VARIABLE_TOKEN".to_owned(), "from-env".to_owned()),
            ("SPIN_VARIABLE_LEVEL".to_owned(), "debug".to_owned()),
        ]);
        let values = ResolvedVariables::resolve(&manifest(), &["token=flag".into()], &env).unwrap();
        assert_eq!(values.get("token").unwrap(), "flag");
        assert_eq!(values.get("level").unwrap(), "debug");
        assert!(values.is_secret("token"));
        let defaults = ResolvedVariables::resolve(
            &manifest(),
            &[],
            &HashMap::from([("SPIN_VARIABLE_TOKEN".to_owned(), "t".to_owned())]),
        )
        .unwrap();
        assert_eq!(defaults.get("level").unwrap(), "info");
    }

    #[test]
    fn missing_required_variable_names_it_and_hides_values() {
        let err = ResolvedVariables::resolve(&manifest(), &[], &HashMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required variable `token` has no value: pass `--variable token=VALUE` or set SPIN_VARIABLE_TOKEN"
        );
        let values = ResolvedVariables::from_pairs(&[("token", "s3cret")]);
        assert!(!format!("{values:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_flag_variable_is_rejected() {
        let err = ResolvedVariables::resolve(&manifest(), &["tokn=x".into()], &HashMap::new())
            .unwrap_err();
        assert_eq!(err, VariableError::Undeclared("tokn".into()));
    }
}
