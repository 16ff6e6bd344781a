#!/usr/bin/env bash
# Side-by-side proxy benchmark: direct to the mock, nginx, and Weir; plain and SSE chat
# completions; pinned (proxy alone on one core, wrk and the mock on the other),
# interleaved rounds. Writes bench-results/DATE-proxy/ (or $OUT_DIR) with the commands,
# the machine, raw wrk output, per-run CPU time of each proxy, and a summary.
#
#   scripts/bench-proxy.sh                   # 3 rounds x 10 s per cell
#   ROUNDS=5 DURATION=15 CONNS=32 scripts/bench-proxy.sh
#   TARGETS="direct nginx weir weir-full" scripts/bench-proxy.sh
#
# `weir-full` is Weir with everything a platform turns on: an API key checked per
# request, request and token limits (consumer, consumer x model and route budgets, set
# high enough never to refuse, so every request is reserved, metered and settled), a
# price table, a policy with a prompt guard and request PII redaction on the route, the
# access log written to a file, and Prometheus metrics on a status port.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
LOAD_CPU="${LOAD_CPU:-0}"    # wrk + mock
PROXY_CPU="${PROXY_CPU:-1}"  # the proxy under test
OUT_DIR="${OUT_DIR:-bench-results/$(date +%Y-%m-%d)-proxy}"
SCENARIOS="${SCENARIOS:-chat chat-stream}"
TARGETS="${TARGETS:-direct nginx weir}"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
  echo "==> installing wrk and nginx"
  apt-get install -y wrk nginx >/dev/null
fi
echo "==> building release"
cargo build --release --bins -q

mkdir -p "$OUT_DIR/raw"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# ---- machine
{
  machine_info
  echo "nginx: $(nginx -v 2>&1)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "load before: $(cat /proc/loadavg)"
} > "$OUT_DIR/machine.txt"

# ---- upstream mock on the load core
MOCK_LOG="$WORK/mock.log"
taskset -c "$LOAD_CPU" ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$MOCK_LOG" 2>&1 &
PIDS+=($!); MOCK_PID=$!
MOCK_ADDR="$(listen_addr "$MOCK_LOG")"

# ---- nginx, one worker, on the proxy core
NGINX_PORT="$(free_port)"
nginx_proxy_conf "$WORK/nginx" "$MOCK_ADDR" "$NGINX_PORT" on
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!); NGINX_PID=$!

# ---- weir, one shard, on the proxy core
WEIR_LOG="$WORK/weir.log"
taskset -c "$PROXY_CPU" ./target/release/weir --upstream "http://$MOCK_ADDR" --listen 127.0.0.1:0 --shards 1 >"$WEIR_LOG" 2>&1 &
PIDS+=($!); WEIR_PID=$!
WEIR_ADDR="$(listen_addr "$WEIR_LOG")"

# ---- weir with auth, policy, access log and metrics, one shard, on the proxy core
weir_full_config "$WORK/weir-full.yaml" "$MOCK_ADDR" "$(bench_key_hash)"
FULL_LOG="$WORK/weir-full.log"
taskset -c "$PROXY_CPU" ./target/release/weir --config "$WORK/weir-full.yaml" --shards 1 \
  --access-log "$WORK/access.jsonl" --status-listen 127.0.0.1:0 >"$FULL_LOG" 2>&1 &
PIDS+=($!); FULL_PID=$!
FULL_ADDR="$(listen_addr "$FULL_LOG")"
export WRK_AUTH="Bearer $BENCH_KEY"
sleep 0.5

url_for() {
  case "$1" in
    direct) echo "http://$MOCK_ADDR/v1/chat/completions" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" ;;
    weir) echo "http://$WEIR_ADDR/v1/chat/completions" ;;
    weir-full) echo "http://$FULL_ADDR/v1/chat/completions" ;;
  esac
}
pid_for() {
  case "$1" in
    direct) echo "$MOCK_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    weir) echo "$WEIR_PID" ;;
    weir-full) echo "$FULL_PID" ;;
  esac
}

{
  echo "# commands (see scripts/bench-proxy.sh for the full script)"
  echo "taskset -c $LOAD_CPU weir-loadtest mock --listen 127.0.0.1:0"
  echo "taskset -c $PROXY_CPU nginx -p WORK -c nginx.conf   # 1 worker, keepalive 64, proxy_buffering off"
  echo "taskset -c $PROXY_CPU weir --upstream http://MOCK --listen 127.0.0.1:0 --shards 1"
  echo "taskset -c $PROXY_CPU weir --config weir-full.yaml --shards 1 --access-log FILE --status-listen 127.0.0.1:0   # weir-full"
  echo "taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d${DURATION}s --latency -s scripts/wrk/SCENARIO.lua URL"
  echo "rounds: $ROUNDS, interleaved: $TARGETS; scenarios: $SCENARIOS"
  echo
  echo "# nginx.conf"
  cat "$WORK/nginx/nginx.conf"
  echo
  echo "# weir-full.yaml (every wrk request carries Authorization: Bearer KEY)"
  cat "$WORK/weir-full.yaml"
} > "$OUT_DIR/commands.txt"

