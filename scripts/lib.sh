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
