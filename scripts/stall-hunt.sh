#!/usr/bin/env bash
# Hunts the stall seen once in bench-results/2026-12-02-generator (round 5: all 32
# connections of weir-loadtest kept a request in flight until the end-of-run grace).
# Alternates wrk and weir-loadtest rounds against one mock, as bench-generator.sh does,
# and snapshots `ss -tni` of the mock's port near the end of each weir-loadtest round:
# when a round reports dropped requests, its snapshot's Recv-Q says which side held the
# unread bytes (the mock's sockets: the mock; the generator's: the generator).
#
#   N=40 scripts/stall-hunt.sh          # writes $OUT (default /tmp/stall-hunt)
#   TRACE=1 N=40 scripts/stall-hunt.sh  # also keeps an ftrace flight recorder of the
#                                       # io_uring and scheduler events, frozen and saved
#                                       # when the mock's shard is found not running
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
N="${N:-20}"
OUT="${OUT:-/tmp/stall-hunt}"
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x ./target/release/weir-loadtest ] || cargo build --release --bins -q
T=/sys/kernel/tracing
trace_on() {
  # A fresh machine may not have tracefs mounted.
  [ -e $T/tracing_on ] || mount -t tracefs nodev $T
  echo 0 >$T/tracing_on
  echo >$T/trace
  echo "${TRACE_KB:-131072}" >$T/buffer_size_kb
  echo 1 >$T/events/io_uring/enable
  echo 1 >$T/tracing_on
}
# The shard's own events: its wake-ups, its switches and the syscalls it makes
# (TRACE_SYSCALLS; recvfrom and sendto too make each round several times slower).
TRACE_SYSCALLS="${TRACE_SYSCALLS:-io_uring_enter recvfrom sendto}"
shard_events() {
  echo sched/sched_wakeup sched/sched_switch
  for c in $TRACE_SYSCALLS; do echo syscalls/sys_enter_$c syscalls/sys_exit_$c; done
}
trace_off() {
  [ "${TRACE:-0}" = 1 ] || return 0
  echo 0 >$T/tracing_on
  for e in io_uring $(shard_events); do echo 0 >$T/events/$e/enable; done
}
[ "${TRACE:-0}" = 1 ] && trace_on
taskset -c 1 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$OUT/mock.log" 2>&1 &
MOCK=$!
trap 'kill $MOCK 2>/dev/null || true; trace_off' EXIT
ADDR="$(listen_addr "$OUT/mock.log")"
PORT="${ADDR#*:}"
SHARD=""
for t in /proc/$MOCK/task/*; do
  if [ -z "$SHARD" ] && [ "$(cat "$t/comm")" = mock-shard-0-1 ]; then SHARD="${t##*/}"; fi
done
if [ "${TRACE:-0}" = 1 ]; then
  grep io_uring_create $T/trace >"$OUT/rings.txt" || true
  # The shard's events filtered to its thread; io_uring events unfiltered
  # (a poll's wake-up runs in the sender's context).
  for e in $(shard_events); do
    case $e in
      sched/sched_wakeup) f="pid == $SHARD" ;;
      sched/sched_switch) f="prev_pid == $SHARD || next_pid == $SHARD" ;;
      *) f="common_pid == $SHARD" ;;
    esac
    echo "$f" >$T/events/$e/filter
    echo 1 >$T/events/$e/enable
  done
fi
URL="http://$ADDR/v1/chat/completions"
for i in $(seq 1 "$N"); do
  taskset -c 0 wrk -t1 -c32 -d3s -s scripts/wrk/chat.lua "$URL" >/dev/null
  taskset -c 0 ./target/release/weir-loadtest run --url "$URL" --mode closed --connections 32 \
    --shards 1 --duration 4s --workload chat --max-tokens 32 --prompt hello \
    --json "$OUT/run-$i.json" >/dev/null 2>&1 &
  gen=$!
  sleep 3.0
  if [ "${TRACE:-0}" = 1 ]; then
    # Not one run of the shard in 200 ms of a loaded round: freeze the recorder.
    a="$(awk '{print $3}' /proc/$MOCK/task/$SHARD/schedstat)"
    sleep 0.2
    b="$(awk '{print $3}' /proc/$MOCK/task/$SHARD/schedstat)"
    stalled=0
    if [ "$a" = "$b" ]; then
      echo 0 >$T/tracing_on
      stalled=1
    fi
  fi
  ss -tni "( sport = :$PORT or dport = :$PORT )" >"$OUT/ss-$i.txt"
  # The mock's threads (state, kernel wait channel, the syscall it sleeps in with its
  # arguments, scheduler run count) and its io_uring rings (heads, tails, polls), sampled
  # five times 150 ms apart: a shard that never runs in between lost a kernel wake-up; one
  # that runs and goes back to sleep without reading has a user-space bug.
  for s in 1 2 3 4 5; do
    echo "== sample $s $(date +%s.%N)"
    for t in /proc/$MOCK/task/*; do
      echo "$(cat "$t/comm") tid=${t##*/} $(awk '{print $3}' "$t/stat") $(cat "$t/wchan" 2>/dev/null)" \
        "syscall=[$(cat "$t/syscall" 2>/dev/null)] schedstat=[$(cat "$t/schedstat" 2>/dev/null)]"
      cat "$t/stack" 2>/dev/null | sed 's/^/    /' || true
    done
    sleep 0.15
  done >"$OUT/threads-$i.txt" 2>&1
  for fd in /proc/$MOCK/fd/*; do
    if [ "$(readlink "$fd")" = "anon_inode:[io_uring]" ]; then
      echo "== fd ${fd##*/}"; cat "/proc/$MOCK/fdinfo/${fd##*/}"
    fi
  done >"$OUT/uring-$i.txt" 2>/dev/null || true
  ss -tni "( sport = :$PORT or dport = :$PORT )" >"$OUT/ss-late-$i.txt"
  if [ "${TRACE:-0}" = 1 ] && [ "$stalled" = 1 ]; then
    echo "round $i: shard $SHARD did not run; saving the trace" >&2
    tail -n "${TRACE_LINES:-400000}" $T/trace | gzip >"$OUT/trace-$i.txt.gz"
    echo >$T/trace
    echo 1 >$T/tracing_on
  fi
  wait "$gen" || true
  python3 -c "import json,sys;j=json.load(open(sys.argv[1]));print(sys.argv[2], round(j['rps']['achieved']), 'dropped', j['counts']['errors_by_kind']['dropped'])" "$OUT/run-$i.json" "$i"
done
