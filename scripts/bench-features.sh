#!/usr/bin/env bash
# What each feature of `weir-full` costs: interleaved rounds over Weir variants (plain;
# everything on; everything but the access log / metrics / limits / policy), each its own
# process on CPU 1, the mock and wrk on CPU 0, plain chat requests. Prints CSV:
# round, variant, rps, proxy CPU µs per request.
#
#   cargo build --release --bins && ROUNDS=4 DUR=6 scripts/bench-features.sh > out.csv
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
ROUNDS=${ROUNDS:-4}; DUR=${DUR:-6}
W=$(mktemp -d)
taskset -c 0 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >$W/mock.log 2>&1 & MOCK=$!
MOCK_ADDR="$(listen_addr $W/mock.log)"
weir_full_config $W/full.yaml "$MOCK_ADDR" "$(bench_key_hash)"
# Variants: config edits and extra args (VARIANTS="full full-devnull" picks some).
sed '/limits/d;/window: /d' $W/full.yaml > $W/nolimits.yaml
sed '/policy: standard/d' $W/full.yaml > $W/nopolicy.yaml
printf 'listeners: ["127.0.0.1:0"]\nupstreams: [{name: mock, targets: ["http://%s"]}]\nroutes: [{name: chat, path_prefix: /, upstream: mock}]\n' $MOCK_ADDR > $W/plain.yaml
declare -A ARGS CFG
CFG[plain]=plain.yaml; ARGS[plain]=""
CFG[full]=full.yaml; ARGS[full]="--access-log $W/a1.jsonl --status-listen 127.0.0.1:0"
CFG[full-nolog]=full.yaml; ARGS[full-nolog]="--status-listen 127.0.0.1:0"
# Lines formatted and handed to the writer, which writes them where they cost nothing:
# what the file's page cache costs (full - full-devnull) against the rest of the log.
CFG[full-devnull]=full.yaml; ARGS[full-devnull]="--access-log /dev/null --status-listen 127.0.0.1:0"
CFG[full-nometrics]=full.yaml; ARGS[full-nometrics]="--access-log $W/a2.jsonl"
CFG[full-nolimits]=nolimits.yaml; ARGS[full-nolimits]="--access-log $W/a3.jsonl --status-listen 127.0.0.1:0"
CFG[full-nopolicy]=nopolicy.yaml; ARGS[full-nopolicy]="--access-log $W/a4.jsonl --status-listen 127.0.0.1:0"
VARIANTS="${VARIANTS:-plain full full-nolog full-nometrics full-nolimits full-nopolicy}"
declare -A PID URL
for v in $VARIANTS; do
  taskset -c 1 ./target/release/weir --config $W/${CFG[$v]} --shards 1 ${ARGS[$v]} > $W/$v.log 2>&1 &
  PID[$v]=$!
done
for v in $VARIANTS; do
  URL[$v]="http://$(listen_addr $W/$v.log)/v1/chat/completions"
done
export WRK_AUTH="Bearer $BENCH_KEY"
echo "round,variant,rps,cpu_us_per_req"
for r in $(seq 1 $ROUNDS); do
  for v in $VARIANTS; do
    P=${PID[$v]}
    TA=$(awk '{print $14+$15}' /proc/$P/stat)
    taskset -c 0 wrk -t1 -c32 -d${DUR}s -s scripts/wrk/chat.lua "${URL[$v]}" > $W/wrk.txt 2>&1
    TB=$(awk '{print $14+$15}' /proc/$P/stat)
    N=$(awk '/requests in/{print $1}' $W/wrk.txt)
    NON=$(grep -c "Non-2xx" $W/wrk.txt)
    python3 -c "n=$N;print(f'$r,$v,{n/$DUR:.0f},{($TB-$TA)*1e4/n:.1f}' + (',NON2XX' if $NON else ''))"
  done
done
for v in $VARIANTS; do kill ${PID[$v]}; done; kill $MOCK
rm -rf $W
