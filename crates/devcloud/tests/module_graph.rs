//! No import circles between the modules of any crate of the workspace (each room holds one purpose):
//! the module graph read from each crate's `src/` (`crate::` and `super::` paths) has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module graph of `src/`: an edge from each module (a file) to every module it names through
/// `crate::…` or `super::…` outside comments. References to a module's own ancestors (its parent's
/// re-exports) are not edges.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    files(src, &mut all);
    let node = |p: &Path| -> String {
        let rel = p.strip_prefix(src).expect("under src").with_extension("");
        let s = rel.to_string_lossy().replace('\\', "/");
        s.strip_suffix("/mod").map(str::to_string).unwrap_or(s)
    };
    let nodes: BTreeSet<String> = all.iter().map(|p| node(p)).collect();
    // the longest existing module named by a path of segments
    let resolve = |segs: &[&str]| -> Option<String> {
        (1..=segs.len())
            .rev()
            .map(|n| segs[..n].join("/"))
            .find(|m| nodes.contains(m))
    };
    let mut graph = BTreeMap::new();
    for p in &all {
        let me = node(p);
        let parent: Vec<&str> = me.split('/').collect();
        let parent = &parent[..parent.len() - 1];
        let text = std::fs::read_to_string(p).expect("read source");
        let mut edges = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (prefix, base) in [("crate::", &[][..]), ("super::", parent)] {
                let mut rest = code;
                while let Some(i) = rest.find(prefix) {
                    let tail = &rest[i + prefix.len()..];
                    let path: Vec<&str> = tail
                        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .next()
                        .unwrap_or("")
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .collect();
                    let mut full: Vec<&str> = base.to_vec();
                    full.extend(path);
                    if let Some(target) = resolve(&full) {
                        let ancestor = me.starts_with(&format!("{target}/"));
                        if target != me && !ancestor {
                            edges.insert(target);
                        }
                    }
                    rest = tail;
                }
            }
        }
        graph.insert(me, edges);
    }
    graph
}

/// A cycle in the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn modules_do_not_import_each_other_in_a_circle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates/").flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = module_graph(&src);
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(
            find_cycle(&graph),
            None,
            "import circle in {name}; graph: {graph:#?}"
        );
        checked.push(name);
    }
    checked.sort();
    for must in [
        "devcloud-arm",
        "devcloud-host",
        "devcloud-messaging",
        "galleon",
    ] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} was not checked: {checked:?}"
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
