#!/usr/bin/env bash
# Quick start: builds Weir in release, starts the bundled mock inference server,
# weir-admin holding the example config, and `weir` subscribed to it; prints how to call
# it and how to change the config live; stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

echo "==> building (release; the first build takes a few minutes)"
cargo build --release --bins

PORT="${WEIR_PORT:-8080}"
if port_in_use "$PORT"; then
  echo "==> port $PORT is taken; picking a free one"
  PORT="$(free_port)"
fi

MOCK_LOG="$(mktemp)"
ADMIN_LOG="$(mktemp)"
./target/release/weir-loadtest mock --listen 127.0.0.1:0 --model mock-small >"$MOCK_LOG" 2>&1 &
MOCK_PID=$!
WEIR_PID=""
ADMIN_PID=""
STATE="$(mktemp -d)"
cleanup() {
  [ -n "$WEIR_PID" ] && kill "$WEIR_PID" 2>/dev/null || true
  [ -n "$ADMIN_PID" ] && kill "$ADMIN_PID" 2>/dev/null || true
  kill "$MOCK_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$MOCK_LOG" "$ADMIN_LOG" "$STATE"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
  grep -q "listening on" "$MOCK_LOG" && break
  kill -0 "$MOCK_PID" 2>/dev/null || { cat "$MOCK_LOG"; exit 1; }
  sleep 0.05
done
MOCK_ADDR="$(grep -o 'listening on [0-9.:]*' "$MOCK_LOG" | head -1 | awk '{print $3}')"
echo "==> mock inference server on http://$MOCK_ADDR"

# The control plane: the admin stores the config; weir subscribes to it.
export WEIR_ADMIN_TOKEN="quickstart-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
./target/release/weir-admin --listen 127.0.0.1:0 --data "$STATE/admin" >"$ADMIN_LOG" 2>&1 &
ADMIN_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$ADMIN_LOG" && break
  kill -0 "$ADMIN_PID" 2>/dev/null || { cat "$ADMIN_LOG"; exit 1; }
  sleep 0.05
done
ADMIN="$(grep -o 'http://[0-9.:]*' "$ADMIN_LOG" | head -1)"
echo "==> weir-admin on $ADMIN"

# The example config, with this run's addresses, becomes config version 1.
sed -e "s|\${WEIR_LISTEN:-127.0.0.1:8080}|127.0.0.1:$PORT|" -e "s|\${WEIR_MOCK_ADDR:-127.0.0.1:8000}|$MOCK_ADDR|" \
  dataplane/config/weir.example.yaml >"$STATE/weir.yaml"
code="$(curl -sS -o "$STATE/put.json" -w '%{http_code}' -X PUT "$ADMIN/v1/config" \
  -H "authorization: Bearer $WEIR_ADMIN_TOKEN" -H 'content-type: application/yaml' \
  --data-binary @"$STATE/weir.yaml")"
[ "$code" = 200 ] || { echo "weir-admin refused the config ($code):"; cat "$STATE/put.json"; exit 1; }

./target/release/weir --control-plane "$ADMIN" --node-id quickstart --state-dir "$STATE/weir" &
WEIR_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$WEIR_PID" 2>/dev/null || exit 1
  sleep 0.05
done

cat <<MSG

Weir is running on http://127.0.0.1:$PORT in front of the mock at http://$MOCK_ADDR,
with its config in weir-admin at $ADMIN (from dataplane/config/weir.example.yaml). Try:

  curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'

  curl -sN http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"mock-small","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'

Change the config live (every shard picks it up, no restart), e.g. add a model alias:

  export WEIR_ADMIN_TOKEN=$WEIR_ADMIN_TOKEN
  curl -s $ADMIN/v1/config -H "authorization: Bearer \$WEIR_ADMIN_TOKEN" > /tmp/weir.json
  python3 -c 'import json; c=json.load(open("/tmp/weir.json")); c["model_aliases"]["my-model"]="mock-small"; print(json.dumps(c))' \\
    | curl -s -X PUT $ADMIN/v1/config -H "authorization: Bearer \$WEIR_ADMIN_TOKEN" --data-binary @-
  curl -s $ADMIN/v1/nodes -H "authorization: Bearer \$WEIR_ADMIN_TOKEN"

  curl -s http://127.0.0.1:$PORT/healthz

Press Ctrl-C to stop everything.
MSG
wait "$WEIR_PID"
