#!/usr/bin/env bash
# Weir beside its peers, measured with weir-loadtest: direct to the mock, nginx, HAProxy
# and Weir; with TARGETS="... portkey" also the Portkey gateway (Node, installed from npm
# into $PEER_DIR; ~500 rps here) and with "... litellm" the LiteLLM proxy (Python, pip in a
# venv in $PEER_DIR; tens of rps here). Keep Portkey to the closed, open-1000, streams and
# single scenarios and LiteLLM to closed and single: an overloaded LiteLLM works through
# its backlog after the run ends, on the proxy core, and disturbs the next cells. With
# "... tensorzero" also TensorZero (its Rust gateway, embedded in the `tensorzero` wheel
# from PyPI, started as an HTTP gateway from Python; pip in a venv in $PEER_DIR).
# Pinned: every proxy on PROXY_CPU, the mocks and the load generator on LOAD_CPU.
# Interleaved rounds. Scenarios:
#   closed    closed loop, 32 connections, plain chat (max throughput)
#   open-R    open loop at R requests/s (RATES, default "1000 2000 5000"), plain chat
#   streams   STREAMS concurrent SSE streams (default 1000) of 20 events at 20 events/s
#   single    one connection, plain chat
# Writes bench-results/DATE-compare/ (or $OUT_DIR): commands, machine, raw JSON per run,
# results.csv, summary.md (medians, ratios against nginx, CPU per request) and plots/:
# per scenario, SCENARIO-latency.svg (percentile curves per target; inter-token latency
# for `streams`) and SCENARIO-throughput.svg, drawn by `weir-loadtest plot`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
RATES="${RATES:-1000 2000 5000}"
STREAMS="${STREAMS:-1000}"
LOAD_CPU="${LOAD_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
TARGETS="${TARGETS:-direct nginx haproxy weir}"
SCENARIOS="${SCENARIOS:-closed $(for r in $RATES; do printf 'open-%s ' "$r"; done)streams single}"
OUT_DIR="${OUT_DIR:-bench-results/$(date +%Y-%m-%d)-compare}"

for tool in nginx haproxy; do
  command -v "$tool" >/dev/null || { echo "==> installing $tool"; apt-get install -y "$tool" >/dev/null; }
done
PEER_DIR="${PEER_DIR:-$HOME/.cache/weir-peers}"
case " $TARGETS " in
  *" portkey "*)
    if [ ! -f "$PEER_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
      echo "==> installing the Portkey gateway 1.15.2 into $PEER_DIR/portkey (npm)"
      mkdir -p "$PEER_DIR/portkey"
      # @hono/node-server newer than 1.13.8 breaks streaming on Node 20 (../shared/PEERS.md).
      echo '{"name":"weir-peer-portkey","private":true,"dependencies":{"@portkey-ai/gateway":"1.15.2"},"overrides":{"@hono/node-server":"1.13.8"}}' \
        >"$PEER_DIR/portkey/package.json"
      (cd "$PEER_DIR/portkey" && npm install --no-audit --no-fund >/dev/null 2>&1) \
        || { echo "==> skipping Portkey: npm install failed"; TARGETS="${TARGETS/portkey/}"; }
    fi ;;
  *) echo "==> skipping Portkey: not in TARGETS (add it: TARGETS=\"direct nginx haproxy weir portkey\")" ;;
