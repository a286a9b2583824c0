//! No crate of the workspace has an import circle between its modules: read from the `crate::`
//! paths of the code outside tests, module `a` depends on module `b` when it names `crate::b::…`,
//! or an item the crate root re-exports from `b`. Each crate's modules then form a line a reader
//! can follow from the leaves up, and a new circle fails `make test` with the paths that close it.
//!
//! A module is a file under `src/` (a folder's files belong to its top-level module); the root
//! (`lib.rs`, `main.rs`) only gathers and re-exports, and is not a node. Comments, and items
//! behind `#[cfg(test)]`, are not read: a test may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The workspace: this crate's parent folder.
fn workspace_root() -> std::path::PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// Where one module names another: the file and line, for the report.
type Edges = BTreeMap<(String, String), String>;

/// The source without comments and without the items behind `#[cfg(test)]`, as numbered lines.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut lines = Vec::new();
    let mut skip_until: Option<String> = None;
    let mut numbered = text.lines().enumerate().peekable();
    while let Some((n, line)) = numbered.next() {
        if let Some(end) = &skip_until {
            if line == end {
                skip_until = None;
            }
            continue;
        }
        if line.trim() == "#[cfg(test)]" {
            let indent = &line[..line.len() - line.trim_start().len()];
            // The item it gates: one line ending in `;`, or a block up to its closing brace.
            if let Some((_, item)) = numbered.next()
                && !item.trim_end().ends_with(';')
            {
                skip_until = Some(format!("{indent}}}"));
            }
            continue;
        }
        let code = line.split("//").next().unwrap_or_default();
        lines.push((n + 1, code));
    }
    lines
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first segment of each path that follows `crate::` in `code`: `crate::a::B` gives `a`,
/// `crate::{a::B, c}` gives `a` and `c`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut heads = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| is_ident(c) || c == ':') {
            continue; // `$crate::`, `foo_crate::`, or a path that merely contains it.
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Each item of the group, at depth 0.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        heads.extend(first_ident(&item));
                        item.clear();
                    }
                    c if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            heads.extend(first_ident(&item));
        } else {
            heads.extend(first_ident(rest));
        }
    }
    heads
}

fn first_ident(text: &str) -> Option<String> {
    let name: String = text
        .trim_start()
        .chars()
        .take_while(|&c| is_ident(c))
        .collect();
    (!name.is_empty()).then_some(name)
}

/// What the crate root re-exports, by name: `pub use a::{B, C as D}` maps `B` and `D` to `a`.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let code: String = code_lines(root)
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n");
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path
            .trim()
            .trim_start_matches("crate::")
            .trim_start_matches("self::");
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.replace(['{', '}', '\n'], " ");
        for item in items.split(',') {
            let name = match item.split_once(" as ") {
                Some((_, alias)) => alias,
                None => item.rsplit("::").next().unwrap_or(item),
            };
            if let Some(name) = first_ident(name) {
                names.insert(name, module.to_owned());
            }
        }
    }
    names
}

/// The module a file under `src/` belongs to, or `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first.to_owned()),
    }
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Each module's dependencies on the crate's other modules, with where each is first named.
fn crate_edges(src: &Path, sources: &BTreeMap<std::path::PathBuf, String>) -> Edges {
    let root = ["lib.rs", "main.rs"]
        .iter()
        .filter_map(|name| sources.get(&src.join(name)))
        .map(|text| reexports(text))
        .fold(BTreeMap::new(), |mut all, names| {
            all.extend(names);
            all
        });
    let modules: BTreeSet<String> = sources.keys().filter_map(|f| module_of(src, f)).collect();
    let mut edges = Edges::new();
    for (file, text) in sources {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        for (line, code) in code_lines(text) {
            for head in crate_paths(code) {
                let to = if modules.contains(&head) {
                    Some(head)
                } else {
                    root.get(&head).cloned()
                };
                if let Some(to) = to.filter(|to| *to != from) {
                    let place = format!("{}:{line}: {}", file.display(), code.trim());
                    edges.entry((from.clone(), to)).or_insert(place);
                }
            }
        }
    }
    edges
}

