//! The `hubsync` binary, for tests that must kill a real process.

use std::path::PathBuf;
use std::process::Command;

/// Path of the `hubsync` binary next to the test executable, built first if missing.
pub fn hubsync_binary() -> anyhow::Result<PathBuf> {
    binary("hubsync", "hubsync-infra")
}

/// Path of a workspace binary next to the test executable (or, for a binary such as the
/// benchmark, next to the executable itself), built first if missing.
pub fn binary(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let here = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cannot locate the target directory from {}", exe.display()))?;
    if here.join(name).is_file() && here.file_name().is_some_and(|d| d != "deps") {
        return Ok(here.join(name));
    }
    // target/<profile>/deps/e2e-<hash> → target/<profile>/hubsync
    let profile_dir = here
        .parent()
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

/// Runs `cmd` to its end, killing it (SIGKILL) and failing if it takes longer than `limit`:
/// a stuck run must fail its test, not hang the suite.
pub fn status_within(
    cmd: &mut Command,
    limit: std::time::Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = cmd.spawn()?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            anyhow::bail!("{cmd:?} did not finish within {limit:?}; killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}
