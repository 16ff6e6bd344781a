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
for p in scripts/*.py; do python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" "$p"; done
echo "all tests passed"