esac
# A Python peer in its own venv, $PEER_DIR/NAME, with pip SPEC, unless that venv can
# already import MODULE. Drops NAME from TARGETS when pip fails; says so when not asked for.
pip_peer() {
  local name="$1" label="$2" spec="$3" module="$4"
  case " $TARGETS " in
    *" $name "*)
      if ! "$PEER_DIR/$name/bin/python3" -c "import $module" 2>/dev/null; then
        echo "==> installing $label into $PEER_DIR/$name (pip, venv)"
        mkdir -p "$PEER_DIR"
        { python3 -m venv "$PEER_DIR/$name" && "$PEER_DIR/$name/bin/pip" install -q "$spec"; } >/dev/null 2>&1 \
          || { echo "==> skipping $label: pip install failed"; TARGETS="${TARGETS/$name/}"; }
      fi ;;
    *) echo "==> skipping $label: not in TARGETS (add it: TARGETS=\"... $name\")" ;;
  esac
}
pip_peer litellm "the LiteLLM proxy" 'litellm[proxy]' litellm
TENSORZERO_VERSION="${TENSORZERO_VERSION:-2026.6.0}"
pip_peer tensorzero "TensorZero $TENSORZERO_VERSION" "tensorzero==$TENSORZERO_VERSION" tensorzero
echo "==> building release"
cargo build --release --bins -q
mkdir -p "$OUT_DIR/raw"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
addr_of() { for _ in $(seq 1 200); do grep -qE "$2" "$1" && break; sleep 0.05; done; grep -oE "$2" "$1" | head -1 | grep -oE '[0-9.]+:[0-9]+'; }

# Two mocks: FAST answers at once; SLOW streams at 20 events/s (SSE scenario).
taskset -c "$LOAD_CPU" ./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$WORK/fast.log" 2>&1 & PIDS+=($!); FAST_PID=$!
taskset -c "$LOAD_CPU" ./target/release/weir-loadtest mock --listen 127.0.0.1:0 --itl-ms 50 >"$WORK/slow.log" 2>&1 & PIDS+=($!)
FAST="$(addr_of "$WORK/fast.log" 'listening on [0-9.:]+')"
SLOW="$(addr_of "$WORK/slow.log" 'listening on [0-9.:]+')"

# nginx: one worker, two servers.
NG1="$(free_port)"; NG2="$(free_port)"
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  upstream fast { server $FAST; keepalive 256; }
  upstream slow { server $SLOW; keepalive 1024; }
  server { listen 127.0.0.1:$NG1 reuseport; location / { proxy_pass http://fast; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } }
  server { listen 127.0.0.1:$NG2 reuseport; location / { proxy_pass http://slow; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } }
}
CONF
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" & PIDS+=($!); NGINX_PID=$!

# HAProxy: one thread, two frontends, connection reuse.
HA1="$(free_port)"; HA2="$(free_port)"
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option http-buffer-request
frontend f1
  bind 127.0.0.1:$HA1
  default_backend fast
frontend f2
  bind 127.0.0.1:$HA2
  default_backend slow
backend fast
  server s1 $FAST
backend slow
  server s1 $SLOW
CONF
taskset -c "$PROXY_CPU" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!); HAPROXY_PID=$!

# Weir: one process, one shard, two listeners would share routes, so two processes.
taskset -c "$PROXY_CPU" ./target/release/weir --upstream "http://$FAST" --listen 127.0.0.1:0 --shards 1 >"$WORK/w1.log" 2>&1 & PIDS+=($!); WEIR_PID=$!
taskset -c "$PROXY_CPU" ./target/release/weir --upstream "http://$SLOW" --listen 127.0.0.1:0 --shards 1 >"$WORK/w2.log" 2>&1 & PIDS+=($!); WEIR2_PID=$!
W1="$(addr_of "$WORK/w1.log" 'http://[0-9.:]+')"; W2="$(addr_of "$WORK/w2.log" 'http://[0-9.:]+')"

# Portkey: one Node process; the mock it forwards to is chosen per request by header.
PORTKEY_PID=""
case " $TARGETS " in *" portkey "*)
  PK="$(free_port)"
  taskset -c "$PROXY_CPU" node "$PEER_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" \
    --port="$PK" --headless >"$WORK/portkey.log" 2>&1 & PIDS+=($!); PORTKEY_PID=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PK") 2>/dev/null && break; sleep 0.1; done ;;
esac

# LiteLLM: one worker (one core, like nginx's one worker); the model name picks the mock.
LITELLM_PID=""
LITELLM_KEY="sk-weir-bench-0123456789abcdef0123456789"
case " $TARGETS " in *" litellm "*)
  LL="$(free_port)"
  cat >"$WORK/litellm.yaml" <<CONF
