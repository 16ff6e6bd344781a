#!/usr/bin/env bash
# Hunts the stall seen once in bench-results/2026-12-02-generator (round 5: all 32
# connections of weir-loadtest kept a request in flight until the end-of-run grace).
# Alternates wrk and weir-loadtest rounds against one mock, as bench-generator.sh does,
# and snapshots `ss -tni` of the mock's port near the end of each weir-loadtest round:
# when a round reports dropped requests, its snapshot's Recv-Q says which side held the
# unread bytes (the mock's sockets: the mock; the generator's: the generator).
#
#   N=40 scripts/stall-hunt.sh          # writes $OUT (default /tmp/stall-hunt)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
N="${N:-20}"
OUT="${OUT:-/tmp/stall-hunt}"
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x ./target/release/weir-loadtest ] || cargo build --release --bins -q
taskset -c 1 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$OUT/mock.log" 2>&1 &
MOCK=$!
trap 'kill $MOCK 2>/dev/null || true' EXIT
ADDR="$(listen_addr "$OUT/mock.log")"
PORT="${ADDR#*:}"
URL="http://$ADDR/v1/chat/completions"
for i in $(seq 1 "$N"); do
  taskset -c 0 wrk -t1 -c32 -d3s -s scripts/wrk/chat.lua "$URL" >/dev/null
  taskset -c 0 ./target/release/weir-loadtest run --url "$URL" --mode closed --connections 32 \
    --shards 1 --duration 4s --workload chat --max-tokens 32 --prompt hello \
    --json "$OUT/run-$i.json" >/dev/null 2>&1 &
  gen=$!
  sleep 3.6
  ss -tni "( sport = :$PORT or dport = :$PORT )" >"$OUT/ss-$i.txt"
  # The mock's threads (state, kernel wait channel) and its io_uring rings (heads,
  # tails, overflow), to tell a lost wake-up from a busy or blocked shard.
  for t in /proc/$MOCK/task/*; do
    echo "$(cat "$t/comm") $(awk '{print $3}' "$t/stat") $(cat "$t/wchan" 2>/dev/null)"
  done >"$OUT/threads-$i.txt"
  for fd in /proc/$MOCK/fd/*; do
    if [ "$(readlink "$fd")" = "anon_inode:[io_uring]" ]; then
      echo "== fd ${fd##*/}"; cat "/proc/$MOCK/fdinfo/${fd##*/}"
    fi
  done >"$OUT/uring-$i.txt" 2>/dev/null || true
  wait "$gen" || true
  python3 -c "import json,sys;j=json.load(open(sys.argv[1]));print(sys.argv[2], round(j['rps']['achieved']), 'dropped', j['counts']['errors_by_kind']['dropped'])" "$OUT/run-$i.json" "$i"
done