/// One circle per group of modules that reach each other: the shortest, as the modules around it
/// in order (the first one again at the end), and the whole group.
fn circles(edges: &Edges) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let reach = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(at) = stack.pop() {
            for &to in next.get(at).into_iter().flatten() {
                if seen.insert(to) {
                    stack.push(to);
                }
            }
        }
        seen
    };
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for &start in next.keys() {
        if done.contains(start) || !reach(start).contains(start) {
            continue;
        }
        // The shortest way back to `start`, breadth first.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut frontier = vec![start];
        'search: while !frontier.is_empty() {
            let mut following = Vec::new();
            for at in frontier {
                for &to in next.get(at).into_iter().flatten() {
                    if to == start {
                        came_from.insert("", at);
                        break 'search;
                    }
                    if !came_from.contains_key(to) {
                        came_from.insert(to, at);
                        following.push(to);
                    }
                }
            }
            frontier = following;
        }
        let mut path = vec![start.to_owned()];
        let mut at = came_from[""];
        while at != start {
            path.push(at.to_owned());
            at = came_from[at];
        }
        path.push(start.to_owned());
        path.reverse();
        let group: BTreeSet<&str> = reach(start)
            .into_iter()
            .filter(|m| reach(m).contains(start))
            .collect();
        done.extend(&group);
        found.push((path, group.into_iter().map(str::to_owned).collect()));
    }
    found
}

fn report(name: &str, edges: &Edges, (circle, group): &(Vec<String>, BTreeSet<String>)) -> String {
    let steps: Vec<String> = circle
        .windows(2)
        .map(|pair| format!("  {}", edges[&(pair[0].clone(), pair[1].clone())]))
        .collect();
    let group: Vec<&str> = group.iter().map(String::as_str).collect();
    format!(
        "{name}: {} (of the circles among {})\n{}",
        circle.join(" -> "),
        group.join(", "),
        steps.join("\n")
    )
}

#[test]
fn no_crate_has_an_import_circle() {
    let root = workspace_root();
    let mut crates = vec![Path::new("tests/harness").to_path_buf()];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = Path::new("crates")
            .join(entry.unwrap().file_name())
            .join("src");
        if root.join(&src).is_dir() {
            crates.push(src);
        }
    }
    crates.sort();
    let mut found = Vec::new();
    let mut modules = 0;
    for src in &crates {
        let mut files = Vec::new();
        rust_files(&root.join(src), &mut files);
        let sources: BTreeMap<_, _> = files
            .into_iter()
            .map(|file| {
                let text = std::fs::read_to_string(&file).unwrap();
                (file.strip_prefix(&root).unwrap().to_path_buf(), text)
            })
            .collect();
        modules += sources.len();
        let edges = crate_edges(src, &sources);
        let name = src.display().to_string();
        for circle in circles(&edges) {
            found.push(report(&name, &edges, &circle));
        }
    }
    assert!(
        modules > 50,
        "only {modules} files read: is the workspace where it was?"
    );
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// The check sees a circle through a nested group, through a root re-export and from a test's
/// `use`-free code, and does not see one made by a test, a comment or a one-way use.
#[test]
fn the_check_finds_a_circle_and_only_a_circle() {
    let src = Path::new("src");
    let crate_of = |files: &[(&str, &str)]| {
        let sources: BTreeMap<_, _> = files
            .iter()
            .map(|(name, text)| (src.join(name), (*text).to_owned()))
            .collect();
        circles(&crate_edges(src, &sources))
            .into_iter()
            .map(|(circle, _)| circle)
            .collect::<Vec<_>>()
    };
    let root = (
        "lib.rs",
        "mod a;\nmod b;\nmod c;\npub use c::{Gamma, inner::{Delta as D}};\n",
    );
    assert_eq!(
        crate_of(&[
            root,
            ("a.rs", "use crate::{key, b::{self, Beta}};\n"),
            ("b.rs", "fn f() -> crate::D { todo!() }\n"),
            ("c/mod.rs", "mod inner;\n"),
            ("c/inner.rs", "pub struct Delta(crate::a::Alpha);\n"),
        ]),
        [["a", "b", "c", "a"]]
    );
    assert_eq!(
        crate_of(&[
            root,
            ("a.rs", "use crate::b::Beta;\nuse crate::Gamma;\n"),
            ("b.rs", "// see crate::a::Alpha\nuse crate::c;\n"),
            (
                "c.rs",
                "pub struct Gamma;\n#[cfg(test)]\nmod tests {\n    use crate::a::Alpha;\n}\n\
                 #[cfg(test)]\nuse crate::b::Beta;\n",
            ),
        ]),
        Vec::<Vec<String>>::new()
    );
}