model_list:
  - model_name: fast
    litellm_params: {model: openai/mock-model, api_base: "http://$FAST/v1", api_key: "none"}
  - model_name: slow
    litellm_params: {model: openai/mock-model, api_base: "http://$SLOW/v1", api_key: "none"}
# LiteLLM refuses to start without a master key; the runs send it.
general_settings: {master_key: "$LITELLM_KEY"}
CONF
  LITELLM_LOCAL_MODEL_COST_MAP=True taskset -c "$PROXY_CPU" "$PEER_DIR/litellm/bin/litellm" \
    --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LL" --num_workers 1 --telemetry False \
    >"$WORK/litellm.log" 2>&1 & PIDS+=($!); LITELLM_PID=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$LL/health/liveliness" >/dev/null 2>&1 && break; sleep 0.1; done ;;
esac
# TensorZero: the gateway the wheel embeds, started over HTTP from Python (as
# `patch_openai_client` does); one model per mock, called as tensorzero::model_name::NAME.
TENSORZERO_PID=""
case " $TARGETS " in *" tensorzero "*)
  mkdir -p "$WORK/tensorzero"
  for model in "fast $FAST" "slow $SLOW"; do
    read -r name addr <<<"$model"
    cat <<CONF
[models.$name]
routing = ["mock"]
[models.$name.providers.mock]
type = "openai"
api_base = "http://$addr/v1/"
model_name = "mock-model"
api_key_location = "none"

CONF
  done >"$WORK/tensorzero/tensorzero.toml"
  cat >"$WORK/tensorzero/run.py" <<'PY'
import signal, sys, tensorzero
gw = tensorzero._start_http_gateway(config_file=sys.argv[1], clickhouse_url=None,
                                    postgres_url=None, valkey_url=None, async_setup=False)
print("listening on", gw.base_url, flush=True)
signal.sigwait({signal.SIGINT, signal.SIGTERM})
gw.close()
PY
  taskset -c "$PROXY_CPU" "$PEER_DIR/tensorzero/bin/python3" "$WORK/tensorzero/run.py" "$WORK/tensorzero/tensorzero.toml" \
    >"$WORK/tensorzero.log" 2>&1 & PIDS+=($!); TENSORZERO_PID=$!
  TZ="$(addr_of "$WORK/tensorzero.log" 'listening on http://[0-9.:]+')" ;;
esac
sleep 0.5

url() {  # target, fast|slow
  case "$1-$2" in
    direct-fast) echo "http://$FAST" ;; direct-slow) echo "http://$SLOW" ;;
    nginx-fast) echo "http://127.0.0.1:$NG1" ;; nginx-slow) echo "http://127.0.0.1:$NG2" ;;
    haproxy-fast) echo "http://127.0.0.1:$HA1" ;; haproxy-slow) echo "http://127.0.0.1:$HA2" ;;
    weir-fast) echo "http://$W1" ;; weir-slow) echo "http://$W2" ;;
    portkey-*) echo "http://127.0.0.1:$PK" ;;
    litellm-*) echo "http://127.0.0.1:$LL" ;;
    tensorzero-*) echo "http://$TZ/openai/v1/chat/completions" ;;
  esac
}
extra_for() {  # target, fast|slow: what a gateway routed by header or model name needs
  case "$1" in
    litellm) printf '%s\n' --model "$2" --api-key "$LITELLM_KEY" ;;
    tensorzero) printf '%s\n' --model "tensorzero::model_name::$2" ;;
    portkey) printf '%s\n' --header "x-portkey-provider: openai" \
      --header "x-portkey-custom-host: http://$([ "$2" = fast ] && echo "$FAST" || echo "$SLOW")/v1" ;;
  esac
}
pids_of() {  # the process trees whose CPU is charged to a target
  case "$1" in
    direct) echo "" ;; nginx) echo "$NGINX_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;; weir) echo "$WEIR_PID $WEIR2_PID" ;;
    portkey) echo "$PORTKEY_PID" ;; litellm) echo "$LITELLM_PID" ;;
    tensorzero) echo "$TENSORZERO_PID" ;;
  esac
}
args_for() {  # scenario -> generator arguments and which mock
  case "$1" in
    closed) echo "fast --mode closed --connections 32 --workload chat --max-tokens 32" ;;
    open-*) echo "fast --mode open --rate ${1#open-} --workload chat --max-tokens 32" ;;
    streams) echo "slow --mode closed --connections $STREAMS --workload chat-stream --max-tokens 20" ;;
    single) echo "fast --mode closed --connections 1 --workload chat --max-tokens 32" ;;
  esac
}

