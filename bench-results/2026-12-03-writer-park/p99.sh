#!/usr/bin/env bash
# weir-full variants side by side: wrk --latency p50/p90/p99 and rps, interleaved.
cd /work/main; . scripts/lib.sh
BIN=${BIN:-/tmp/weir-nice}; W=$(mktemp -d); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null||true; done; rm -rf $W' EXIT
taskset -c 0 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >$W/mock.log 2>&1 & PIDS+=($!)
MOCK=$(listen_addr $W/mock.log)
weir_full_config $W/full.yaml $MOCK "$(bench_key_hash $BIN)"
export WRK_AUTH="Bearer $BENCH_KEY"
declare -A A
start() { # name env args...
  local v=$1 e=$2; shift 2
  env $e taskset -c 1 $BIN --config $W/full.yaml --shards 1 --status-listen 127.0.0.1:0 "$@" >$W/$v.log 2>&1 & PIDS+=($!)
  A[$v]=$(listen_addr $W/$v.log)
}
start log X=1 --access-log $W/log.jsonl
start devnull X=1 --access-log /dev/null
start nolog X=1
echo "round,variant,rps,p50,p90,p99"
for r in $(seq ${ROUNDS:-4}); do for v in log devnull nolog; do
  taskset -c 0 wrk -t1 -c32 -d${DUR:-5}s --latency -s scripts/wrk/chat.lua http://${A[$v]}/v1/chat/completions > $W/w.txt
  echo "$r,$v,$(awk '/Requests\/sec/{print $2}' $W/w.txt),$(awk '$1=="50%"{print $2}' $W/w.txt),$(awk '$1=="90%"{print $2}' $W/w.txt),$(awk '$1=="99%"{print $2}' $W/w.txt)"
done; done
