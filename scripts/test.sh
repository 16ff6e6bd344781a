#!/usr/bin/env bash
# The test command: formatting, lints, then every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Some integration tests run the other crate's binary (weir with the mock server).
cargo build --workspace --bins
cargo test --workspace
for s in scripts/*.sh; do bash -n "$s"; done
echo "all tests passed"