{
  machine_info
  echo "nginx: $(nginx -v 2>&1)"; echo "haproxy: $(haproxy -v | head -1)"
  echo "load before: $(cat /proc/loadavg)"
} >"$OUT_DIR/machine.txt"
{
  echo "# see scripts/bench-compare.sh; proxies on CPU $PROXY_CPU, mocks and generator on CPU $LOAD_CPU"
  echo "mocks: weir-loadtest mock --listen 127.0.0.1:0   and   --itl-ms 50 (streams)"
  for s in $SCENARIOS; do set -- $(args_for "$s"); shift; echo "$s: taskset -c $LOAD_CPU weir-loadtest run --url URL --duration ${DURATION}s $*"; done
  [ -n "$PORTKEY_PID" ] && echo "portkey: taskset -c $PROXY_CPU node PEER_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js --port=PORT --headless (gateway 1.15.2, @hono/node-server 1.13.8); runs add --header 'x-portkey-provider: openai' --header 'x-portkey-custom-host: http://MOCK/v1'"
  [ -n "$LITELLM_PID" ] && { echo "litellm: LITELLM_LOCAL_MODEL_COST_MAP=True taskset -c $PROXY_CPU litellm --config litellm.yaml --num_workers 1 --telemetry False ($("$PEER_DIR/litellm/bin/pip" show litellm 2>/dev/null | grep -i '^version')); runs add --model fast|slow"; echo "# litellm.yaml"; cat "$WORK/litellm.yaml"; }
  [ -n "$TENSORZERO_PID" ] && { echo "tensorzero: taskset -c $PROXY_CPU python3 run.py tensorzero.toml (tensorzero $("$PEER_DIR/tensorzero/bin/pip" show tensorzero 2>/dev/null | sed -n 's/^Version: //p'), its embedded HTTP gateway); runs add --model tensorzero::model_name::fast|slow and use the path /openai/v1/chat/completions"; echo "# run.py"; cat "$WORK/tensorzero/run.py"; echo "# tensorzero.toml"; cat "$WORK/tensorzero/tensorzero.toml"; }
  echo; echo "# nginx.conf"; cat "$WORK/nginx/nginx.conf"; echo; echo "# haproxy.cfg"; cat "$WORK/haproxy.cfg"
} >"$OUT_DIR/commands.txt"

echo "round,scenario,target,json,cpu_s" >"$OUT_DIR/runs.csv"
for round in $(seq 1 "$ROUNDS"); do
  for s in $SCENARIOS; do
    set -- $(args_for "$s"); mock="$1"; shift
    for t in $TARGETS; do
      json="raw/$s-$t-r$round.json"
      p="$(pids_of "$t")"; b="$(proc_ticks $p)"
      mapfile -t extra < <(extra_for "$t" "$mock")
      taskset -c "$LOAD_CPU" ./target/release/weir-loadtest run --url "$(url "$t" "$mock")" \
        --duration "${DURATION}s" "$@" "${extra[@]}" --json "$OUT_DIR/$json" >/dev/null 2>&1 || true
      a="$(proc_ticks $p)"
      echo "$round,$s,$t,$json,$(python3 -c "print(($a-$b)/$(getconf CLK_TCK))")" >>"$OUT_DIR/runs.csv"
      echo "round $round $s $t done"
      sleep 1
    done
  done
