#!/usr/bin/env bash
# Does weir-loadtest measure latency like oha? Both drive the same mock at the same fixed
# rates (open loop, latency from the intended send time: oha --latency-correction) and
# their percentiles are compared; the issue's bar is agreement within 10%. The mock
# answers after a uniform 2-20 ms (so the percentiles describe a real spread) and runs
# alone on CPU 1; the generator on CPU 0. Interleaved rounds. Writes $OUT_DIR/
# (results.csv, summary.md, raw/). oha is installed with `cargo install oha` if missing
# (OHA=path to use another binary).
#
#   scripts/bench-oha.sh                      # rates 500 and 2000, 3 rounds x 10 s
#   RATES="1000" ROUNDS=5 scripts/bench-oha.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
RATES="${RATES:-500 2000}"
CONNS="${CONNS:-64}"
MOCK_TTFT="${MOCK_TTFT:-uniform:2:20}"  # the mock's answer delay (ms); 0 measures the generators' own overhead
OUT_DIR="${OUT_DIR:-bench-results/$(date +%Y-%m-%d)-oha}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
if [ ! -x "$OHA" ]; then
  echo "==> installing oha (cargo install oha --locked)"
  cargo install oha --locked -q
  OHA="$HOME/.cargo/bin/oha"
fi
cargo build --release --bins -q
mkdir -p "$OUT_DIR/raw"
WORK="$(mktemp -d)"
trap 'kill $MOCK 2>/dev/null || true; rm -rf "$WORK"' EXIT
taskset -c 1 ./target/release/weir-loadtest mock --listen 127.0.0.1:0 --ttft-ms "$MOCK_TTFT" >"$WORK/mock.log" 2>&1 &
MOCK=$!
ADDR="$(listen_addr "$WORK/mock.log")"
URL="http://$ADDR/v1/chat/completions"
BODY='{"model":"mock-model","messages":[{"role":"user","content":"hello"}],"max_tokens":32}'
{ machine_info; echo "oha: $("$OHA" --version 2>&1 | head -1)"; } > "$OUT_DIR/machine.txt"
cat > "$OUT_DIR/commands.txt" <<CMD
taskset -c 1 weir-loadtest mock --listen 127.0.0.1:0 --ttft-ms $MOCK_TTFT
taskset -c 0 oha -z ${DURATION}s -q RATE -c $CONNS --latency-correction --no-tui --output-format json -m POST -H 'content-type: application/json' -d '$BODY' $URL
taskset -c 0 weir-loadtest run --url $URL --mode open --rate RATE --connections $CONNS --shards 1 --duration ${DURATION}s --workload chat --max-tokens 32 --prompt hello --json FILE
rates: $RATES; rounds: $ROUNDS, interleaved
CMD
echo "round,rate,generator,achieved_rps,p50_ms,p90_ms,p99_ms,p99_9_ms,ok,send_lag_p50_ms,send_lag_p99_ms" > "$OUT_DIR/results.csv"
for r in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    raw="$OUT_DIR/raw/oha-$rate-r$r.json"
    taskset -c 0 "$OHA" -z "${DURATION}s" -q "$rate" -c "$CONNS" --latency-correction --no-tui \
      --output-format json -m POST -H 'content-type: application/json' -d "$BODY" "$URL" > "$raw"
    python3 - "$raw" "$r" "$rate" >> "$OUT_DIR/results.csv" <<'PY'
import json, sys
raw, r, rate = sys.argv[1:]
j = json.load(open(raw))
p = j["latencyPercentiles"]
ok = sum(v for k, v in j.get("statusCodeDistribution", {}).items() if k.startswith("2"))
ms = lambda k: p[k] * 1000
print(f"{r},{rate},oha,{j['summary']['requestsPerSec']:.1f},{ms('p50'):.3f},{ms('p90'):.3f},{ms('p99'):.3f},{ms('p99.9'):.3f},{ok},,")
PY
    raw="$OUT_DIR/raw/weir-loadtest-$rate-r$r.json"
    taskset -c 0 ./target/release/weir-loadtest run --url "$URL" --mode open --rate "$rate" \
      --connections "$CONNS" --shards 1 --duration "${DURATION}s" --workload chat \
      --max-tokens 32 --prompt hello --json "$raw" > /dev/null 2>&1
    python3 - "$raw" "$r" "$rate" >> "$OUT_DIR/results.csv" <<'PY'
import json, sys
raw, r, rate = sys.argv[1:]
j = json.load(open(raw))
p = j["latency_ms"]["request"]
lag = j.get("send_lag_ms") or {}
print(f"{r},{rate},weir-loadtest,{j['rps']['achieved']:.1f},{p['p50']:.3f},{p['p90']:.3f},{p['p99']:.3f},{p['p99_9']:.3f},{j['counts']['ok']},{lag.get('p50', '')},{lag.get('p99', '')}")
PY
    tail -2 "$OUT_DIR/results.csv"
    sleep 1
  done
done
python3 - "$OUT_DIR" <<'PY'
import csv, statistics as st, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/results.csv")))
keys = ["achieved_rps", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms"]
lines = ["# weir-loadtest against oha: the same mock, the same fixed rates", "",
         "Medians over rounds. Ratio = weir-loadtest / oha; the bar is 0.90-1.10 for p50, p90 and p99.", ""]
for rate in dict.fromkeys(r["rate"] for r in rows):
    lines += [f"## {rate} requests/s", "", "| generator | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    med = {}
    for g in ("oha", "weir-loadtest"):
        rs = [r for r in rows if r["rate"] == rate and r["generator"] == g]
        med[g] = {k: st.median(float(r[k]) for r in rs) for k in keys}
        lines.append(f"| {g} | " + " | ".join(f"{med[g][k]:.3f}" for k in keys) + " |")
    lines.append("| ratio | " + " | ".join(f"{med['weir-loadtest'][k] / med['oha'][k]:.2f}" for k in keys) + " |")
    lags = [float(r["send_lag_p50_ms"]) for r in rows if r["rate"] == rate and r.get("send_lag_p50_ms")]
    if lags:
        lines += ["", f"weir-loadtest's send lag (its requests' departure after their intended time, "
                  f"part of each latency above): median p50 {st.median(lags):.3f} ms."]
    lines.append("")
open(f"{d}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
