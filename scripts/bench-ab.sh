#!/usr/bin/env bash
# Usage: git worktree add /tmp/wt-before OLD_COMMIT && (cd /tmp/wt-before && CARGO_TARGET_DIR=/tmp/wt-before-target cargo build --release -p weir-dataplane --bin weir)
#        cargo build --release --bins && ROUNDS=4 DUR=8 scripts/bench-ab.sh > result.csv && scripts/ab-summary.py result.csv
# A/B of two weir binaries (BEFORE=path, default /tmp/wt-before-target/release/weir; AFTER
# is this tree's release build) and
# nginx: interleaved rounds; the same mock (current tree) and wrk on CPU 0, the proxy on CPU 1.
# Per target and round: rps, proxy CPU µs per request (and its user and system parts),
# rescheduling IPIs per request on each CPU (from /proc/interrupts).
# SCEN=chat-stream measures SSE (scripts/wrk/SCEN.lua; default chat).
# FULL=1 runs both weirs as bench-proxy.sh's weir-full (API key, limits, prices, guard,
# request redaction, access log to a file, metrics on a status port).
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROUNDS=${ROUNDS:-4}; DUR=${DUR:-8}
W=$(mktemp -d)
BEFORE=${BEFORE:-/tmp/wt-before-target/release/weir}
AFTER=./target/release/weir
taskset -c 0 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >$W/mock.log 2>&1 & MOCK=$!
MOCK_ADDR="$(listen_addr $W/mock.log)"
PORT=$(free_port)
nginx_proxy_conf $W/nginx "$MOCK_ADDR" "$PORT" off
taskset -c 1 nginx -p $W/nginx -c $W/nginx/nginx.conf & NG=$!
if [ "${FULL:-0}" = 1 ]; then
  weir_full_config $W/full.yaml "$MOCK_ADDR" "$(bench_key_hash $AFTER)"
  export WRK_AUTH="Bearer $BENCH_KEY"
  start_weir() { taskset -c 1 $1 --config $W/full.yaml --shards 1 --access-log $W/$2.jsonl --status-listen 127.0.0.1:0 >$W/$2.log 2>&1 & echo $!; }
else
  start_weir() { taskset -c 1 $1 --upstream "http://$MOCK_ADDR" --listen 127.0.0.1:0 --shards 1 >$W/$2.log 2>&1 & echo $!; }
fi
WB=$(start_weir $BEFORE before); WA=$(start_weir $AFTER after)
addr() { listen_addr $W/$1.log; }
declare -A URL PID
URL[before]="http://$(addr before)/v1/chat/completions"; PID[before]=$WB
URL[after]="http://$(addr after)/v1/chat/completions"; PID[after]=$WA
URL[nginx]="http://127.0.0.1:$PORT/v1/chat/completions"; PID[nginx]=$NG
sleep 0.5
echo "round,target,rps,cpu_us_per_req,user_us_per_req,sys_us_per_req,res_ipi_cpu0_per_req,res_ipi_cpu1_per_req"
res() { awk '/RES:/{print $2, $3}' /proc/interrupts; }
for r in $(seq 1 $ROUNDS); do
  for t in before after nginx; do
    P=${PID[$t]}
    read R0A R1A < <(res); read UA SA < <(awk '{print $14, $15}' /proc/$P/stat)
    taskset -c 0 wrk -t1 -c32 -d${DUR}s -s scripts/wrk/${SCEN:-chat}.lua "${URL[$t]}" > $W/wrk.txt 2>&1
    read R0B R1B < <(res); read UB SB < <(awk '{print $14, $15}' /proc/$P/stat)
    N=$(awk '/requests in/{print $1}' $W/wrk.txt)
    python3 -c "n=$N;u=($UB-$UA)*1e4/n;s=($SB-$SA)*1e4/n;print(f'$r,$t,{n/$DUR:.0f},{u+s:.1f},{u:.1f},{s:.1f},{($R0B-$R0A)/n:.3f},{($R1B-$R1A)/n:.3f}')"
  done
done
kill $WB $WA $NG $MOCK
rm -rf $W
