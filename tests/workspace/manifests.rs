//! Every crate of the workspace takes its dependencies from `[workspace.dependencies]` in the root
//! `Cargo.toml`, so each dependency's version and default features are written once; and no crate
//! lists a dependency twice, except as a dev-dependency that adds features for its tests (cargo has
//! no other way to turn a feature on only in tests: `transcoder-testkit`'s `aws`, the SDKs'
//! `test-util`).
//!
//! The manifests are read by cargo itself, through `cargo metadata --no-deps` (format 1), which
//! lists each member's dependencies as cargo understood them, with what a member inherits from the
//! workspace already filled in. It cannot say whether an entry was inherited, so what is checked
//! is what inheriting guarantees: every member that names a crate asks for the same version (or
//! path) with the same default features; only the features may differ. `fuzz/` is its own
//! workspace, on nightly with its own lock file, and is not a member.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use system_tests::workspace_root;

/// What this check reads of `cargo metadata --format-version 1`.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

/// One entry of a member's dependency tables.
#[derive(Debug, Clone, Deserialize)]
struct Dependency {
    name: String,
    /// The registry (`registry+…`), or none for a path dependency.
    source: Option<String>,
    /// The version requirement; `*` for a path dependency without a version.
    req: String,
    /// `null` for `[dependencies]`, else `dev` or `build`.
    kind: Option<String>,
    /// The `cfg(…)` or triple of a `[target.….dependencies]` table.
    target: Option<String>,
    rename: Option<String>,
    uses_default_features: bool,
    features: Vec<String>,
    path: Option<PathBuf>,
}

impl Dependency {
    /// The table it is listed in, as the manifest names it.
    fn table(&self) -> String {
        let table = match self.kind.as_deref() {
            None => "dependencies".to_owned(),
            Some(kind) => format!("{kind}-dependencies"),
        };
        match &self.target {
            Some(target) => format!("target.'{target}'.{table}"),
            None => table,
        }
    }

    /// Where the crate comes from and which of it: what inheriting from the workspace makes the
    /// same for every member that names it.
    fn spec(&self) -> String {
        let from = match (&self.path, &self.source) {
            (Some(path), _) => format!("path {}", path.display()),
            (None, Some(source)) => source.clone(),
            (None, None) => "nowhere".to_owned(),
        };
        format!(
            "{} {from}, default-features = {}",
            self.req, self.uses_default_features
        )
    }
}

/// `cargo metadata --no-deps` of the workspace whose root manifest is `manifest`: its members, each
/// with its manifest's dependency entries (no registry is read).
fn members(manifest: &Path) -> Vec<Package> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    assert!(
        output.status.success(),
        "cargo metadata --manifest-path {}: {}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("cargo metadata's output: {e}"));
    let mut members: Vec<_> = metadata
        .packages
        .into_iter()
        .filter(|p| metadata.workspace_members.contains(&p.id))
        .collect();
    members.sort_by(|a, b| a.manifest_path.cmp(&b.manifest_path));
    members
}

/// Each crate that members ask for in more than one way (version, source, default features),
/// with who asks for it how: a version written outside `[workspace.dependencies]`.
fn disagreements(members: &[Package]) -> Vec<String> {
    let mut asked: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for member in members {
        for d in &member.dependencies {
            asked
                .entry(&d.name)
                .or_default()
                .entry(d.spec())
                .or_default()
                .insert(format!(
                    "{} [{}]",
                    member.manifest_path.display(),
                    d.table()
                ));
        }
    }
    asked
        .into_iter()
        .filter(|(_, specs)| specs.len() > 1)
        .map(|(name, specs)| {
            let ways: Vec<_> = specs
                .iter()
                .map(|(spec, by)| {
                    let by: Vec<_> = by.iter().map(String::as_str).collect();
                    format!("  `{spec}` in {}", by.join(", "))
                })
                .collect();
            format!(
                "{name} is asked for in {} ways: write it once in [workspace.dependencies] in the \
                 root Cargo.toml and `{name}.workspace = true` in each member (features may be \
                 added locally)\n{}",
                specs.len(),
                ways.join("\n")
            )
        })
        .collect()
}

