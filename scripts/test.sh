#!/usr/bin/env bash
# The test command of the README: format check, lints, then every test of the workspace
# (unit tests beside the code, end-to-end tests in tests/ against the simulator, in embedded
# mode and against the AWS emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubsync-target}"
cargo fmt --all -- --check
# Every manifest lists only what its code uses (cargo-machete reads the sources, no build).
# Installed once into a cache beside the build's, from crates.io.
tools="$HOME/.cache/hubsync-tools"
if ! "$tools/bin/cargo-machete" --version 2>/dev/null | grep -qx '0.9.2'; then
  cargo install cargo-machete --version 0.9.2 --locked --root "$tools"
fi
"$tools/bin/cargo-machete"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The crash and AWS tests run the real binaries (hubsync, producer, consumer, merger). Built
# with every target, so their dependencies resolve to the same features as the test build below
# (building `--bins` alone would compile a second copy of the dependency graph).
cargo build --workspace --all-targets --locked
# The AWS tests install the moto emulator themselves (pip, into ~/.cache/hubsync-moto) when
# it is missing, and start one on a free port per test.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked -- --test-threads 2 2>&1 | tee "$log"
# One closing line over every test binary (cargo's last line is a doc-test run of 0 tests).
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
# The image: built by scripts/image.sh from the debug binaries above (no daemon, no registry)
# and run with podman: every binary's --help, the user, the workdir, the CA bundle. Needs root
# (debootstrap, chroot, container storage); it installs buildah, debootstrap and podman itself.
image_rc=0
PROFILE=debug bash scripts/image-test.sh || image_rc=$?
case "$image_rc" in
  0) echo "image: passed" ;;
  77) echo "image: skipped (not root)" ;;
  *) echo "image: FAILED"; exit "$image_rc" ;;
esac
