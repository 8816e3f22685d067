//! The project's PostgreSQL and Redis settings, as `scripts/services env` exports them.
//!
//! `scripts/test` exports them before running the suites; a test run by hand from an IDE
//! or with plain `cargo test` reads the missing ones from `scripts/services env` once.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

use crate::paths::repo_root;

/// The environment variables the services provide to the app and the tests.
const SERVICE_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "SPIN_VARIABLE_DB_URL",
    "SPIN_VARIABLE_DB_HOST",
    "SPIN_VARIABLE_REDIS_URL",
    "SPIN_VARIABLE_REDIS_HOST",
];

/// Service settings missing from this process's environment, read once from
/// `scripts/services env` (values the environment already has win).
pub fn service_env() -> Result<&'static BTreeMap<String, String>> {
    static ENV: OnceLock<std::result::Result<BTreeMap<String, String>, String>> = OnceLock::new();
    ENV.get_or_init(|| load_service_env().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn load_service_env() -> Result<BTreeMap<String, String>> {
    let complete = SERVICE_VARIABLES
        .iter()
        .all(|name| std::env::var_os(name).is_some());
    if complete {
        return Ok(BTreeMap::new());
    }
    let script = repo_root().join("scripts/services");
    // `env -0` after evaluating the export lines: the shell does the unquoting.
    let output = Command::new("bash")
        .arg("-c")
        .arg(r#"eval "$("$0" env)" && env -0"#)
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} env", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} env failed ({}): {}\nstart the services first: scripts/services start",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(missing_settings(&output.stdout))
}

/// The service settings in `env -0` output that this process's environment lacks.
fn missing_settings(env0: &[u8]) -> BTreeMap<String, String> {
    env0.split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            let wanted = SERVICE_VARIABLES.contains(&name) || name.starts_with("SPIN_VARIABLE_");
            (wanted && std::env::var_os(name).is_none())
                .then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A service setting, from the environment or `scripts/services env`.
pub fn service_setting(name: &str) -> Result<String> {
    if let Ok(value) = std::env::var(name) {
        return Ok(value);
    }
    service_env()?.get(name).cloned().with_context(|| {
        format!("{name} is neither in the environment nor in scripts/services env")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_settings_the_environment_lacks_are_taken() {
        let env0 = b"SPIN_VARIABLE_SUPPORT_TEST_X=a=b\0PATH=/nowhere\0UNRELATED=1\0";
        let taken = missing_settings(env0);
        // PATH is set in every test process, and UNRELATED is not a service setting.
        assert_eq!(
            taken.into_iter().collect::<Vec<_>>(),
            vec![("SPIN_VARIABLE_SUPPORT_TEST_X".to_owned(), "a=b".to_owned())]
        );
    }
}
