//! Architecture invariants, checked on every test run (the analogue of upstream's
//! import-restrictions): which Rudder crate may depend on which, and that every crate says
//! what it owns at the top of its lib.rs or main.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Allowed normal (non-dev) dependencies between Rudder crates, by directory name under
/// `crates/`. Dependencies flow one way: api and store at the bottom, apiserver on them, API
/// clients above, the binary on top. A crate missing here fails the test until it is placed.
const ALLOWED: &[(&str, &[&str])] = &[
    ("api", &[]),
    ("store", &[]),
    ("apiserver", &["api", "store", "tls"]),
    // Shared by the API clients that run as one elected instance among several.
    ("election", &[]),
    ("pod", &[]),
    ("controllers", &["api", "election", "pod"]),
    ("scheduler", &["api", "election", "pod"]),
    ("simulator", &["api", "pod"]),
    ("proxy", &["api"]),
    ("dns", &["api"]),
    ("ingress", &["tls"]),
    ("agent", &["api", "image", "pod", "runtime", "tls"]),
    // Images (registry, layers) and the host side of containers (runc, namespaces, CNI).
    ("image", &[]),
    ("runtime", &[]),
    // The TLS accept loop, unverified-server verifier and hop-by-hop headers that the HTTPS
    // servers, clients and proxies share.
    ("tls", &[]),
    // The middle test tier (the API server in-process): a dev-dependency only, see below.
    ("testkit", &["api", "store", "apiserver"]),
    ("rudder", &["*"]),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every workspace crate's directory name and its normal dependencies on other workspace crates.
fn workspace_graph() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let dir_of = |manifest: &str| {
        Path::new(manifest)
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let by_name: BTreeMap<&str, String> = packages
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                dir_of(p["manifest_path"].as_str().unwrap()),
            )
        })
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| by_name.get(d["name"].as_str().unwrap()).cloned())
                .collect();
            (dir_of(p["manifest_path"].as_str().unwrap()), deps)
        })
        .collect()
}

#[test]
fn dependencies_flow_one_way() {
    let graph = workspace_graph();
    assert!(
        graph.contains_key("store") && graph.contains_key("rudder"),
        "{graph:?}"
    );
    for (krate, deps) in &graph {
        let allowed = ALLOWED
            .iter()
            .find(|(name, _)| name == krate)
            .unwrap_or_else(|| {
                panic!(
                    "crate {krate} has no place in the layering table of {}",
                    file!()
                )
            })
            .1;
        for dep in deps {
            assert!(
                allowed.contains(&"*") || allowed.contains(&dep.as_str()),
                "crate {krate} must not depend on {dep}: components talk through the API"
            );
        }
    }
}

#[test]
fn testkit_is_only_ever_a_dev_dependency() {
    for (krate, deps) in workspace_graph() {
        assert!(
            !deps.iter().any(|d| d == "testkit"),
            "crate {krate} must take testkit as a [dev-dependencies] entry only"
        );
    }
}

#[test]
fn every_crate_root_opens_with_its_doc_comment() {
    let crates = workspace_root().join("crates");
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        for root in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(root);
            if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(
                    text.starts_with("//!"),
                    "{} must open with a //! comment saying what the crate owns",
                    path.display()
                );
            }
        }
    }
}
