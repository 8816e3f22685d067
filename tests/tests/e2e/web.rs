//! The `web` component: the web app at `/` and the API docs at `/docs`, served from the front
//! end's build (`web/dist`, spin.toml's `files` mount of the component) by the real host.
//! The headers and conditional answers are checked here over HTTP; the pages themselves in a
//! real browser (Chromium via `web/tests/browser.mjs`).

use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::harness::{raw_get, repo_root, TestApp};

async fn get(app: &TestApp, path: &str) -> Result<reqwest::Response> {
    Ok(app.get(path).send().await?)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The hashed script and stylesheet paths `index.html` links.
fn asset_paths(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn pages_come_with_their_type_security_headers_and_revalidation() -> Result<()> {
    let app = TestApp::spawn().await;
    for (path, marker) in [
        ("/", "id=\"register-form\""),
        ("/docs", "id=\"operations\""),
        ("/docs/", "id=\"operations\""),
    ] {
        let response = get(&app, path).await?;
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8",
            "GET {path}"
        );
        assert_eq!(header(&response, "cache-control"), "no-cache", "GET {path}");
        let csp = header(&response, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "GET {path}: CSP {csp:?}"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let etag = header(&response, "etag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "GET {path}: etag {etag:?}"
        );
        let body = response.text().await?;
        assert!(
            body.contains(marker),
            "GET {path} is not the page it should be: {body:.200}"
        );

        let again = app.get(path).header("if-none-match", &etag).send().await?;
        assert_eq!(
            again.status(),
            304,
            "GET {path} with If-None-Match of the current tag"
        );
        assert_eq!(again.text().await?, "");
    }
    Ok(())
}

#[tokio::test]
async fn hashed_assets_are_cached_for_a_year_and_head_has_no_body() -> Result<()> {
    let app = TestApp::spawn().await;
    let index = get(&app, "/").await?.text().await?;
    let assets = asset_paths(&index);
    ensure!(
        assets.iter().any(|a| a.ends_with(".js")),
        "index.html links no script: {assets:?}"
    );
    ensure!(
        assets.iter().any(|a| a.ends_with(".css")),
        "index.html links no stylesheet: {assets:?}"
    );
    for path in &assets {
        let response = get(&app, path).await?;
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let expected = if path.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&response, "content-type"), expected, "GET {path}");
        let length: usize = header(&response, "content-length").parse()?;
        assert_eq!(response.bytes().await?.len(), length);

        let head = app.request(reqwest::Method::HEAD, path).send().await?;
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            header(&head, "content-length"),
            length.to_string(),
            "HEAD {path}"
        );
        assert!(head.bytes().await?.is_empty(), "HEAD {path} has a body");
    }
    Ok(())
}

#[tokio::test]
async fn the_docs_serve_the_spec_built_from_openapi_yaml() -> Result<()> {
    let app = TestApp::spawn().await;
    let response = get(&app, "/docs/openapi.json").await?;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    let served: serde_json::Value = response.json().await?;
    let text = std::fs::read_to_string(repo_root().join("openapi.yaml"))?;
    let source = &yaml_rust2::YamlLoader::load_from_str(&text)?[0];
    let mut served_paths: Vec<&str> = served["paths"]
        .as_object()
        .context("no paths in the served spec")?
        .keys()
        .map(String::as_str)
        .collect();
    let mut source_paths: Vec<&str> = source["paths"]
        .as_hash()
        .context("no paths in openapi.yaml")?
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    served_paths.sort_unstable();
    source_paths.sort_unstable();
    assert_eq!(
        served_paths, source_paths,
        "the served spec is not openapi.yaml's"
    );
    assert_eq!(
        served["info"]["version"].as_str(),
        source["info"]["version"].as_str()
    );
    Ok(())
}

#[tokio::test]
async fn nothing_but_the_build_is_reachable_and_only_get_and_head() -> Result<()> {
    let app = TestApp::spawn().await;
    for path in [
        "/docs/missing.html",
        "/docs/.env",
        "/assets/app.wasm",
        "/docs/openapi.yaml",
    ] {
        let response = get(&app, path).await?;
        assert_eq!(response.status(), 404, "GET {path}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json",
            "GET {path}"
        );
    }
    // Sent as written (a client library would remove the dot segments first).
    for path in [
        "/assets/../../spin.toml",
        "/docs/../../Cargo.toml",
        "/assets/..%2f..%2fspin.toml",
    ] {
        let (status, body) = raw_get(&app.url(path)).send()?;
        assert_eq!(status, 404, "GET {path}: {body:.200}");
        assert!(
            !body.contains("spin_manifest_version") && !body.contains("[workspace]"),
            "GET {path} leaked a file"
        );
    }
    let post = app.post("/").body("x").send().await?;
    assert_eq!(post.status(), 405);
    assert_eq!(header(&post, "allow"), "GET, HEAD");
    assert_eq!(header(&post, "content-type"), "application/problem+json");
    Ok(())
}

#[tokio::test]
#[ignore = "drives Chromium (/usr/bin/chromium or CHROMIUM_BIN) with web/node_modules' playwright-core; scripts/test installs both"]
async fn the_web_app_works_in_a_real_browser() -> Result<()> {
    let app = TestApp::spawn().await;
    let web = repo_root().join("web");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("tests/browser.mjs")
            .arg(&app.address)
            .current_dir(&web)
            .output()
            .map(|output| (app, output))
    })
    .await?
    .context("running node web/tests/browser.mjs (is Node.js installed?)")?;
    let (app, output) = output;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser run failed ({}):\n{stdout}\n{stderr}\nhost output:\n{}",
        output.status,
        app.output().join("\n")
    );
    ensure!(
        stdout.contains("steps passed"),
        "the browser run did not finish: {stdout}"
    );
    Ok(())
}
