# Shell helpers shared by the scripts in this folder (sourced, not run).

# A TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The machine and the code a benchmark ran on (one `key: value` per line).
machine_info() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "weir commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
}

# CPU clock ticks (utime+stime) used so far by the given processes and their children.
proc_ticks() {
  local total=0 p
  for p in "$@" $(for r in "$@"; do pgrep -P "$r" || true; done); do
    if [ -r "/proc/$p/stat" ]; then
      total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$total"
}

# Writes DIR/nginx.conf: one worker proxying to MOCK_ADDR (keepalive upstream,
# proxy_buffering off) on 127.0.0.1:PORT. MASTER is `on` or `off` (off: the process
# started is the worker itself, whose CPU time a script can read directly).
nginx_proxy_conf() {
  local dir="$1" mock="$2" port="$3" master="${4:-on}"
  mkdir -p "$dir/logs"
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process $master;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream mock { server $mock; keepalive 64; }
  server {
    listen 127.0.0.1:$port reuseport;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
}

# The API key every `weir-full` benchmark request carries (wrk sends it from WRK_AUTH).
BENCH_KEY="wk-bench-0123456789abcdefghijklmnopqrstuv"

# Prints BENCH_KEY's stored hash, as `weir --hash-key` of BIN (default: the release
# build) makes it: weir_full_config's KEY_HASH.
bench_key_hash() {
  echo "$BENCH_KEY" | "${1:-./target/release/weir}" --hash-key | sed -n 's/^hash: //p'
}

# Writes FILE: the `weir-full` config (an API key, consumer, consumer x model and route
# limits set high enough never to refuse, a price table, a guard + PII policy) in front of
# MOCK_ADDR, for the key whose stored hash is KEY_HASH.
weir_full_config() {
  local file="$1" mock="$2" hash="$3"
  cat > "$file" <<CONF
listeners: ["127.0.0.1:0"]
upstreams: [{name: mock, targets: ["http://$mock"]}]
routes:
  - name: chat
    path_prefix: /
    upstream: mock
    policy: standard
    limits: [{window: second, requests: 100000000}]
prices:
  - {models: ["m", "gpt-4o*"], input: 2.5, output: 10}
policies:
  - name: standard
    guard:
      deny: [{id: injection, phrases: ["ignore previous instructions", "reveal your system prompt"]}]
    redact:
      request: {kinds: {email: mask, phone: mask, card: block, ssn: block, secret_key: block}}
consumers:
  - name: bench
    keys: [{id: k1, hash: "$hash"}]
    limits:
      - {window: minute, requests: 100000000, tokens: 100000000000}
      - {window: day, tokens: 100000000000, cost: 1000000, per_model: true}
CONF
}

# Waits until LOG says "listening on [http://]HOST:PORT" (weir, weir-admin and the
# mock all do) and prints HOST:PORT; TRIES checks 50 ms apart (default 200: 10 s).
listen_addr() {
  local log="$1" tries="${2:-200}"
  for _ in $(seq 1 "$tries"); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.05; done
  grep -oE 'listening on (http://)?[0-9.]+:[0-9]+' "$log" | head -1 | sed -E 's#listening on (http://)?##'
}
