//! A component's `files`: Spin's static-file mounts, staged once when the app loads and
//! given to every instance as a read-only preopened directory at `/`.
//!
//! The manifest forms are Spin's (spinframework.dev/v3/writing-apps, "Including files with
//! components"; `spin_loader::local`):
//! - a path or glob relative to the manifest's directory (`"static/**/*"`, `"index.html"`,
//!   `"assets"` for a whole directory), mounted at the same path under `/`;
//! - `{ source = "dir-or-file", destination = "/guest/path" }`, a directory's tree or one
//!   file placed at `destination`;
//! - `exclude_files`: globs, matched against the path relative to the manifest's directory,
//!   that leave matching files out.
//!
//! Like `spin up` (without `--direct-mounts`), the files are copied into a directory of
//! the host's own at load time, so the guest sees one snapshot for the app's lifetime and
//! nothing outside what was mounted. Deliberately stricter than Spin: a match that resolves
//! (through a symlink) outside the application directory is an error here, where Spin only
//! checks the unresolved path.

use std::path::{Component as PathComponent, Path, PathBuf};

use serde::Deserialize;

/// One entry of a component's `files`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum FileMount {
    /// A path or glob pattern relative to the manifest's directory.
    Pattern(String),
    /// `{ source, destination }`.
    Placement(Placement),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub source: String,
    pub destination: String,
}

/// Why a component's files could not be staged; each names the entry.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("files entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("exclude_files entry {pattern:?}: {source}")]
    Exclude {
        pattern: String,
        source: glob::PatternError,
    },
    #[error("files: copying {from} to the component's file mount: {source}")]
    Copy {
        from: PathBuf,
        source: std::io::Error,
    },
}

/// A component's files, copied into a directory the host owns (removed when this is
/// dropped, i.e. when the app is).
#[derive(Debug)]
pub struct StagedFiles {
    root: tempfile::TempDir,
    count: usize,
}

impl StagedFiles {
    /// The directory preopened at `/` for each instance.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// How many files were staged.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// Checks what can be checked without the filesystem (for the manifest's own errors):
/// relative sources and patterns that stay inside the application directory, absolute
/// destinations, and exclude patterns that parse.
pub fn check(mounts: &[FileMount], exclude: &[String]) -> Result<(), FilesError> {
    for mount in mounts {
        let (entry, source) = match mount {
            FileMount::Pattern(pattern) => (pattern.clone(), pattern.as_str()),
            FileMount::Placement(p) => {
                (format!("{{ source = {:?} }}", p.source), p.source.as_str())
            }
        };
        let refuse = |reason: &str| FilesError::Entry {
            entry: entry.clone(),
            reason: reason.to_owned(),
        };
        if source.is_empty() {
            return Err(refuse("is empty"));
        }
        if !stays_inside(Path::new(source)) {
            return Err(refuse(
                "must be relative to the manifest's directory and stay inside it (no leading `/`, no `..`)",
            ));
        }
        if let FileMount::Placement(p) = mount {
            if !p.destination.starts_with('/') {
                return Err(FilesError::Entry {
                    entry: format!("{{ destination = {:?} }}", p.destination),
                    reason: "must be an absolute guest path (start with `/`)".into(),
                });
            }
            if !stays_inside(Path::new(p.destination.trim_start_matches('/'))) {
                return Err(FilesError::Entry {
                    entry: format!("{{ destination = {:?} }}", p.destination),
                    reason: "must not contain `..`".into(),
                });
            }
        }
    }
    exclude_patterns(exclude).map(drop)
}

/// Copies every file `mounts` select (minus `exclude`) from `app_dir` into a new
/// directory; `None` when there are no mounts.
pub fn stage(
    app_dir: &Path,
    mounts: &[FileMount],
    exclude: &[String],
) -> Result<Option<StagedFiles>, FilesError> {
    if mounts.is_empty() {
        return Ok(None);
    }
    check(mounts, exclude)?;
    let excluded = exclude_patterns(exclude)?;
    let app_dir = app_dir.canonicalize().map_err(|source| FilesError::Copy {
        from: app_dir.to_owned(),
        source,
    })?;
    let root = tempfile::Builder::new()
        .prefix("edge-host-files-")
        .tempdir()
        .map_err(|source| FilesError::Copy {
            from: app_dir.clone(),
            source,
        })?;
    let mut stager = Stager {
        app_dir: &app_dir,
        root: root.path(),
        excluded: &excluded,
        count: 0,
    };
    for mount in mounts {
        stager.mount(mount)?;
    }
    let count = stager.count;
    Ok(Some(StagedFiles { root, count }))
}

fn exclude_patterns(exclude: &[String]) -> Result<Vec<glob::Pattern>, FilesError> {
    exclude
        .iter()
        .map(|pattern| {
            glob::Pattern::new(pattern).map_err(|source| FilesError::Exclude {
                pattern: pattern.clone(),
                source,
            })
        })
        .collect()
}

/// A relative path without `..`, `/` or a prefix: joined to a directory, it stays in it.
fn stays_inside(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, PathComponent::Normal(_) | PathComponent::CurDir))
}

