//! A throwaway database on the project's PostgreSQL.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use crate::paths::repo_root;
use crate::services::service_setting;

/// A database with the schema applied by `scripts/migrate`, dropped (with its connections)
/// on drop. For tests that need a world of their own, e.g. counting rows or exercising the
/// migrations.
pub struct TestDatabase {
    /// The database name, `e2e_<pid>_<n>`.
    pub name: String,
    /// Its URL, with the project's `todo` role (which has CREATEDB).
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates the database and applies every migration to it.
    pub async fn create() -> TestDatabase {
        TestDatabase::try_create()
            .await
            .unwrap_or_else(|e| panic!("creating a throwaway database: {e:#}"))
    }

    /// Creates the database with the migrations up to and including `last` (a file name
    /// without `.sql`, e.g. `0005_idempotency_keys`) only: the schema as it was before
    /// later migrations, for testing them against existing data ([`TestDatabase::migrate`]
    /// applies the rest).
    pub async fn create_until(last: &str) -> TestDatabase {
        TestDatabase::try_create_with(Some(last))
            .await
            .unwrap_or_else(|e| panic!("creating a throwaway database: {e:#}"))
    }

    /// Applies every migration not applied yet (`scripts/migrate`).
    pub async fn migrate(&self) -> Result<()> {
        run_migrate(&self.url, None).await
    }

    async fn try_create() -> Result<TestDatabase> {
        TestDatabase::try_create_with(None).await
    }

    async fn try_create_with(last: Option<&str>) -> Result<TestDatabase> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = service_setting("DATABASE_URL")?;
        let name = format!(
            "e2e_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(&admin_url, &name)?;
        psql(
            &admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        psql(&admin_url, &format!("CREATE DATABASE {name}")).await?;
        let database = TestDatabase {
            name,
            url,
            admin_url,
        };
        run_migrate(&database.url, last).await?;
        Ok(database)
    }

    /// Runs SQL in this database with psql and returns its unaligned, tuples-only output.
    pub async fn query(&self, sql: &str) -> Result<String> {
        psql(&self.url, sql).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime guarantee, so this one is blocking.
        let result = Command::new(psql_binary())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&self.admin_url)
            .arg("-c")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !matches!(result, Ok(status) if status.success()) {
            eprintln!("could not drop throwaway database {}", self.name);
        }
    }
}

/// Applies every migration to the database at `url` (`scripts/migrate`), e.g. one on a
/// [`TlsPostgres`](crate::TlsPostgres) rather than the project's server.
pub async fn migrate_url(url: &str) -> Result<()> {
    run_migrate(url, None).await
}

/// `scripts/migrate` on `url`: every migration, or (with `last`) those up to `last`, from a
/// copy of the directory holding only them.
async fn run_migrate(url: &str, last: Option<&str>) -> Result<()> {
    let migrate = repo_root().join("scripts/migrate");
    let mut command = tokio::process::Command::new(&migrate);
    command.arg(url).stdin(Stdio::null());
    let mut partial = None;
    if let Some(last) = last {
        static DIRS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "migrations-until-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut found = false;
        for entry in std::fs::read_dir(repo_root().join("migrations"))? {
            let path = entry?.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "sql") && stem <= last {
                found |= stem == last;
                std::fs::copy(&path, dir.join(path.file_name().unwrap_or_default()))?;
            }
        }
        if !found {
            bail!("no migration named {last}.sql");
        }
        command.env("MIGRATIONS_DIR", &dir);
        partial = Some(dir);
    }
    let output = command
        .output()
        .await
        .with_context(|| format!("running {}", migrate.display()));
    if let Some(dir) = partial {
        let _ = std::fs::remove_dir_all(dir);
    }
    let output = output?;
    if !output.status.success() {
        bail!(
            "scripts/migrate failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn psql_binary() -> String {
    std::env::var("PSQL").unwrap_or_else(|_| "psql".to_string())
}

async fn psql(url: &str, sql: &str) -> Result<String> {
    let output = tokio::process::Command::new(psql_binary())
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url)
        .arg("-c")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running psql (install the PostgreSQL client, or set PSQL)")?;
    if !output.status.success() {
        bail!(
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").context("DATABASE_URL has no scheme")? + 3;
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:55432/todo", "e2e_1").unwrap(),
            "postgres://u:p@127.0.0.1:55432/e2e_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/todo?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "x").unwrap(),
            "postgres://h:1/x"
        );
    }
}