done
echo "load after: $(cat /proc/loadavg)" >>"$OUT_DIR/machine.txt"

python3 - "$OUT_DIR" <<'PY'
import csv, json, os, statistics as st, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "runs.csv"))))
cells = {}
for r in rows:
    path = os.path.join(out, r["json"])
    if not os.path.exists(path):
        continue
    j = json.load(open(path))
    c = j["counts"]; lat = j["latency_ms"]
    if not lat.get("request"):
        print(f"WARNING: {r['json']}: no successful request ({c['errors_by_kind']})", file=sys.stderr)
        continue
    ok = max(1, c["ok"])
    cells.setdefault((r["scenario"], r["target"]), []).append({
        "rps": j["rps"]["achieved"], "ok": c["ok"], "errors": c["errors"],
        "p50": lat["request"]["p50"], "p99": lat["request"]["p99"],
        "itl99": (lat.get("itl") or {}).get("p99"), "ttft99": (lat.get("ttft") or {}).get("p99"),
        "cpu_us": float(r["cpu_s"]) * 1e6 / ok,
    })
def med(v, k):
    xs = [x[k] for x in v if x[k] is not None]
    return st.median(xs) if xs else None
lines = ["# Peer comparison summary", "",
         "Medians over rounds. CPU µs/req: the proxy's process tree utime+stime over the run / successful requests.",
         "Added = target minus direct (same scenario, medians).", ""]
order = ["direct", "nginx", "haproxy", "weir", "tensorzero", "portkey", "litellm"]
for scen in dict.fromkeys(r["scenario"] for r in rows):
    lines += [f"## {scen}", "",
              "| target | rps | errors | p50 ms | p99 ms | added p99 ms | ITL p99 ms | CPU µs/req | rps vs nginx | CPU vs nginx |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    d = cells.get((scen, "direct")); n = cells.get((scen, "nginx"))
    for t in order:
        v = cells.get((scen, t))
        if not v:
            continue
        f = lambda x, fmt: ("—" if x is None else fmt.format(x))
        added = med(v, "p99") - med(d, "p99") if d and t != "direct" else None
        rvs = med(v, "rps") / med(n, "rps") if n and t not in ("direct",) else None
        cvs = med(v, "cpu_us") / med(n, "cpu_us") if n and t not in ("direct",) and med(n, "cpu_us") else None
        lines.append(f"| {t} | {med(v,'rps'):,.0f} | {sum(x['errors'] for x in v)} | {med(v,'p50'):.3f} | {med(v,'p99'):.3f} | "
                     f"{f(added, '{:+.3f}')} | {f(med(v,'itl99'), '{:.2f}')} | {'—' if t == 'direct' else f(med(v,'cpu_us'), '{:.1f}')} | "
                     f"{f(rvs, '{:.2f}×')} | {f(cvs, '{:.2f}×')} |")
    lines.append("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

# Plots: one pair per scenario, the rounds of each target merged by median.
mkdir -p "$OUT_DIR/plots"
for s in $SCENARIOS; do
  metric=request
  [ "$s" = streams ] && metric=itl
  series=()
  for t in $TARGETS; do
    for f in "$OUT_DIR"/raw/"$s-$t"-r*.json; do [ -e "$f" ] && series+=("$t=$f"); done
  done
  [ ${#series[@]} -gt 0 ] || continue
  ./target/release/weir-loadtest plot --out "$OUT_DIR/plots" --name "$s" --metric "$metric" \
    --title "$s ($ROUNDS rounds, medians)" "${series[@]}" || echo "WARNING: no plot for $s"
done
echo "==> results in $OUT_DIR"
