#!/usr/bin/env bash
# Where a proxy's CPU goes under the benchmark's load: perf record (cpu-clock, call
# graphs) of one target pinned as in scripts/bench-proxy.sh (proxy on CPU 1, wrk and the
# mock on CPU 0), then a flat report by symbol and one by DSO (kernel against user space).
#
#   scripts/profile-proxy.sh weir-full            # or weir, nginx; chat or chat-stream:
#   SCENARIO=chat-stream DURATION=6 scripts/profile-proxy.sh weir
#   OUT=/tmp/prof scripts/profile-proxy.sh weir   # keeps perf.data and the reports there
#   CALLGRAPH="--call-graph dwarf,16384" DURATION=2 scripts/profile-proxy.sh weir-full
#                          # callers through libc (memcpy, clock_gettime), which has no frame pointers
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
TARGET="${1:-weir}"
SCENARIO="${SCENARIO:-chat}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-32}"
OUT="${OUT:-/tmp/profile-$TARGET-$SCENARIO}"
CALLGRAPH="${CALLGRAPH:--g}"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --bins -q
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

taskset -c 0 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
MOCK="$(listen_addr "$WORK/mock.log")"
case "$TARGET" in
  nginx)
    PORT="$(free_port)"
    nginx_proxy_conf "$WORK/nginx" "$MOCK" "$PORT" on
    taskset -c 1 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
    PIDS+=($!); PID=$!
    ADDR="127.0.0.1:$PORT"
    sleep 0.5
    ;;
  weir)
    taskset -c 1 ./target/release/weir --upstream "http://$MOCK" --listen 127.0.0.1:0 --shards 1 >"$WORK/weir.log" 2>&1 &
    PIDS+=($!); PID=$!
    ADDR="$(listen_addr "$WORK/weir.log")"
    ;;
  weir-full)
    weir_full_config "$WORK/weir-full.yaml" "$MOCK" "$(bench_key_hash)"
    taskset -c 1 ./target/release/weir --config "$WORK/weir-full.yaml" --shards 1 \
      --access-log "$WORK/access.jsonl" --status-listen 127.0.0.1:0 >"$WORK/weir.log" 2>&1 &
    PIDS+=($!); PID=$!
    ADDR="$(listen_addr "$WORK/weir.log")"
    export WRK_AUTH="Bearer $BENCH_KEY"
    ;;
  *) echo "unknown target $TARGET (nginx, weir, weir-full)" >&2; exit 2 ;;
esac
URL="http://$ADDR/v1/chat/completions"
# Warm up (pools, caches), then record the proxy's whole process tree under load.
taskset -c 0 wrk -t1 -c"$CONNS" -d1s -s "scripts/wrk/$SCENARIO.lua" "$URL" >/dev/null
taskset -c 0 wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" -s "scripts/wrk/$SCENARIO.lua" "$URL" >"$OUT/wrk.txt" &
WRK=$!
sleep 1
PIDLIST="$PID$( (pgrep -P "$PID" || true) | sed 's/^/,/' | tr -d '\n')"   # nginx: master and worker
perf record -q -e cpu-clock $CALLGRAPH -F 4999 --pid "$PIDLIST" -o "$OUT/perf.data" -- sleep "$DURATION" 2>/dev/null
wait "$WRK"
perf report -i "$OUT/perf.data" --no-children --sort dso -q --stdio -g none >"$OUT/dso.txt" 2>/dev/null
perf report -i "$OUT/perf.data" --no-children --sort sym -q --stdio -g none >"$OUT/sym.txt" 2>/dev/null
echo "== $TARGET $SCENARIO: $(awk '/Requests\/sec/{print $2}' "$OUT/wrk.txt") rps"
head -8 "$OUT/dso.txt"
head -45 "$OUT/sym.txt"
echo "(perf.data and reports in $OUT)"
