#!/usr/bin/env bash
# Interleaved criterion runs of the inspect bench, before (364e6e2) and after the
# literal prefilter, both binaries pinned to CPU 1. Build each binary first:
#   git worktree add /tmp/wt-old 364e6e2 && (cd /tmp/wt-old && cargo bench --no-run -p weir-dataplane --bench inspect)
#   cp <its target>/release/deps/inspect-HASH /tmp/inspect-old; same at the new commit -> /tmp/inspect-new
set -euo pipefail
cd "$(dirname "$0")"
F='inspect_(1KB|4KB|1MB)/(one_pass|pass_only|pii_redact|guard|whole_one_pass)$'
for r in 1 2 3; do
  for v in old new; do
    taskset -c 1 /tmp/inspect-$v --bench "$F" > raw/$v-$r.txt 2>&1
  done
done
