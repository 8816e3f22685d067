//! `openapi.yaml` and `spin.toml` agree: every route the manifest declares is described in
//! the spec, and every path in the spec is routed by the manifest (with Spin's matching:
//! exact routes, `:name` segments, trailing `/...` wildcards). No server needed. The web
//! component's routes (the pages and their assets, not the API) are left out.

use std::fs;

use crate::harness::repo_root;

/// The component serving pages, whose routes are not API operations.
const PAGES_COMPONENT: &str = "web";

/// The HTTP routes of `spin.toml`'s API components.
fn manifest_routes() -> Vec<String> {
    let text = fs::read_to_string(repo_root().join("spin.toml")).expect("spin.toml");
    let manifest: toml::Table = text.parse().expect("spin.toml is TOML");
    manifest["trigger"]["http"]
        .as_array()
        .expect("[[trigger.http]] entries")
        .iter()
        .filter(|t| t.get("component").and_then(|c| c.as_str()) != Some(PAGES_COMPONENT))
        .filter_map(|t| t.get("route").and_then(|r| r.as_str()).map(str::to_string))
        .collect()
}

/// The path keys of `openapi.yaml`.
fn spec_paths() -> Vec<String> {
    let text = fs::read_to_string(repo_root().join("openapi.yaml")).expect("openapi.yaml");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("openapi.yaml is YAML");
    let doc = &docs[0];
    assert_eq!(
        doc["openapi"].as_str(),
        Some("3.1.0"),
        "an OpenAPI 3.1 document"
    );
    doc["paths"]
        .as_hash()
        .expect("a paths object")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect()
}

/// Whether a Spin route matches a spec path (`{param}` stands for any one segment).
fn route_matches(route: &str, path: &str) -> bool {
    if let Some(prefix) = route.strip_suffix("/...") {
        return path == prefix || path.starts_with(&format!("{prefix}/"));
    }
    let route_segments: Vec<&str> = route.split('/').collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    route_segments.len() == path_segments.len()
        && route_segments.iter().zip(&path_segments).all(|(r, p)| {
            let r_param = r.starts_with(':');
            let p_param = p.starts_with('{') && p.ends_with('}');
            r == p || (r_param && p_param)
        })
}

/// The items for which `matched` is false.
fn without_match(items: &[String], matched: impl Fn(&str) -> bool) -> Vec<&String> {
    items
        .iter()
        .filter(|item| !matched(item.as_str()))
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_path_is_routed() {
    let routes = manifest_routes();
    let paths = spec_paths();
    assert!(!routes.is_empty() && !paths.is_empty());

    let undocumented = without_match(&routes, |r| paths.iter().any(|p| route_matches(r, p)));
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );

    let unrouted = without_match(&paths, |p| routes.iter().any(|r| route_matches(r, p)));
    assert!(
        unrouted.is_empty(),
        "openapi.yaml paths spin.toml does not route: {unrouted:?}"
    );
}

#[test]
fn route_matching_follows_spin() {
    assert!(route_matches("/todos", "/todos"));
    assert!(!route_matches("/todos", "/todos/{id}"));
    assert!(route_matches("/todos/:id", "/todos/{id}"));
    assert!(!route_matches("/todos/:id", "/todos/literal"));
    assert!(route_matches("/api/...", "/api/x/{y}"));
    assert!(route_matches("/api/...", "/api"));
    assert!(!route_matches("/api/...", "/apix"));
}
