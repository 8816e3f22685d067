//! edge-host as a library: the pieces the `edge-host` binary puts together, public so
//! that tests and benchmarks can drive them directly.
//!
//! Imports run one way (see host/README.md, "Architecture"):
//!
//! ```text
//! main ─▶ triggers ─▶ app ─▶ engine ─▶ componentize
//!                      │  ─▶ capabilities ─▶ variables ─▶ manifest ─▶ {template, routes, files}
//!                      └──────────────────────────────────▶ runtime_config, logs, metrics
//! ```
//!
//! - [`template`], [`routes`]: leaf modules (`{{ var }}` templates, Spin route matching);
//! - [`manifest`], [`variables`], [`runtime_config`]: what the app asks for; the manifest
//!   yields typed trigger specs;
//! - [`files`]: a component's `files` mounts, staged at load (a leaf the manifest types
//!   its entries with);
//! - [`engine`]: wasmtime, the pooling allocator and the compile cache, which adapts core
//!   modules to components first ([`componentize`], a leaf);
//! - [`capabilities`]: the Spin host interfaces, one module each, and the per-instance
//!   state a `Store` holds;
//! - [`app`]: components compiled, linked and pre-instantiated, and the one instance
//!   runner ([`app::InstanceRun`]) every trigger goes through;
//! - [`triggers`]: what runs a component (HTTP requests, Redis messages);
//! - [`admission`]: who may wait for an instance, how long and how many at once (the
//!   HTTP trigger's caps and queue bound, and its `[edge_host.admission]` table); a leaf;
//! - [`metrics`]: a leaf every layer records into (Prometheus, `--metrics-listen`).

pub mod admission;
pub mod app;
pub mod bindings;
pub mod capabilities;
pub mod componentize;
pub mod engine;
pub mod files;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod routes;
pub mod runtime_config;
pub mod template;
pub mod triggers;
pub mod variables;

/// The import graph, checked: every top-level module of the host (and of the Todo API's
/// shared `common` crate) may use only modules that do not use it back, directly or
/// through others. The picture in host/README.md is the intent; this keeps it true.
#[cfg(test)]
mod import_graph {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `module -> modules it names as crate::X`, read from the sources outside
    /// `#[cfg(test)]` code (tests may reach across layers).
    fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files = vec![src.to_path_buf()];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("tests.rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let top = relative.iter().next().unwrap().to_string_lossy();
            let module = top.trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let uses = graph.entry(module.clone()).or_default();
            for name in crate_paths(code) {
                if name != module && !["lib", "main"].contains(&module.as_str()) {
                    uses.insert(name);
                }
            }
        }
        graph
    }

    /// Module names after `crate::`, in plain paths and in `use crate::{a, b::c}` lists,
    /// skipping comment lines.
    fn crate_paths(code: &str) -> Vec<String> {
        let code: String = code
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut names = Vec::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // `use crate::{a::X, b, c::{d, e}};`: the first segment of each item.
                names.extend(top_level_items(list).map(|item| first_segment(item).to_owned()));
            } else {
                names.push(first_segment(rest).to_owned());
            }
        }
        names.retain(|name| !name.is_empty() && name != "self");
        names
    }

    /// The comma-separated items of a `{...}` list (its closing brace ends it), nested
    /// lists left inside their item.
    fn top_level_items(list: &str) -> impl Iterator<Item = &str> {
        let mut depth = 0;
        let end = list
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => return true,
                    '}' => depth -= 1,
                    _ => {}
                }
                false
            })
            .map_or(list.len(), |(at, _)| at);
        let mut depth = 0;
        list[..end].split(move |c| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            c == ',' && depth == 0
        })
    }

    /// The leading identifier of a path such as `app::App` or ` engine`.
    fn first_segment(path: &str) -> &str {
        let path = path.trim_start();
        let len = path
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(path.len());
        &path[..len]
    }

    /// A cycle through `start`, if there is one, as the modules along it.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            graph: &BTreeMap<String, BTreeSet<String>>,
            node: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|seen| seen == node) {
                let mut found = path[at..].to_vec();
                found.push(node.to_owned());
                return Some(found);
            }
            if !done.insert(node.to_owned()) {
                return None;
            }
            path.push(node.to_owned());
            for next in graph.get(node).into_iter().flatten() {
                if let Some(found) = visit(graph, next, path, done) {
                    return Some(found);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|start| visit(graph, start, &mut Vec::new(), &mut done))
    }

    #[test]
    fn the_cycle_finder_finds_a_cycle() {
        let graph = BTreeMap::from([
            ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
            ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
            ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ]);
        assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
        assert_eq!(
            crate_paths("use crate::{app::App, engine};\nlet x = crate::routes::Router::new();\n// crate::nope"),
            ["app", "engine", "routes"]
        );
    }

    #[test]
    fn host_modules_import_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let graph = graph(&src);
        assert!(graph.contains_key("triggers") && graph["triggers"].contains("app"));
        if let Some(found) = cycle(&graph) {
            panic!("module cycle in host/src: {}", found.join(" -> "));
        }
    }

    /// The Todo API's shared crate is read from its sources too: it is the other
    /// codebase every component change goes through.
    #[test]
    fn common_modules_import_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/common/src");
        let graph = graph(&src);
        assert!(graph.contains_key("http") && graph["http"].contains("error"));
        if let Some(found) = cycle(&graph) {
            panic!(
                "module cycle in components/common/src: {}",
                found.join(" -> ")
            );
        }
    }
}
