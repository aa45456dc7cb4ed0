//! The source tree's shape, read from the code itself (syn parses every crate's `src`; test
//! modules are left out):
//!
//! - imports point one way: no module of a crate uses one that uses it back, directly or
//!   through others (a module's uses are its `use` items and every path in its code that
//!   names another module of the crate, `crate::`, `super::`, `self::` or a child's name;
//!   a name the crate root re-exports counts as its own module's);
//! - functions fit on a screen: none over [`MAX_LINES`] lines, but the kernels listed in
//!   [`LONG_KERNELS`], each with the reason it is one function.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The crates of the workspace whose `src` is checked, and the firmware's.
const CRATES: [&str; 9] =
    ["trainer", "infer-core", "infer-c", "infer-host", "dataset", "runio", "firmware-sim", "benches", "tools/firmware"];

/// Longest function, in lines from `fn` to its closing brace.
const MAX_LINES: usize = 80;

/// Functions allowed to be longer, and why.
const LONG_KERNELS: [(&str, &str, &str); 2] = [
    (
        "trainer/src/kernels/mod.rs",
        "gemm_with_state",
        "packs B, splits the rows into tasks and runs every micro-tile in one body: its buffers are \
         thread-locals borrowed for the whole product",
    ),
    (
        "trainer/src/kernels/mod.rs",
        "micro_kernel",
        "one loop per epilogue, each unrolled completely, so that the accumulators are indexed by \
         constants and stay in registers",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace holds tests/").to_path_buf()
}

/// A module's path from its file: `""` for the crate root, `kernels::lanes` for
/// `src/kernels/lanes.rs`.
fn module_name(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file of src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts.join("::")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().contains("test")))
}

/// Every path a module's code names (as segment lists), `use` trees flattened.
#[derive(Default)]
struct Paths {
    paths: Vec<Vec<String>>,
    /// Names the module re-exports with `pub use`: name -> path.
    reexports: Vec<(String, Vec<String>)>,
}

fn flatten(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            let name = n.ident.to_string();
            if name != "self" {
                path.push(name.clone());
            }
            let local = if name == "self" { prefix.last().cloned().unwrap_or_default() } else { name };
            out.push((path, local));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((path, r.rename.to_string()));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), String::new())),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| flatten(t, prefix, out)),
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if is_test(&u.attrs) {
            return;
        }
        let mut flat = Vec::new();
        flatten(&u.tree, &mut Vec::new(), &mut flat);
        let public = matches!(u.vis, syn::Visibility::Public(_));
        for (path, local) in flat {
            if public && !local.is_empty() {
                self.reexports.push((local, path.clone()));
            }
            self.paths.push(path);
        }
    }
    /// `pub(crate)`, `pub(super)`: who may use an item, not a use.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.paths.push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }
}

/// The module of `modules` that `path`, named in module `from`, reaches (`None`: another
/// crate, or an item of `from` itself).
fn resolve(
    path: &[String],
    from: &str,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let join = |base: &str, rest: &[String]| {
        let mut parts: Vec<String> = base.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
        parts.extend(rest.iter().cloned());
        parts
    };
    let absolute = match path.first().map(String::as_str) {
        Some("crate") => match path.get(1).and_then(|name| reexports.get(name)) {
            // A name the root re-exports: the module it comes from.
            Some(target) if !modules.contains(&path[1]) => {
                let mut full = target.clone();
                full.extend(path[2..].iter().cloned());
                return resolve(&full, "", modules, reexports);
            }
            _ => path[1..].to_vec(),
        },
        Some("super") => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
            base.truncate(base.len().saturating_sub(supers));
            join(&base.join("::"), &path[supers..])
        }
        Some("self") => join(from, &path[1..]),
        Some(first) if modules.contains(&join(from, &[first.to_string()]).join("::")) => join(from, path),
        Some(first) if from.is_empty() && modules.contains(first) => path.to_vec(),
        _ => return None,
    };
    // The longest prefix that is a module; the root when only an item of the root is named.
    let target = (0..=absolute.len()).rev().map(|n| absolute[..n].join("::")).find(|m| modules.contains(m))?;
    (target != from).then_some(target)
}

