//! The module map stays a layered graph: no import cycle between the
//! top-level modules of any crate (the core, the webhooks, the server, the
//! projector). A cycle is how adapters end up knowing each other's
//! internals; this test names the first one it finds. Cargo forbids cycles
//! between crates; the last test keeps their layers: the core depends on
//! no other Streamboard crate, webhooks on the core alone, and the
//! projector never on the server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module name -> the top-level modules its code names through
/// `crate::...` (comments excluded, tests included).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let mut files = Vec::new();
        collect_rust_files(&path, &mut files);
        let deps = graph.entry(name.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a readable source file");
            for module in crate_paths(&text) {
                if module != name {
                    deps.insert(module);
                }
            }
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    graph
}

fn collect_rust_files(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("a source folder") {
            collect_rust_files(&entry.expect("a folder entry").path(), files);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        files.push(path.to_owned());
    }
}

/// The first segment after every `crate::` (and each item of
/// `crate::{a, b::c}`) outside comments.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let head = item.trim().split("::").next().unwrap_or("");
                    if !head.is_empty() && head != "self" {
                        found.insert(head.to_owned());
                    }
                }
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    found.insert(head);
                }
            }
        }
    }
    found
}

/// A cycle as `a -> b -> a`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn assert_acyclic(src: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let graph = module_graph(&root);
    assert!(graph.len() >= 3, "{src}: too few modules found: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "{src}: import cycle {}\ngraph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn server_modules_have_no_import_cycle() {
    assert_acyclic("src");
}

#[test]
fn projector_modules_have_no_import_cycle() {
    assert_acyclic("projector/src");
}

#[test]
fn core_modules_have_no_import_cycle() {
    assert_acyclic("core/src");
}

#[test]
fn webhooks_modules_have_no_import_cycle() {
    assert_acyclic("webhooks/src");
}

/// The Streamboard crates a crate's manifest depends on.
fn workspace_dependencies(manifest: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
    let text = std::fs::read_to_string(&path).expect("a readable manifest");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name.trim().trim_end_matches(".workspace").to_owned())
        .filter(|name| name == "streamboard" || name.starts_with("streamboard-"))
        .collect()
}

#[test]
fn crates_depend_downwards_only() {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(workspace_dependencies("core/Cargo.toml"), names(&[]));
    assert_eq!(
        workspace_dependencies("webhooks/Cargo.toml"),
        names(&["streamboard-core"])
    );
    assert_eq!(
        workspace_dependencies("projector/Cargo.toml"),
        names(&["streamboard-core", "streamboard-webhooks"])
    );
    assert_eq!(
        workspace_dependencies("Cargo.toml"),
        names(&["streamboard-core", "streamboard-webhooks"])
    );
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let paths = crate_paths(
        "use crate::{http::error::ApiError, store};\n// crate::app\nx(crate::views::y)",
    );
    assert_eq!(
        paths,
        BTreeSet::from(["http".into(), "store".into(), "views".into()])
    );
}