/// A member's dependencies listed twice: in one table (TOML would refuse the file, but a
/// `[target…]` table may repeat one), or as a dev-dependency that adds no feature to the normal one.
fn repeats(member: &Package) -> Vec<String> {
    let manifest = member.manifest_path.display();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for d in &member.dependencies {
        *seen.entry((d.table(), d.name.as_str())).or_default() += 1;
    }
    for ((table, name), count) in seen {
        if count > 1 {
            problems.push(format!(
                "{manifest}: {name} is listed {count} times in [{table}]"
            ));
        }
    }
    for dev in member
        .dependencies
        .iter()
        .filter(|d| d.kind.as_deref() == Some("dev"))
    {
        let normal = member.dependencies.iter().find(|d| {
            d.kind.is_none()
                && d.name == dev.name
                && d.target == dev.target
                && d.rename == dev.rename
        });
        if let Some(normal) = normal
            && dev.features.iter().all(|f| normal.features.contains(f))
        {
            problems.push(format!(
                "{manifest} [{}]: {} is also a normal dependency: a dev-dependency may repeat it \
                 only to add features for the tests; remove it",
                dev.table(),
                dev.name
            ));
        }
    }
    problems
}

#[test]
fn every_member_takes_every_dependency_from_the_workspace_once() {
    let members = members(&workspace_root().join("Cargo.toml"));
    assert!(
        members.len() >= 10
            && members
                .iter()
                .any(|m| m.manifest_path.ends_with("tests/Cargo.toml")),
        "{members:?}"
    );
    let mut problems = disagreements(&members);
    problems.extend(members.iter().flat_map(repeats));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// A scratch workspace whose members break each rule once, read by cargo as the real one is.
#[test]
fn the_checks_catch_what_they_should() {
    let dir = system_tests::local::scratch();
    let manifest = |member: &str, text: &str| {
        let path = dir.join(member);
        std::fs::create_dir_all(path.join("src")).unwrap();
        std::fs::write(path.join("src/lib.rs"), "").unwrap();
        std::fs::write(
            path.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{member}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n{text}"
            ),
        )
        .unwrap();
    };
    std::fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"a\", \"b\"]\n\n[workspace.dependencies]\n\
         serde = { version = \"1.0\", default-features = false }\n\
         a = { path = \"a\" }\n",
    )
    .unwrap();
    // `a` inherits everything; its dev-dependency adds a feature, so it may repeat serde.
    manifest(
        "a",
        "[dependencies]\nserde.workspace = true\n\n[dev-dependencies]\n\
         serde = { workspace = true, features = [\"derive\"] }\n",
    );
    // `b` writes serde's version itself, with default features, and repeats `a` for nothing.
    manifest(
        "b",
        "[dependencies]\nserde = \"1.0\"\na.workspace = true\n\n[dev-dependencies]\n\
         a.workspace = true\n\n[target.'cfg(unix)'.dependencies]\nserde = \"1.0\"\n",
    );
    let members = members(&dir.join("Cargo.toml"));
    assert_eq!(members.len(), 2, "{members:?}");

    let disagreements = disagreements(&members);
    assert_eq!(disagreements.len(), 1, "{disagreements:?}");
    let serde = &disagreements[0];
    assert!(serde.starts_with("serde is asked for in 2 ways"), "{serde}");
    assert!(
        serde.contains("default-features = false") && serde.contains("default-features = true"),
        "{serde}"
    );
    assert!(
        repeats(&members[0]).is_empty(),
        "{:?}",
        repeats(&members[0])
    );
    let repeated = repeats(&members[1]);
    assert_eq!(repeated.len(), 1, "{repeated:?}");
    assert!(
        repeated[0].contains("[dev-dependencies]: a is also a normal dependency"),
        "{repeated:?}"
    );
}
