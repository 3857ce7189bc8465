//! The gateway is an edge: it depends on libraries only, never on a service crate, so that
//! a service's write side (its rules, its secrets) cannot leak into the process that faces
//! the internet, and adding a service never means rebuilding the gateway around it.

use std::collections::BTreeMap;
use std::path::Path;

/// `gatehouse-*` dependency name → its path in the workspace, from the root manifest.
fn workspace_paths(root: &Path) -> BTreeMap<String, String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    manifest
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once('=')?;
            let name = name.trim();
            let path = rest.split("path = \"").nth(1)?.split('"').next()?;
            name.starts_with("gatehouse-")
                .then(|| (name.to_owned(), path.to_owned()))
        })
        .collect()
}

#[test]
fn the_gateway_depends_on_libraries_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = workspace_paths(&dir.join("../.."));
    assert!(
        paths.contains_key("gatehouse-identity"),
        "the root manifest lists the service crates: {paths:?}"
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let ours: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.split(['.', '=']).next())
        .map(str::trim)
        .filter(|name| name.starts_with("gatehouse-"))
        .collect();
    assert!(ours.contains(&"gatehouse-readmodels"), "{ours:?}");
    for name in ours {
        let path = paths.get(name).map(String::as_str).unwrap_or_default();
        assert!(
            path.starts_with("libs/"),
            "the gateway depends on {name} ({path}), which is not a library under libs/"
        );
    }
}
