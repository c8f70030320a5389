//! The workspace's walls, checked: no cycle between the top-level modules of any crate, no
//! clap outside the binary, and a `rust-version` that is true for the dependency tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src` folders of every crate in the workspace.
fn crate_sources() -> Vec<PathBuf> {
    let root = test_support::repo();
    let mut v = vec![root.join("src")];
    for e in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let src = e.expect("entry").path().join("src");
        if src.is_dir() {
            v.push(src);
        }
    }
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the top-level modules its files name as `crate::x`.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::<String, Vec<PathBuf>>::new();
    for e in std::fs::read_dir(src).expect("src") {
        let p = e.expect("entry").path();
        let name = p.file_stem().expect("name").to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
        modules.entry(name).or_default().extend(files);
    }
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (m, files) in &modules {
        let mut to = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(f).expect("read source");
            for (i, _) in text.match_indices("crate::") {
                let after = &text[i + "crate::".len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `$crate::`, `nimriz_matrix_core::` etc. are not edges inside this crate.
                let before = text[..i].chars().next_back();
                let own =
                    !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
                if own && name != *m && known.contains(&name) {
                    to.insert(name);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// A cycle in the graph, as a path `a → b → … → a`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn cycle_finder_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    g.insert("c".to_string(), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn top_level_modules_of_every_crate_form_no_cycle() {
    let sources = crate_sources();
    assert!(sources.len() >= 5, "{sources:?}");
    for src in sources {
        let edges = module_edges(&src);
        if src.ends_with("crates/nimriz-matrix-core/src") {
            // The scan sees real imports (so a pass means something).
            assert!(edges["apply"].contains("manifest"), "{edges:?}");
        }
        assert!(!edges.is_empty(), "no modules found in {}", src.display());
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "import cycle between top-level modules in {}: {}",
                src.display(),
                cycle.join(" → ")
            );
        }
    }
}

fn metadata() -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(test_support::repo())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata JSON")
}

/// `1.89` and `1.89.0` are the same version.
fn version(v: &str) -> [u64; 3] {
    let mut out = [0; 3];
    for (slot, part) in out.iter_mut().zip(v.split('.')) {
        *slot = part.parse().unwrap_or(0);
    }
    out
}

#[test]
fn rust_version_is_the_true_minimum_of_the_dependency_tree() {
    let meta = metadata();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "nimriz-matrix")
        .and_then(|p| p["rust_version"].as_str())
        .expect("the workspace declares rust-version");
    let mut too_new = Vec::new();
    for p in packages {
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        if members.contains(p["id"].as_str().unwrap_or_default()) {
            assert_eq!(
                rv, ours,
                "{} must use the workspace's rust-version",
                p["name"]
            );
        } else if version(rv) > version(ours) {
            too_new.push(format!(
                "{} {} needs {rv}",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?")
            ));
        }
    }
    assert!(
        too_new.is_empty(),
        "rust-version = {ours} is false: {}",
        too_new.join(", ")
    );
}

#[test]
fn only_the_binary_depends_on_clap() {
    let meta = metadata();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    for p in meta["packages"].as_array().expect("packages") {
        if !members.contains(p["id"].as_str().unwrap_or_default()) || p["name"] == "nimriz-matrix" {
            continue;
        }
        let deps: Vec<&str> = p["dependencies"]
            .as_array()
            .expect("deps")
            .iter()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert!(
            !deps.contains(&"clap"),
            "{} depends on clap; flags belong to the binary",
            p["name"]
        );
    }
}
