#!/usr/bin/env bash
# Quick start: builds Weir in release, starts the bundled mock inference server and
# `weir` with the example config, prints how to call it, and stops both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

echo "==> building (release; the first build takes a few minutes)"
cargo build --release --bins

PORT="${WEIR_PORT:-8080}"
if port_in_use "$PORT"; then
  echo "==> port $PORT is taken; picking a free one"
  PORT="$(free_port)"
fi

MOCK_LOG="$(mktemp)"
./target/release/weir-loadtest mock --listen 127.0.0.1:0 --model mock-small >"$MOCK_LOG" 2>&1 &
MOCK_PID=$!
WEIR_PID=""
cleanup() {
  [ -n "$WEIR_PID" ] && kill "$WEIR_PID" 2>/dev/null || true
  kill "$MOCK_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$MOCK_LOG"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
  grep -q "listening on" "$MOCK_LOG" && break
  kill -0 "$MOCK_PID" 2>/dev/null || { cat "$MOCK_LOG"; exit 1; }
  sleep 0.05
done
MOCK_ADDR="$(grep -o 'listening on [0-9.:]*' "$MOCK_LOG" | head -1 | awk '{print $3}')"
echo "==> mock inference server on http://$MOCK_ADDR"

export WEIR_MOCK_ADDR="$MOCK_ADDR" WEIR_LISTEN="127.0.0.1:$PORT"
./target/release/weir --config dataplane/config/weir.example.yaml &
WEIR_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$WEIR_PID" 2>/dev/null || exit 1
  sleep 0.05
done

cat <<MSG

Weir is running on http://127.0.0.1:$PORT in front of the mock at http://$MOCK_ADDR
(config: dataplane/config/weir.example.yaml). Try:

  curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'

  curl -sN http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"mock-small","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'

  curl -s http://127.0.0.1:$PORT/healthz

Press Ctrl-C to stop both.
MSG
wait "$WEIR_PID"
