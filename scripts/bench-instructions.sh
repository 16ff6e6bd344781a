#!/usr/bin/env bash
# Instructions per request of one or more weir binaries, counted by callgrind: a figure
# that this shared, noisy 2-core VM cannot blur (CPU-time ratios move 15-30% from run
# to run; instruction counts move under 2%). It counts the user-space instructions of
# the connection tasks (everything under weir::conn::serve: parsing, inspection,
# limits, logging, the proxying itself and the glommio I/O calls they make), not the
# kernel's work and not the executor's idle loop, so it complements, never replaces,
# the CPU time of scripts/bench-proxy.sh. valgrind's SHA-256 runs without the SHA
# extensions, so API-key checks count ~7k instructions more than on the hardware.
#
#   scripts/bench-instructions.sh [BIN...]      # default: ./target/release/weir
#   MODE=plain scripts/bench-instructions.sh    # ad-hoc proxy instead of weir-full
#   CG_DIR=DIR scripts/bench-instructions.sh    # keep each callgrind profile in DIR
#
# Prints one CSV line per binary: binary,mode,requests,instructions,per_request.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
MODE="${MODE:-full}"
DUR="${DUR:-3}"
[ $# -gt 0 ] || set -- ./target/release/weir
[ -x ./target/release/weir-loadtest ] || cargo build --release --bins -q

W="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT INT TERM

taskset -c 0 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$W/mock.log" 2>&1 &
PIDS+=($!)
MOCK="$(listen_addr "$W/mock.log")"
export WRK_AUTH="Bearer $BENCH_KEY"

echo "binary,mode,requests,instructions,per_request"
for bin in "$@"; do
  if [ "$MODE" = plain ]; then
    args=(--upstream "http://$MOCK" --listen 127.0.0.1:0)
  else
    weir_full_config "$W/full.yaml" "$MOCK" "$(bench_key_hash "$bin")"
    args=(--config "$W/full.yaml" --access-log "$W/access.jsonl" --status-listen 127.0.0.1:0)
  fi
  : >"$W/weir.log"
  taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" --collect-atstart=no \
    --toggle-collect='weir::conn::serve*' "$bin" "${args[@]}" --shards 1 >"$W/weir.log" 2>&1 &
  vg=$!
  PIDS+=("$vg")
  addr="$(listen_addr "$W/weir.log" 1200)"  # valgrind starts slowly
  # First-use costs (pool connections, buffers) are part of the count: under 1% here.
  taskset -c 0 wrk -t1 -c8 -d"${DUR}s" -s scripts/wrk/chat.lua "http://$addr/v1/chat/completions" >"$W/wrk.txt" 2>&1
  kill -INT "$vg"
  wait "$vg" 2>/dev/null || true
  n="$(awk '/requests in/{print $1}' "$W/wrk.txt")"
  ir="$(grep -o 'summary: [0-9]*' "$W/cg.out" | awk '{print $2}')"
  echo "$bin,$MODE,$n,$ir,$((ir / n))"
  if [ -n "${CG_DIR:-}" ]; then mkdir -p "$CG_DIR" && cp "$W/cg.out" "$CG_DIR/$(basename "$bin")-$MODE.$(date +%s).cg"; fi
done