/// Module -> the modules it uses, for the crate at `dir`.
fn graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = dir.join("src");
    // A binary beside a library reaches it by the crate's name, like any other crate.
    let library = src.join("lib.rs").is_file();
    let files: Vec<PathBuf> = rust_files(&src)
        .into_iter()
        .filter(|f| !(library && f.strip_prefix(&src).unwrap() == Path::new("main.rs")))
        .collect();
    let mut parsed = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        parsed.push((module_name(&src, file), paths));
    }
    let modules: BTreeSet<String> = parsed.iter().map(|(m, _)| m.clone()).collect();
    let reexports: BTreeMap<String, Vec<String>> =
        parsed.iter().filter(|(m, _)| m.is_empty()).flat_map(|(_, p)| p.reexports.iter().cloned()).collect();
    let mut edges = BTreeMap::new();
    for (module, paths) in &parsed {
        let mut targets = BTreeSet::new();
        for path in &paths.paths {
            if let Some(target) = resolve(path, module, &modules, &reexports) {
                if std::env::var_os("LAYERS_DEBUG").is_some() {
                    eprintln!("{}: {} -> {}", dir.display(), display(module), path.join("::"));
                }
                targets.insert(target);
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The groups of modules that use each other (strongly connected, more than one), each
/// sorted; Tarjan's algorithm.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    group.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

fn display(m: &str) -> &str {
    if m.is_empty() { "(crate root)" } else { m }
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let mut problems = Vec::new();
    for krate in CRATES {
        let edges = graph(&workspace().join(krate));
        for group in cycles(&edges) {
            let uses: Vec<String> = group
                .iter()
                .map(|m| {
                    let inside: Vec<&str> = edges[m].iter().filter(|t| group.contains(t)).map(|t| display(t)).collect();
                    format!("{} -> {}", display(m), inside.join(", "))
                })
                .collect();
            problems.push(format!("{krate}: {}", uses.join("; ")));
        }
    }
    assert!(problems.is_empty(), "modules that use each other:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_a_ring_and_the_modules_it_goes_through() {
    let edge = |a: &str, bs: &[&str]| (a.to_string(), bs.iter().map(|b| b.to_string()).collect::<BTreeSet<_>>());
    let edges: BTreeMap<_, _> =
        [edge("a", &["b"]), edge("b", &["c"]), edge("c", &["a", "d"]), edge("d", &[]), edge("e", &["d"])].into();
    assert_eq!(cycles(&edges), [vec!["a".to_string(), "b".into(), "c".into()]]);
    let modules: BTreeSet<String> = ["", "kernels", "kernels::lanes", "optim"].map(String::from).into();
    let reexports: BTreeMap<String, Vec<String>> =
        [("Step".to_string(), vec!["optim".to_string(), "Step".into()])].into();
    let path = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let r = |p: &str, from: &str| resolve(&path(p), from, &modules, &reexports);
    assert_eq!(r("crate::optim::Step", "kernels").as_deref(), Some("optim"));
    assert_eq!(r("crate::Step", "kernels").as_deref(), Some("optim"), "a re-export is its module's");
    assert_eq!(r("super::MatRef", "kernels::lanes").as_deref(), Some("kernels"));
    assert_eq!(r("lanes::V", "kernels").as_deref(), Some("kernels::lanes"));
    assert_eq!(r("rayon::prelude", "kernels"), None);
    assert_eq!(r("crate::kernels::gemm", "kernels"), None, "its own items");
}

/// Functions of `file` over [`MAX_LINES`]: (name, lines).
fn long_functions(file: &Path) -> Vec<(String, usize)> {
    struct Lengths(Vec<(String, usize)>);
    impl<'ast> Visit<'ast> for Lengths {
        fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
            if !is_test(&m.attrs) {
                syn::visit::visit_item_mod(self, m);
            }
        }
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            let lines = f.block.brace_token.span.close().end().line - f.sig.fn_token.span.start().line + 1;
            self.0.push((f.sig.ident.to_string(), lines));
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            let lines = f.block.brace_token.span.close().end().line - f.sig.fn_token.span.start().line + 1;
            self.0.push((f.sig.ident.to_string(), lines));
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    let ast = syn::parse_file(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut lengths = Lengths(Vec::new());
    lengths.visit_file(&ast);
    lengths.0.into_iter().filter(|(_, n)| *n > MAX_LINES).collect()
}

#[test]
fn functions_fit_on_a_screen_but_the_kernels_listed() {
    let root = workspace();
    let (mut long, mut listed) = (Vec::new(), BTreeSet::new());
    for krate in CRATES {
        for file in rust_files(&root.join(krate).join("src")) {
            let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            for (name, lines) in long_functions(&file) {
                match LONG_KERNELS.iter().find(|(f, n, _)| *f == rel && *n == name) {
                    Some(kernel) => _ = listed.insert(kernel.1),
                    None => long.push(format!("{rel}: {name}, {lines} lines")),
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (split them, or list a kernel with its reason):\n{}",
        long.join("\n")
    );
    let stale: Vec<&str> = LONG_KERNELS.iter().map(|k| k.1).filter(|n| !listed.contains(n)).collect();
    assert!(stale.is_empty(), "listed as long but no longer over {MAX_LINES} lines: {stale:?}");
}
