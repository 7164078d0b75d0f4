#!/usr/bin/env bash
# The benchmarks of the README: every figure printed (never asserted), then the machine.
# Builds the release binaries first; installs Polars and DuckDB (into ~/.cache/hubsync-bench-venv)
# and the moto emulator (into ~/.cache/hubsync-moto) on first use. Extra arguments choose one
# benchmark and its flags instead of all of them: `bash scripts/bench.sh fetch --consumers 4`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubsync-target}"
if [ "$#" -eq 0 ]; then set -- all; fi
cargo build --release --workspace --bins --locked
exec "$CARGO_TARGET_DIR/release/bench" "$@"
