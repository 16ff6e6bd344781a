#!/usr/bin/env bash
# Is weir-loadtest ever the bottleneck? On one core it must drive more requests per
# second than wrk against the same mock. Mock alone on CPU 1, the generator on CPU 0,
# 32 connections, plain chat, interleaved rounds. Writes $OUT_DIR/results.csv and
# summary.md.
#
#   scripts/bench-generator.sh                 # 4 rounds x 8 s
#   ROUNDS=6 DURATION=10 scripts/bench-generator.sh
#   BEFORE=/path/to/old/weir-loadtest scripts/bench-generator.sh   # also an older build
#   QUOTA=50 scripts/bench-generator.sh     # each generator capped at 50% of its core
#
# QUOTA (percent of one CPU, a cgroup v1 or v2 CPU quota around each generator run) makes
# the generator the bottleneck when the mock's core would saturate first: then the rps
# measure how much load each generator drives per CPU second, with the mock idle part of
# the time.
#
# Each row also has the mock's CPU seconds over the round: a mock near one second per
# second of run is saturated, and then the rps no longer tell the generators apart
# (their CPU per request still does).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROUNDS="${ROUNDS:-4}"
DURATION="${DURATION:-8}"
OUT_DIR="${OUT_DIR:-bench-results/$(date +%Y-%m-%d)-generator}"
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
cargo build --release --bins -q
mkdir -p "$OUT_DIR/raw"
WORK="$(mktemp -d)"
IN_CG=()
CG=""
if [ -n "${QUOTA:-}" ]; then
  if [ -d /sys/fs/cgroup/cpu ]; then
    CG=/sys/fs/cgroup/cpu/weir-bench-gen-$$
    mkdir "$CG"
    echo 100000 >"$CG/cpu.cfs_period_us"
    echo $((QUOTA * 1000)) >"$CG/cpu.cfs_quota_us"
    IN_CG=(sh -c 'echo $$ >"$0/tasks" && exec "$@"' "$CG")
  else
    CG=/sys/fs/cgroup/weir-bench-gen-$$
    mkdir "$CG"
    echo "$((QUOTA * 1000)) 100000" >"$CG/cpu.max"
    IN_CG=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG")
  fi
fi
trap 'kill $MOCK 2>/dev/null || true; rm -rf "$WORK"; [ -z "$CG" ] || rmdir "$CG" 2>/dev/null || true' EXIT
taskset -c 1 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$WORK/mock.log" 2>&1 &
MOCK=$!
ADDR="$(listen_addr "$WORK/mock.log")"
URL="http://$ADDR/v1/chat/completions"
{ machine_info; echo "wrk: $(wrk -v 2>&1 | head -1)"; } > "$OUT_DIR/machine.txt"
cat > "$OUT_DIR/commands.txt" <<CMD
taskset -c 1 weir-loadtest mock --listen 127.0.0.1:0
taskset -c 0 wrk -t1 -c32 -d${DURATION}s -s scripts/wrk/chat.lua $URL
taskset -c 0 weir-loadtest run --url $URL --mode closed --connections 32 --shards 1 --duration ${DURATION}s --workload chat --max-tokens 32 --prompt hello --json FILE
rounds: $ROUNDS, interleaved
generator CPU quota: ${QUOTA:-none}% of one CPU (cgroup)
CMD
echo "round,generator,rps,generator_cpu_s,requests,mock_cpu_s" > "$OUT_DIR/results.csv"
TCK="$(getconf CLK_TCK)"
mock_s() { echo "scale=2; ($(proc_ticks "$MOCK") - $1) / $TCK" | bc; }
command -v bc >/dev/null || apt-get install -y bc >/dev/null
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
# The generator's user+system CPU seconds, from /usr/bin/time.
TIMEF="%U %S"
# One weir-loadtest round: BIN NAME ROUND.
weir_round() {
  local bin="$1" name="$2" r="$3" m0
  m0="$(proc_ticks "$MOCK")"
  /usr/bin/time -f "$TIMEF" -o "$WORK/t" "${IN_CG[@]}" taskset -c 0 "$bin" run \
    --url "$URL" --mode closed --connections 32 --shards 1 --duration "${DURATION}s" \
    --workload chat --max-tokens 32 --prompt hello \
    --json "$OUT_DIR/raw/$name-$r.json" > "$OUT_DIR/raw/$name-$r.txt" 2>&1
  read -r rps n < <(python3 -c "import json;j=json.load(open('$OUT_DIR/raw/$name-$r.json'));print(round(j['rps']['achieved']), j['counts']['ok'])")
  echo "$r,$name,$rps,$(awk '{print $1+$2}' "$WORK/t"),$n,$(mock_s "$m0")" >> "$OUT_DIR/results.csv"
}
for r in $(seq 1 "$ROUNDS"); do
  m0="$(proc_ticks "$MOCK")"
  /usr/bin/time -f "$TIMEF" -o "$WORK/t" "${IN_CG[@]}" taskset -c 0 wrk -t1 -c32 -d"${DURATION}s" \
    -s scripts/wrk/chat.lua "$URL" > "$OUT_DIR/raw/wrk-$r.txt" 2>&1
  rps=$(awk '/Requests\/sec/{print $2}' "$OUT_DIR/raw/wrk-$r.txt")
  n=$(awk '/requests in/{print $1}' "$OUT_DIR/raw/wrk-$r.txt")
  echo "$r,wrk,$rps,$(awk '{print $1+$2}' "$WORK/t"),$n,$(mock_s "$m0")" >> "$OUT_DIR/results.csv"
  weir_round ./target/release/weir-loadtest weir-loadtest "$r"
  if [ -n "${BEFORE:-}" ]; then weir_round "$BEFORE" before "$r"; fi
done
python3 - "$OUT_DIR" "${QUOTA:-}" <<'PY'
import csv, statistics, sys
d = sys.argv[1]
quota = f", each generator capped at {sys.argv[2]}% of it" if sys.argv[2] else ""
rows = list(csv.DictReader(open(f"{d}/results.csv")))
by, cpu, mock = {}, {}, {}
for r in rows:
    g = r["generator"]
    by.setdefault(g, []).append(float(r["rps"]))
    cpu.setdefault(g, []).append(float(r["generator_cpu_s"]) * 1e6 / float(r["requests"]))
    mock.setdefault(g, []).append(float(r["mock_cpu_s"]))
wrk = statistics.median(by["wrk"]); wl = statistics.median(by["weir-loadtest"])
pairs = [b / a for a, b in zip(by["wrk"], by["weir-loadtest"])]
cpu_pairs = [b / a for a, b in zip(cpu["wrk"], cpu["weir-loadtest"])]
with open(f"{d}/summary.md", "w") as f:
    f.write(f"# weir-loadtest vs wrk on one core{quota} (mock alone on the other)\n\n")
    f.write("| generator | rps per round | median rps | median generator CPU µs/request | median mock CPU s per round |\n|---|---|---|---|---|\n")
    for g in by:
        f.write(f"| {g} | {', '.join(f'{x:,.0f}' for x in by[g])} | {statistics.median(by[g]):,.0f} | {statistics.median(cpu[g]):.2f} | {statistics.median(mock[g]):.2f} |\n")
    f.write(f"\nweir-loadtest / wrk: rps median {wl / wrk:.2f}x (per round {', '.join(f'{p:.2f}' for p in pairs)}); "
            f"CPU per request median {statistics.median(cpu_pairs):.2f}x (per round {', '.join(f'{p:.2f}' for p in cpu_pairs)})\n")
print(open(f"{d}/summary.md").read())
PY
