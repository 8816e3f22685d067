//! What the `web` component serves, as plain logic: which request path is which file of
//! its `files` mount, with what type, caching and headers.
//!
//! The mount (spin.toml: `files = [{ source = "web/dist", destination = "/" }]`) is the
//! front end's build: `index.html` (the todo app), `docs/index.html` (the API docs),
//! `docs/openapi.json`, and `assets/` with content-hashed file names. Hashed names never
//! change content, so they are cached for a year (`immutable`); everything else is
//! revalidated on every use (`no-cache` with an `ETag`), so a deployment is seen at once.
//!
//! Only a closed set of path shapes maps to a file: no `..`, no backslash, no empty or
//! dot-led segments (`.env`, `.git`), no percent-escapes (the build never makes names that
//! need them), and only the extensions in [`content_type`]; anything else is a 404, so the
//! component can never be asked for something outside what the build produced.

/// The Content-Security-Policy of every page: scripts, styles, images and fonts only from
/// the app's own origin (the build emits no inline script or style), API calls only to
/// it, no frames, no plugins, forms only to itself.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every answer of the web component carries (beside `content-type`,
/// `cache-control` and `etag`).
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("content-security-policy", PAGE_CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
];

/// One file to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// The absolute path in the component's file mount.
    pub file: String,
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

/// Cache policy of content-hashed files (`/assets/...`).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of everything else: keep, but ask every time (cheap with the ETag).
pub const REVALIDATE: &str = "no-cache";

/// The file a request path names, or `None` (a 404). A path ending in `/` and the bare
/// `/docs` name that directory's `index.html`.
pub fn resolve(path: &str) -> Option<Asset> {
    let path = match path {
        "/docs" => "/docs/",
        other => other,
    };
    if !path.starts_with('/') || path.contains(['\\', '%', '\0']) {
        return None;
    }
    let file = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let mut segments = file[1..].split('/');
    if !segments.all(|s| !s.is_empty() && !s.starts_with('.')) {
        return None;
    }
    let extension = file.rsplit_once('.').map(|(_, ext)| ext)?;
    let content_type = content_type(extension)?;
    let cache_control = if file.starts_with("/assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    Some(Asset {
        file,
        content_type,
        cache_control,
    })
}

/// The media type of the extensions the front end's build produces; `None` for others.
pub fn content_type(extension: &str) -> Option<&'static str> {
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

/// A strong entity tag of a file's bytes (64-bit FNV-1a: a change detector, not a
/// security boundary; the files are the app's own build).
pub fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"f{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_assets_map_to_their_files() {
        let index = resolve("/").unwrap();
        assert_eq!(index.file, "/index.html");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert_eq!(index.cache_control, REVALIDATE);
        assert_eq!(resolve("/docs").unwrap().file, "/docs/index.html");
        assert_eq!(resolve("/docs/").unwrap().file, "/docs/index.html");
        let spec = resolve("/docs/openapi.json").unwrap();
        assert_eq!(
            (spec.content_type, spec.cache_control),
            ("application/json", REVALIDATE)
        );
        let script = resolve("/assets/app-3f2a1b.js").unwrap();
        assert_eq!(script.content_type, "text/javascript; charset=utf-8");
        assert_eq!(script.cache_control, IMMUTABLE);
    }

    #[test]
    fn nothing_outside_the_build_is_reachable() {
        for path in [
            "/../spin.toml",
            "/assets/../../etc/passwd",
            "/assets/%2e%2e/x.js",
            "/assets\\x.js",
            "//etc/passwd.txt",
            "/.env",
            "/assets/.hidden.js",
            "/assets//x.js",
            "/spin.toml",
            "/assets/app.wasm",
            "/README",
            "relative.html",
            "/index.html\0.js",
        ] {
            assert_eq!(resolve(path), None, "{path} must be a 404");
        }
    }

    #[test]
    fn the_etag_follows_the_bytes() {
        assert_eq!(etag(b"<h1>todo</h1>"), etag(b"<h1>todo</h1>"));
        assert_ne!(etag(b"<h1>todo</h1>"), etag(b"<h1>todos</h1>"));
        assert!(etag(b"").starts_with("\"f") && etag(b"").ends_with('"'));
    }

    #[test]
    fn the_policy_allows_only_the_apps_own_origin() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(PAGE_CSP.contains(directive), "{directive}");
        }
        assert!(
            !PAGE_CSP.contains("unsafe"),
            "no unsafe-inline or unsafe-eval"
        );
    }
}
