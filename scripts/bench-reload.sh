#!/usr/bin/env bash
# Live-reload benchmark: time from weir-admin's 200 to the new config answering on every
# shard (100 changes, p50/p99), and 100 changes while `weir-loadtest run` drives an
# open-loop load of RATE requests/s (failed requests, latency during reloads vs without).
# Writes bench-results/DATE-reload/ (or $OUT_DIR).
#
#   scripts/bench-reload.sh            CHANGES=100 SHARDS=2 RATE=2000 LOAD_SECONDS=20
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
CHANGES="${CHANGES:-100}"
SHARDS="${SHARDS:-2}"
LOAD_SECONDS="${LOAD_SECONDS:-20}"
RATE="${RATE:-2000}"
OUT_DIR="${OUT_DIR:-bench-results/$(date +%Y-%m-%d)-reload}"
echo "==> building release"
cargo build --release --bins -q
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
wait_line() { for _ in $(seq 1 200); do grep -q "$2" "$1" && return 0; sleep 0.05; done; cat "$1"; return 1; }

export WEIR_ADMIN_TOKEN="bench-reload-token-0123456789"
./target/release/weir-loadtest mock --listen 127.0.0.1:0 >"$WORK/mock.log" 2>&1 & PIDS+=($!)
wait_line "$WORK/mock.log" "listening on"
MOCK="$(grep -o 'listening on [0-9.:]*' "$WORK/mock.log" | awk '{print $3}')"
./target/release/weir-admin --listen 127.0.0.1:0 --data "$WORK/admin" >"$WORK/admin.log" 2>&1 & PIDS+=($!)
wait_line "$WORK/admin.log" "listening on"
ADMIN="$(grep -o 'http://[0-9.:]*' "$WORK/admin.log" | head -1)"
curl -fsS -X PUT "$ADMIN/v1/config" -H "authorization: Bearer $WEIR_ADMIN_TOKEN" --data-binary @- >/dev/null <<YAML
listeners: ["127.0.0.1:0"]
upstreams: [{name: mock, targets: ["$MOCK"]}]
routes: [{upstream: mock}]
YAML
./target/release/weir --control-plane "$ADMIN" --node-id bench --state-dir "$WORK/state" \
  --shards "$SHARDS" >"$WORK/weir.log" 2>&1 & PIDS+=($!)
wait_line "$WORK/weir.log" "listening on"
WEIR="$(grep -o 'http://[0-9.:]*' "$WORK/weir.log" | head -1)"

{
  machine_info
  echo "shards: $SHARDS; changes: $CHANGES; load: weir-loadtest run --mode open --rate $RATE --workload chat for ${LOAD_SECONDS}s"
  echo "load before: $(cat /proc/loadavg)"
} >"$OUT_DIR/machine.txt"

changes() {  # $1 = label; measures propagation of $CHANGES changes, appends to $OUT_DIR/$1.csv
  python3 - "$ADMIN" "$WEIR" "$SHARDS" "$CHANGES" "$OUT_DIR/$1.csv" <<'PY'
import http.client, json, os, sys, time
admin, weir, shards, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tok = os.environ["WEIR_ADMIN_TOKEN"]
ah, ap = admin.replace("http://", "").split(":"); wh, wp = weir.replace("http://", "").split(":")
def call(method, path, body=None):
    c = http.client.HTTPConnection(ah, int(ap), timeout=10)
    c.request(method, path, body=body, headers={"authorization": "Bearer " + tok})
    r = c.getresponse(); data = r.read(); c.close(); return r.status, data
status, cur = call("GET", "/v1/config"); cfg = json.loads(cur)
rows = []
for i in range(n):
    cfg["model_aliases"] = {"bench-alias": "v%d" % i}
    status, body = call("PUT", "/v1/config", json.dumps(cfg))
    t0 = time.perf_counter()
    assert status == 200, body
    want = json.loads(body)["version"]
    seen = set()
    while len(seen) < shards:
        c = http.client.HTTPConnection(wh, int(wp), timeout=5)  # a new connection: any shard
        c.request("GET", "/healthz"); h = json.loads(c.getresponse().read()); c.close()
        if h["config_version"] >= want:
            seen.add(h["shard"])
        if time.perf_counter() - t0 > 10:
            sys.exit("change %d not served by all shards after 10 s" % want)
    rows.append((want, (time.perf_counter() - t0) * 1000))
    time.sleep(0.05)
with open(out, "w") as f:
    f.write("version,ms_to_all_shards\n")
    for v, ms in rows: f.write("%d,%.3f\n" % (v, ms))
ms = sorted(r[1] for r in rows)
pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print("changes=%d p50=%.2fms p99=%.2fms max=%.2fms" % (len(ms), pick(0.5), pick(0.99), ms[-1]))
PY
}

echo "==> $CHANGES changes, idle gateway"
changes idle | tee "$OUT_DIR/idle.txt"

load() {  # $1 = label
  ./target/release/weir-loadtest run --url "$WEIR" --mode open --rate "$RATE" \
    --duration "${LOAD_SECONDS}s" --workload chat --json "$OUT_DIR/load-$1.json" >"$OUT_DIR/load-$1.txt" 2>&1
}
echo "==> baseline: open loop at $RATE rps without changes"
load baseline
echo "==> open loop at $RATE rps with $CHANGES changes"
load reloads &
LOAD=$!
sleep 1
changes under-load | tee "$OUT_DIR/under-load.txt"
wait "$LOAD"
echo "load after: $(cat /proc/loadavg)" >>"$OUT_DIR/machine.txt"
python3 - "$OUT_DIR" <<'PY' | tee "$OUT_DIR/summary.txt"
import json, sys
out = sys.argv[1]
for label in ["baseline", "reloads"]:
    r = json.load(open(f"{out}/load-{label}.json"))
    c, lat = r["counts"], r["latency_ms"]["request"]
    print(f"{label:9s} sent={c['sent']} ok={c['ok']} errors={c['errors']} by_kind={c['errors_by_kind']} "
          f"status={c['status']} rps={r['rps']['achieved']:.0f} p50={lat['p50']:.3f}ms p99={lat['p99']:.3f}ms max={lat['max']:.3f}ms")
PY
cat "$OUT_DIR/idle.txt" "$OUT_DIR/under-load.txt" >>"$OUT_DIR/summary.txt"
echo "==> results in $OUT_DIR"