CLK_TCK="$(getconf CLK_TCK)"
# steal_s: time the hypervisor took from this VM's vCPUs during the run (both CPUs,
# /proc/stat): a round with a large one measured the host, not the proxy.
steal_ticks() { awk '/^cpu[0-9]/ {s += $9} END {print s + 0}' /proc/stat; }
echo "round,scenario,target,rps,p50_ms,p99_ms,requests,proxy_cpu_s,mock_cpu_s,steal_s" > "$OUT_DIR/results.csv"
for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    for target in $TARGETS; do
      url="$(url_for "$target")"
      raw="$OUT_DIR/raw/$scenario-$target-r$round.txt"
      pid="$(pid_for "$target")"
      before="$(proc_ticks "$pid")"; mock_before="$(proc_ticks "$MOCK_PID")"; steal_before="$(steal_ticks)"
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        -s "scripts/wrk/$scenario.lua" "$url" > "$raw" 2>&1 || true
      after="$(proc_ticks "$pid")"; mock_after="$(proc_ticks "$MOCK_PID")"; steal_after="$(steal_ticks)"
      python3 - "$raw" "$round" "$scenario" "$target" "$before" "$after" "$mock_before" "$mock_after" "$CLK_TCK" \
        "$((steal_after - steal_before))" >> "$OUT_DIR/results.csv" <<'PY'
import re, sys
raw, rnd, scen, tgt, b, a, mb, ma, tck, steal = sys.argv[1:]
text = open(raw).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
reqs = int(re.search(r"(\d+) requests in", text).group(1))
p = {k: ms(v, u) for k, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errs:
    print(f"WARNING {tgt} {scen}: {errs.group(1)} non-2xx", file=sys.stderr)
cpu = (int(a) - int(b)) / int(tck)
mcpu = (int(ma) - int(mb)) / int(tck)
print(f"{rnd},{scen},{tgt},{rps:.0f},{p.get('50',0):.3f},{p.get('99',0):.3f},{reqs},{cpu:.2f},{mcpu:.2f},"
      f"{int(steal) / int(tck):.2f}")
PY
      tail -1 "$OUT_DIR/results.csv"
      sleep 1
    done
  done
done
echo "load after: $(cat /proc/loadavg)" >> "$OUT_DIR/machine.txt"

python3 - "$OUT_DIR" <<'PY'
import csv, statistics, sys, os
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
cells = {}
for r in rows:
    cells.setdefault((r["scenario"], r["target"]), []).append(r)
def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)
lines = ["# Proxy benchmark summary", "",
         "Medians over rounds (spread = min–max). CPU/request: the proxy's process tree",
         "utime+stime over the run divided by the requests served (for `direct`: the mock's).",
         "Per round: the median over rounds of the target's rps divided by nginx's in the",
         "same round (robust to the VM drifting between rounds; spread = min–max).", ""]
for scen in sorted({k[0] for k in cells}):
    lines += [f"## {scen}", "",
              "| target | rps (spread) | p50 ms | p99 ms | added p99 vs direct | CPU µs/request | rps vs nginx | CPU vs nginx | rps vs nginx per round |",
              "|---|---|---|---|---|---|---|---|---|"]
    d = cells.get((scen, "direct"))
    n = cells.get((scen, "nginx"))
    for tgt in ["direct", "nginx", "weir", "weir-full"]:
        rs = cells.get((scen, tgt))
        if not rs:
            continue
        rps = med(rs, "rps"); lo = min(float(r["rps"]) for r in rs); hi = max(float(r["rps"]) for r in rs)
        cpu_us = statistics.median(float(r["proxy_cpu_s"]) * 1e6 / max(1, int(r["requests"])) for r in rs)
        added = med(rs, "p99_ms") - med(d, "p99_ms") if d and tgt != "direct" else 0.0
        vs = f"{rps / med(n, 'rps'):.2f}×" if n and tgt != "direct" else "—"
        ncpu = statistics.median(float(r["proxy_cpu_s"]) * 1e6 / max(1, int(r["requests"])) for r in n) if n else None
        cvs = f"{cpu_us / ncpu:.2f}×" if ncpu and tgt != "direct" else "—"
        nr = {r["round"]: float(r["rps"]) for r in n} if n else {}
        ratios = [float(r["rps"]) / nr[r["round"]] for r in rs if nr.get(r["round"])]
        per = (f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
               if ratios and tgt not in ("direct", "nginx") else "—")
        lines.append(f"| {tgt} | {rps:,.0f} ({lo:,.0f}–{hi:,.0f}) | {med(rs,'p50_ms'):.3f} | {med(rs,'p99_ms'):.3f} | "
                     f"{'—' if tgt=='direct' or not d else f'{added:+.3f}'} | {cpu_us:.1f} | {vs} | {cvs} | {per} |")
    lines.append("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "==> results in $OUT_DIR"
