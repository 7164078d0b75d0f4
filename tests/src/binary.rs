//! The `hubsync` binary, for tests that must kill a real process.

use std::path::PathBuf;
use std::process::Command;

/// Path of the `hubsync` binary next to the test executable, built first if missing.
pub fn hubsync_binary() -> anyhow::Result<PathBuf> {
    binary("hubsync", "hubsync-infra")
}

/// Path of a workspace binary next to the test executable, built first if missing.
pub fn binary(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash> → target/<profile>/hubsync
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or_else(|| anyhow::anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let bin = profile_dir.join(name);
    if !bin.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", package, "--bin", name])
            .status()?;
        anyhow::ensure!(status.success(), "building the {name} binary failed");
    }
    anyhow::ensure!(bin.exists(), "{} not found after building", bin.display());
    Ok(bin)
}
