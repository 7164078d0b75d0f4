#!/usr/bin/env bash
# The test command of the README: format check, lints, then every test of the workspace
# (unit tests beside the code, end-to-end tests in tests/ against the simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubsync-target}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked -- --test-threads 2
