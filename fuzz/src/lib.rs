//! Fuzz targets: every place where bytes the project does not control become structured
//! values, in the host (manifests, runtime config, routes, templates, PostgreSQL and Redis
//! replies, guest parameters) and in the Todo API (cursors and list queries, JSON bodies,
//! access tokens).
//!
//! Each target is a plain function over `&[u8]`, so it runs in two ways:
//! - under libFuzzer, coverage-guided, through the one-line binaries in `fuzz_targets/`
//!   (`scripts/fuzz`, a bounded time per target);
//! - over the stored corpus and every regression input in `cargo test -p edge-fuzz`
//!   (`tests/corpus.rs`), the smoke pass `scripts/test` runs on every change.
//!
//! A target fails by panicking. Beyond "no panic, no hang, no stack overflow", each one
//! checks what the code promises to its callers: errors are typed and name their input,
//! client mistakes are 4xx and never 500, what is decoded re-encodes to the same thing, and
//! the two access-token checkers agree on every token.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};

mod tokens;
mod values;

pub use tokens::access_token;
pub use values::{pg_values, redis_values};

/// The names of every target, in the order `scripts/fuzz` runs them; the corpus test checks
/// that each has a binary, a corpus directory and an entry in [`run`].
pub const TARGETS: &[&str] = &[
    "manifest",
    "runtime_config",
    "routes",
    "template",
    "cursor",
    "json_body",
    "access_token",
    "pg_values",
    "redis_values",
];

/// Runs target `name` on `data`; `None` for a name that is not a target.
pub fn run(name: &str, data: &[u8]) -> Option<()> {
    let target: fn(&[u8]) = match name {
        "manifest" => manifest,
        "runtime_config" => runtime_config,
        "routes" => routes,
        "template" => template,
        "cursor" => cursor,
        "json_body" => json_body,
        "access_token" => access_token,
        "pg_values" => pg_values,
        "redis_values" => redis_values,
        _ => return None,
    };
    target(data);
    Some(())
}

/// `spin.toml` text: parsed and checked, or refused with an error that names the file.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/spin.toml");
    match edge_host::manifest::parse(path, text) {
        Ok(loaded) => {
            // What the host does next with a valid manifest: list its triggered components.
            let _ = loaded.triggered_components();
        }
        Err(err) => assert_names_file(&err.to_string(), "fuzz/spin.toml"),
    }
}

/// `runtime-config.toml` text: parsed, or refused with an error that names the file.
pub fn runtime_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/runtime-config.toml");
    if let Err(err) = edge_host::runtime_config::RuntimeConfig::parse(path, text) {
        assert_names_file(&err.to_string(), "fuzz/runtime-config.toml");
    }
}

fn assert_names_file(message: &str, file: &str) {
    assert!(
        message.contains(file),
        "error does not name the file: {message}"
    );
}

/// A routing table from arbitrary routes, then arbitrary request paths through it.
pub fn routes(data: &[u8]) {
    #[derive(Arbitrary, Debug)]
    struct Input {
        routes: Vec<String>,
        paths: Vec<String>,
    }
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    use edge_host::routes::{RoutePattern, Router};
    let parsed: Vec<(RoutePattern, usize)> = input
        .routes
        .iter()
        .take(16)
        .filter_map(|raw| RoutePattern::parse(raw).ok())
        .enumerate()
        .map(|(index, pattern)| (pattern, index))
        .collect();
    let Ok(router) = Router::new(parsed.clone()) else {
        return;
    };
    for path in input.paths.iter().take(8) {
        let Some((pattern, target, found)) = router.route(path) else {
            // A route written exactly as the path (no parameters, no wildcard) always matches.
            assert!(
                !parsed
                    .iter()
                    .any(|(p, _)| is_literal(p.raw()) && same_path(p.raw(), path)),
                "the literal route for {path:?} did not match"
            );
            continue;
        };
        assert_eq!(
            parsed[*target].0.raw(),
            pattern.raw(),
            "target and route disagree"
        );
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for (name, value) in &found.params {
            assert!(!name.is_empty(), "a parameter without a name");
            assert!(
                segments.contains(&value.as_str()),
                "{value:?} is not a segment of {path:?}"
            );
        }
        // A wildcard is a last `...` segment; trailing slashes are ignored (`/a/.../`), as
        // Spin trims them.
        if !pattern.raw().trim_end_matches('/').ends_with("/...") {
            assert_eq!(found.path_info, "", "path info without a wildcard");
        }
    }
}

fn is_literal(route: &str) -> bool {
    route.split('/').all(|s| !s.starts_with(':') && s != "...")
}

/// Equal up to empty segments (`//`, a trailing `/`), which routing ignores.
fn same_path(a: &str, b: &str) -> bool {
    let segments = |s: &str| {
        s.split('/')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    segments(a) == segments(b)
}

/// `{{ name }}` templates: every reference is a valid variable name, and rendering each
/// reference back as a placeholder yields a template with the same references.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use edge_host::template::{is_variable_name, Template};
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let names: Vec<&str> = template.references().collect();
    assert!(names.iter().all(|name| is_variable_name(name)));
    let placeholders: Vec<String> = names
        .iter()
        .map(|name| format!("{{{{ {name} }}}}"))
        .collect();
    let mut next = placeholders.iter();
    let rendered = template
        .render_with(|_| next.next().map(String::as_str).ok_or(()))
        .expect("one lookup per reference");
    // Literal text may itself contain a stray `}}` or `{`, never a `{{` (that would have
    // opened a placeholder), so the rendering parses again with the same references.
    let again = Template::parse(&rendered).expect("a rendered template parses");
    assert_eq!(again.references().collect::<Vec<_>>(), names);
}

/// `GET /todos` cursors and query strings: a decoded cursor re-encodes to itself, and a bad
/// query is a 400/422, never a server error.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use common::todo_list::{Cursor, ListQuery};
    if let Some(cursor) = Cursor::decode(text) {
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }
    if let Err(err) = ListQuery::parse(text) {
        assert!(
            (400..500).contains(&err.status()),
            "query {text:?} gave {}: {err}",
            err.status()
        );
    }
}

/// JSON request bodies through the strict reader the components use: a client's mistake
/// is 400 or 422 with at most `MAX_FIELD_ERRORS` field errors, never a server error.
pub fn json_body(data: &[u8]) {
    use common::http::JsonObject;
    use common::ApiError;
    let check = |err: ApiError| {
        assert!(
            (400..500).contains(&err.status()),
            "body gave {}: {err}",
            err.status()
        );
        let shown = err.to_problem(None).errors.len();
        assert!(
            shown <= common::error::MAX_FIELD_ERRORS,
            "{shown} field errors shown: {err}"
        );
    };
    match JsonObject::parse(data) {
        Ok(mut body) => {
            let _ = body.required_str("title");
            let _ = body.optional_str("notes");
            let _ = body.optional_bool("completed");
            if let Err(err) = body.finish() {
                check(err);
            }
        }
        Err(err) => check(err),
    }
}
