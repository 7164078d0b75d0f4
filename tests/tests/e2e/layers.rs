//! The layout's rules, checked on the dependency graph and the sources: the domain links no
//! AWS, HTTP, DataFusion or SQLite; the simulator no AWS SDK and no domain; the roles'
//! libraries name no adapter (only their binaries and `infra` wire adapters in).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The crates `package` links in a normal (non-dev) build, by name.
fn linked(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
            package,
        ])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn assert_links_none(package: &str, forbidden: &[&str]) {
    let found: Vec<String> = linked(package)
        .into_iter()
        .filter(|c| {
            forbidden
                .iter()
                .any(|f| c == f || c.starts_with(&format!("{f}-")))
        })
        .collect();
    assert!(found.is_empty(), "{package} must not link {found:?}");
}

#[test]
fn the_domain_links_no_aws_no_http_no_datafusion_no_sqlite() {
    assert_links_none(
        "hubsync-common",
        &[
            "aws-sdk",
            "aws-config",
            "reqwest",
            "hyper",
            "datafusion",
            "rusqlite",
            "hubsync-hubspot",
        ],
    );
}

#[test]
fn the_simulator_links_no_aws_sdk_and_no_domain() {
    assert_links_none(
        "hubsync-sim",
        &[
            "aws-sdk",
            "aws-config",
            "aws-smithy-runtime",
            "datafusion",
            "rusqlite",
            "hubsync-common",
        ],
    );
    assert!(linked("hubsync-sim").contains(&"hubsync-wire".to_string()));
}

#[test]
fn the_wire_types_link_only_serde_and_chrono() {
    assert_links_none(
        "hubsync-wire",
        &["tokio", "reqwest", "hyper", "aws-sdk", "hubsync-common"],
    );
}

#[test]
fn the_roles_libraries_name_no_adapter() {
    for role in ["producer", "consumer", "merger"] {
        let dir = workspace().join(role).join("src");
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.file_name().is_some_and(|n| n == "main.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for adapter in ["aws::", "embedded::", "service::"] {
                    let named = text
                        .lines()
                        .any(|l| !l.trim_start().starts_with("//") && l.contains(adapter));
                    assert!(!named, "{} names the adapter package `{adapter}`", path.display());
                }
            }
        }
    }
}
