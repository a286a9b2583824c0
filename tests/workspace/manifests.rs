//! Every crate of the workspace takes its dependencies from `[workspace.dependencies]` in the root
//! `Cargo.toml`, so each dependency's version and default features are written once; and no crate
//! lists a dependency twice, except as a dev-dependency that adds features for its tests (cargo has
//! no other way to turn a feature on only in tests: `transcoder-core`'s `contract`, the SDKs'
//! `test-util`).
//!
//! The manifests are read line by line (the workspace has no TOML parser in its lock file): a
//! dependency is a `name… = …` line under a dependency table, which is all these manifests use.
//! `fuzz/` is its own workspace, on nightly with its own lock file, and is not a member.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use system_tests::dynamodb_local::workspace_root;

/// One dependency line of a member's manifest.
#[derive(Debug)]
struct Dependency {
    /// `dependencies`, `dev-dependencies`, `build-dependencies`, or a `target.….` one.
    table: String,
    name: String,
    /// Everything after the `=`.
    value: String,
    line: usize,
}

/// The `[section]` of each line, the line's number and its text, without comments.
fn sections(text: &str) -> Vec<(String, usize, String)> {
    let mut section = String::new();
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim_matches(['[', ']']).trim().to_owned();
            continue;
        }
        lines.push((section.clone(), n + 1, line.to_owned()));
    }
    lines
}

fn is_dependency_table(section: &str) -> bool {
    let last = section.rsplit('.').next().unwrap_or_default();
    ["dependencies", "dev-dependencies", "build-dependencies"].contains(&last)
}

fn dependencies(manifest: &Path) -> Vec<Dependency> {
    let text =
        std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut found = Vec::new();
    for (section, line, text) in sections(&text) {
        // `[dependencies.foo]`: a dependency written as its own table.
        if let Some((table, name)) = section.rsplit_once('.')
            && is_dependency_table(table)
        {
            panic!(
                "{}:{line}: [{section}]: write `{name}.workspace = true` (or `{name} = {{ \
                 workspace = true, features = [...] }}`) under [{table}] instead",
                manifest.display()
            );
        }
        if !is_dependency_table(&section) {
            continue;
        }
        let (key, value) = text
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{line}: not `key = value`", manifest.display()));
        let key = key.trim();
        let name = key.strip_suffix(".workspace").unwrap_or(key).trim();
        let value = if key.ends_with(".workspace") {
            format!("{{ workspace = {} }}", value.trim())
        } else {
            value.trim().to_owned()
        };
        found.push(Dependency {
            table: section.clone(),
            name: name.to_owned(),
            value,
            line,
        });
    }
    found
}

/// Whether an inline table such as `{ workspace = true, features = ["x"] }` takes the dependency
/// from the workspace.
fn from_workspace(value: &str) -> bool {
    let Some(inner) = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .map(str::trim)
    else {
        return false;
    };
    inner
        .split(',')
        .map(|part| part.split('=').map(str::trim).collect::<Vec<_>>())
        .any(|kv| kv == ["workspace", "true"])
}

/// The keys a `{ … }` entry sets besides `workspace` (for a dev-dependency that repeats a normal
/// one, `features` is the only reason to).
fn other_keys(value: &str) -> BTreeSet<String> {
    let inner = value.trim_matches(['{', '}', ' ']);
    // Split on the commas between keys, not those inside a `[…]` list.
    let mut keys = BTreeSet::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                let part = &inner[start..i];
                if let Some((key, _)) = part.split_once('=') {
                    keys.insert(key.trim().to_owned());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    keys.remove("workspace");
    keys
}

/// The root's `[workspace.dependencies]` names and its members' manifests.
fn workspace() -> (BTreeSet<String>, Vec<PathBuf>) {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut names = BTreeSet::new();
    let mut members = Vec::new();
    for (section, _, line) in sections(&text) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match (section.as_str(), key.trim()) {
            ("workspace.dependencies", name) => {
                names.insert(name.to_owned());
            }
            ("workspace", "members") => {
                for member in value.trim_matches(['[', ']', ' ']).split(',') {
                    let member = member.trim().trim_matches('"');
                    match member.strip_suffix("/*") {
                        Some(dir) => {
                            for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                                let manifest = entry.path().join("Cargo.toml");
                                if manifest.is_file() {
                                    members.push(manifest);
                                }
                            }
                        }
                        None => members.push(root.join(member).join("Cargo.toml")),
                    }
                }
            }
            _ => {}
        }
    }
    members.sort();
    (names, members)
}