fn looks_like_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

struct Stager<'a> {
    app_dir: &'a Path,
    root: &'a Path,
    excluded: &'a [glob::Pattern],
    count: usize,
}

impl Stager<'_> {
    fn mount(&mut self, mount: &FileMount) -> Result<(), FilesError> {
        match mount {
            FileMount::Pattern(pattern) => {
                let path = self.app_dir.join(pattern);
                if path.is_dir() {
                    self.copy_tree(pattern, &path, &self.root.join(pattern))
                } else if path.is_file() {
                    self.copy_file(pattern, &path, &self.root.join(pattern))
                } else if looks_like_glob(pattern) {
                    self.copy_glob(pattern)
                } else {
                    Err(FilesError::Entry {
                        entry: pattern.clone(),
                        reason: "does not exist and is not a glob pattern".into(),
                    })
                }
            }
            FileMount::Placement(Placement {
                source,
                destination,
            }) => {
                let path = self.app_dir.join(source);
                let dest = self.root.join(destination.trim_start_matches('/'));
                if path.is_dir() {
                    self.copy_tree(source, &path, &dest)
                } else if path.is_file() {
                    self.copy_file(source, &path, &dest)
                } else {
                    Err(FilesError::Entry {
                        entry: format!("{{ source = {source:?} }}"),
                        reason: "no such file or directory".into(),
                    })
                }
            }
        }
    }

    /// Every file under `dir`, placed under `dest` at its path relative to `dir`.
    fn copy_tree(&mut self, entry: &str, dir: &Path, dest: &Path) -> Result<(), FilesError> {
        for found in self.matches(entry, &dir.join("**/*"))? {
            let relative = found.strip_prefix(dir).expect("glob under dir");
            self.copy_file(entry, &found, &dest.join(relative))?;
        }
        Ok(())
    }

    /// Every file a glob matches, placed at its path relative to the app directory.
    fn copy_glob(&mut self, pattern: &str) -> Result<(), FilesError> {
        for found in self.matches(pattern, &self.app_dir.join(pattern))? {
            let relative = found
                .strip_prefix(self.app_dir)
                .expect("glob under app dir");
            self.copy_file(pattern, &found, &self.root.join(relative))?;
        }
        Ok(())
    }

    /// The regular files `pattern` matches, in order, minus the excluded ones.
    fn matches(&self, entry: &str, pattern: &Path) -> Result<Vec<PathBuf>, FilesError> {
        let refuse = |reason: String| FilesError::Entry {
            entry: entry.to_owned(),
            reason,
        };
        let text = pattern
            .to_str()
            .ok_or_else(|| refuse("is not UTF-8".into()))?;
        let paths = glob::glob(text).map_err(|err| refuse(format!("not a glob pattern: {err}")))?;
        let mut files = Vec::new();
        for path in paths {
            let path = path.map_err(|err| refuse(err.to_string()))?;
            if !path.is_file() {
                continue;
            }
            let relative = path.strip_prefix(self.app_dir).unwrap_or(&path);
            if self.excluded.iter().any(|p| p.matches_path(relative)) {
                continue;
            }
            files.push(path);
        }
        Ok(files)
    }

    fn copy_file(&mut self, entry: &str, from: &Path, to: &Path) -> Result<(), FilesError> {
        let copy_error = |source| FilesError::Copy {
            from: from.to_owned(),
            source,
        };
        let resolved = from.canonicalize().map_err(copy_error)?;
        if !resolved.starts_with(self.app_dir) {
            return Err(FilesError::Entry {
                entry: entry.to_owned(),
                reason: format!(
                    "{} resolves outside the application directory",
                    from.display()
                ),
            });
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(copy_error)?;
        }
        std::fs::copy(&resolved, to).map_err(copy_error)?;
        self.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in [
            ("web/index.html", "<h1>hi</h1>"),
            ("web/assets/app.js", "js"),
            ("web/assets/app.js.map", "map"),
            ("openapi.yaml", "openapi: 3.1.0"),
            ("secret.txt", "no"),
        ] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn staged_paths(staged: &StagedFiles) -> Vec<String> {
        let mut paths: Vec<String> = glob::glob(&format!("{}/**/*", staged.root().display()))
            .unwrap()
            .map(|p| p.unwrap())
            .filter(|p| p.is_file())
            .map(|p| p.strip_prefix(staged.root()).unwrap().display().to_string())
            .collect();
        paths.sort();
        paths
    }

    fn pattern(text: &str) -> FileMount {
        FileMount::Pattern(text.into())
    }

    fn placement(source: &str, destination: &str) -> FileMount {
        FileMount::Placement(Placement {
            source: source.into(),
            destination: destination.into(),
        })
    }

    #[test]
    fn each_form_lands_where_spin_puts_it() {
        let app = tree();
        let mounts = [
            placement("web", "/"),
            pattern("openapi.yaml"),
            placement("openapi.yaml", "/docs/openapi.yaml"),
        ];
        let staged = stage(app.path(), &mounts, &["web/**/*.map".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            staged_paths(&staged),
            [
                "assets/app.js",
                "docs/openapi.yaml",
                "index.html",
                "openapi.yaml"
            ]
        );
        assert_eq!(staged.count(), 4);
        let root = staged.root().to_owned();
        drop(staged);
        assert!(!root.exists(), "the staged copy goes with the app");
    }

    #[test]
    fn globs_and_directories_keep_their_relative_paths() {
        let app = tree();
        let staged = stage(app.path(), &[pattern("web/assets"), pattern("*.yaml")], &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            staged_paths(&staged),
            ["openapi.yaml", "web/assets/app.js", "web/assets/app.js.map"]
        );
    }

    #[test]
    fn nothing_outside_the_application_directory() {
        let app = tree();
        for mounts in [
            vec![pattern("../etc/passwd")],
            vec![pattern("/etc/passwd")],
            vec![placement("..", "/")],
            vec![placement("web", "relative")],
            vec![placement("web", "/../up")],
        ] {
            let err = stage(app.path(), &mounts, &[]).unwrap_err().to_string();
            assert!(err.starts_with("files entry"), "{mounts:?}: {err}");
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("key"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("key"), app.path().join("web/key")).unwrap();
        let err = stage(app.path(), &[pattern("web")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resolves outside the application directory"),
            "{err}"
        );
    }

    #[test]
    fn missing_sources_and_bad_patterns_name_the_entry() {
        let app = tree();
        let err = stage(app.path(), &[pattern("nope.txt")], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"files entry "nope.txt": does not exist and is not a glob pattern"#
        );
        let err = stage(app.path(), &[placement("gone", "/x")], &[]).unwrap_err();
        assert!(
            err.to_string().contains("no such file or directory"),
            "{err}"
        );
        let err = stage(app.path(), &[pattern("web")], &["[".into()]).unwrap_err();
        assert!(
            err.to_string().starts_with(r#"exclude_files entry "[""#),
            "{err}"
        );
        assert!(stage(app.path(), &[], &[]).unwrap().is_none());
    }
}
