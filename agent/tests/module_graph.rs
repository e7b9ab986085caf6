//! The house rule that data flows one way, checked on the agent's own source: no module imports a module
//! that imports it back, directly or through others.
//!
//! A node is a source file's module; an edge A → B means A names something through a path that resolves
//! to B (`use crate::b::X`, `crate::b::f()`, `super::X`, a child module used by name). Unit tests at the
//! end of a file (`#[cfg(test)]`) and comments are not part of a module's imports; `mod child;`
//! declarations are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `update/mod.rs` → `update`; `lib.rs` → the crate root (empty).
fn module_of(root: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(root).expect("under src");
    let mut parts: Module = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its unit tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut in_string = false;
            let mut previous = ' ';
            for (i, c) in line.char_indices() {
                if c == '"' && previous != '\\' {
                    in_string = !in_string;
                }
                if !in_string && line[i..].starts_with("//") {
                    return &line[..i];
                }
                previous = c;
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![
            tree.split(" as ")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ];
    };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..tree.len() - 1]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// The longest known module a path names, from `module`.
fn resolve(modules: &BTreeSet<Module>, module: &Module, path: &str) -> Option<Module> {
    let segments: Vec<&str> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let (mut base, rest): (Module, &[&str]) = match segments.first().copied()? {
        "crate" => (Vec::new(), &segments[1..]),
        "self" => (module.clone(), &segments[1..]),
        "super" => {
            let ups = segments.iter().take_while(|s| **s == "super").count();
            let keep = module.len().checked_sub(ups)?;
            (module[..keep].to_vec(), &segments[ups..])
        }
        child => {
            let mut candidate = module.clone();
            candidate.push(child.to_owned());
            if !modules.contains(&candidate) {
                return None;
            }
            (module.clone(), &segments[..])
        }
    };
    let mut best = base.clone();
    for segment in rest {
        base.push((*segment).to_owned());
        if modules.contains(&base) {
            best = base.clone();
        }
    }
    Some(best)
}

/// The paths a piece of code names: use trees, and `crate::`/`super::`/`self::`/`child::` paths.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let statement = statement
            .strip_prefix("pub(crate) ")
            .or_else(|| statement.strip_prefix("pub "))
            .unwrap_or(statement);
        if let Some((before, tree)) = statement.rsplit_once("use ")
            && (before.is_empty() || before.ends_with(['\n', ' ', '}', '{']))
            && !tree.contains('(')
        {
            found.extend(expand(tree));
        }
    }
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = bytes[i].is_ascii_alphabetic()
            && (i == 0 || !(bytes[i - 1].is_alphanumeric() || matches!(bytes[i - 1], '_' | ':')));
        if word_start {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_alphanumeric() || matches!(bytes[j], '_' | ':')) {
                j += 1;
            }
            let path: String = bytes[i..j].iter().collect();
            if path.contains("::") {
                found.push(path);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let files: Vec<(Module, PathBuf)> = files
        .into_iter()
        .map(|f| (module_of(&root, &f), f))
        .filter(|(m, _)| m.first().map(String::as_str) != Some("bin"))
        .collect();
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    files
        .iter()
        .map(|(module, file)| {
            let text = std::fs::read_to_string(file).expect("source");
            let targets = paths(&code(&text))
                .iter()
                .filter_map(|p| resolve(&modules, module, p))
                .filter(|t| t != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// A cycle through `start`, if any.
fn cycle_from(
    graph: &BTreeMap<Module, BTreeSet<Module>>,
    start: &Module,
    at: &Module,
    path: &mut Vec<Module>,
    seen: &mut BTreeSet<Module>,
) -> Option<Vec<Module>> {
    for next in graph.get(at).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.clone());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(graph, start, next, path, seen) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_of_the_agent_imports_one_that_imports_it_back() {
    let graph = graph();
    let name = |m: &Module| {
        if m.is_empty() {
            "crate".to_owned()
        } else {
            m.join("::")
        }
    };
    let mut cycles = Vec::new();
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        if let Some(cycle) = cycle_from(&graph, module, module, &mut path, &mut BTreeSet::new()) {
            cycles.push(cycle.iter().map(name).collect::<Vec<_>>().join(" -> "));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    // The check sees the edges it is about.
    let edges = |from: &str| -> BTreeSet<String> {
        let module: Module = from.split("::").map(str::to_owned).collect();
        graph[&module].iter().map(name).collect()
    };
    assert!(edges("backend").contains("sim") && edges("backend").contains("kube"));
    assert!(edges("update::hosts").contains("update::plan"));
}

#[test]
fn the_cluster_seam_names_no_backend() {
    let cluster = &graph()[&vec!["cluster".to_owned()]];
    for backend in ["sim", "kube", "backend"] {
        assert!(
            !cluster
                .iter()
                .any(|m| m.first().is_some_and(|f| f == backend)),
            "cluster imports {backend}: {cluster:?}"
        );
    }
}

#[test]
fn use_trees_and_paths_resolve_to_the_longest_known_module() {
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["sim".into()],
        vec!["sim".into(), "model".into()],
    ]
    .into_iter()
    .collect();
    let sim: Module = vec!["sim".into()];
    let found: BTreeSet<Module> =
        paths("use crate::sim::{model::SimPod, SimCluster};\nlet x = super::y;")
            .iter()
            .filter_map(|p| resolve(&modules, &sim, p))
            .collect();
    assert_eq!(
        found,
        [vec![], sim.clone(), vec!["sim".into(), "model".into()]]
            .into_iter()
            .collect()
    );
    assert_eq!(
        code("let a = 1; // crate::sim\n/// [`crate::kube`]"),
        "let a = 1; \n"
    );
}