#[test]
fn every_member_takes_every_dependency_from_the_workspace_once() {
    let (workspace_names, members) = workspace();
    assert!(
        members.len() >= 10 && members.iter().any(|m| m.ends_with("tests/Cargo.toml")),
        "{members:?}"
    );
    let mut problems = Vec::new();
    for manifest in &members {
        let where_ = |d: &Dependency| format!("{}:{} [{}]", manifest.display(), d.line, d.table);
        let deps = dependencies(manifest);
        for d in &deps {
            if !from_workspace(&d.value) {
                problems.push(format!(
                    "{}: `{} = {}`: add it to [workspace.dependencies] in the root Cargo.toml and \
                     write `{}.workspace = true` here (features may be added locally)",
                    where_(d),
                    d.name,
                    d.value,
                    d.name
                ));
            } else if !workspace_names.contains(&d.name) {
                problems.push(format!(
                    "{}: {} is not in [workspace.dependencies]",
                    where_(d),
                    d.name
                ));
            }
        }
        // Listed twice: in one table (TOML would refuse the file, but a `[target…]` table may
        // repeat one), or as a dev-dependency that adds nothing to the normal one.
        let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for d in &deps {
            *seen.entry((d.table.as_str(), d.name.as_str())).or_default() += 1;
        }
        for ((table, name), count) in seen {
            if count > 1 {
                problems.push(format!(
                    "{}: {name} is listed {count} times in [{table}]",
                    manifest.display()
                ));
            }
        }
        for dev in deps
            .iter()
            .filter(|d| d.table.ends_with("dev-dependencies"))
        {
            let normal_table = dev.table.replace("dev-dependencies", "dependencies");
            let also_normal = deps
                .iter()
                .any(|d| d.name == dev.name && d.table == normal_table);
            if also_normal && other_keys(&dev.value) != BTreeSet::from(["features".to_owned()]) {
                problems.push(format!(
                    "{}: {} is also a normal dependency: a dev-dependency may repeat it only to \
                     add features for the tests; remove this line",
                    where_(dev),
                    dev.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_they_should() {
    assert!(from_workspace("{ workspace = true }"));
    assert!(from_workspace(
        r#"{ workspace = true, features = ["contract"] }"#
    ));
    assert!(!from_workspace(r#""0.3""#));
    assert!(!from_workspace(
        r#"{ version = "0.3", default-features = false, features = ["fmt"] }"#
    ));
    assert!(!from_workspace(r#"{ path = "../../tests" }"#));
    assert_eq!(
        other_keys(r#"{ workspace = true, features = ["a", "b"] }"#),
        BTreeSet::from(["features".to_owned()])
    );
    assert_eq!(other_keys("{ workspace = true }"), BTreeSet::new());
    assert_eq!(
        other_keys("{ workspace = true, optional = true }"),
        BTreeSet::from(["optional".to_owned()])
    );

    let dir = std::env::temp_dir().join(format!("manifest-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("Cargo.toml");
    std::fs::write(
        &manifest,
        "[package]\nname = \"x\"\n\n[dependencies]\nserde.workspace = true # why\n\
         tracing-subscriber = { version = \"0.3\" }\n\n[dev-dependencies]\n\
         serde.workspace = true\n\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n",
    )
    .unwrap();
    let deps = dependencies(&manifest);
    std::fs::remove_dir_all(&dir).unwrap();
    let summary: Vec<_> = deps
        .iter()
        .map(|d| (d.table.as_str(), d.name.as_str(), from_workspace(&d.value)))
        .collect();
    assert_eq!(
        summary,
        [
            ("dependencies", "serde", true),
            ("dependencies", "tracing-subscriber", false),
            ("dev-dependencies", "serde", true),
            ("target.'cfg(unix)'.dependencies", "libc", false),
        ]
    );
}
