#!/usr/bin/env bash
# Runs the libFuzzer targets of dataplane/fuzz (cargo-fuzz) for a while each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 60 s, every target
#
# Each target starts from its committed seeds (dataplane/fuzz/seeds/<target>) and
# its local corpus (dataplane/fuzz/corpus/<target>, git-ignored, grows across runs).
# Crashes land in dataplane/fuzz/artifacts/<target>/; the script exits non-zero if
# any target crashed or failed to build. Reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>     (in dataplane/fuzz)
# and minimize it with `cargo fuzz tmin <target> <artifact>`.
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it take the -Z flags
# cargo-fuzz passes (sanitizer coverage, AddressSanitizer). Environment:
#   FUZZ_SANITIZER   address (default) or none (faster, catches panics only)
#   FUZZ_JOBS        parallel fuzzing processes per target (default 1)
#   FUZZ_NICE        prefix for cargo (default: nice -n 19; empty to disable)
#   CARGO_TARGET_DIR default dataplane/fuzz/target
set -euo pipefail
cd "$(dirname "$0")/../dataplane/fuzz"

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request_scan sse_scan pii_redact)
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
sanitizer=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-1}
read -r -a nice_cmd <<<"${FUZZ_NICE-nice -n 19}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  "${nice_cmd[@]}" cargo install cargo-fuzz --locked
fi

par=()
if [ "$jobs" -gt 1 ]; then
  # libFuzzer's parallel mode: output goes to fuzz-<n>.log files.
  par=(-jobs="$jobs" -workers="$jobs")
fi

failed=()
for t in "${targets[@]}"; do
  echo "=== $t: ${secs}s (sanitizer: $sanitizer)"
  mkdir -p "corpus/$t" "artifacts/$t"
  # Release build with debug assertions and overflow checks (cargo-fuzz's default).
  if ! "${nice_cmd[@]}" cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 "${par[@]}"; then
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]} (see dataplane/fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing passed: ${targets[*]}"
