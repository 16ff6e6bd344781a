#!/usr/bin/env bash
# Interleaved A/B of the request-inspection criterion benches (dataplane/benches/
# inspect.rs) between two commits: builds each commit's bench binary in a git worktree,
# then runs them in turn, pinned to one core, ROUNDS times, and reports each bench's
# median of the per-run estimates and the ratio B/A. Benches present in only one
# commit are reported for that one.
#
#   OUT_DIR=bench-results/DATE-x [ROUNDS=5] [FILTER=inspect_4KB] [CORE=1] \
#     scripts/bench-inspect-ab.sh REV_A [REV_B]        # REV_B defaults to the work tree
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: scripts/bench-inspect-ab.sh REV_A [REV_B]}
B=${2:-}
OUT_DIR=${OUT_DIR:?set OUT_DIR}
ROUNDS=${ROUNDS:-5}
FILTER=${FILTER:-inspect_4KB}
CORE=${CORE:-1}
mkdir -p "$OUT_DIR/raw"
WORK=$(mktemp -d)
trap 'git worktree remove --force "$WORK/a" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

# bench_bin DIR TARGET_DIR: builds the inspect bench of DIR and prints its path.
bench_bin() {
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench -p weir-dataplane \
        --bench inspect --no-run --message-format=json 2>/dev/null) |
        python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="inspect" and m.get("executable"):
        print(m["executable"])' | tail -1
}

git worktree add -f --detach "$WORK/a" "$A" >/dev/null
# Other commits build into their own target dir (AB_TARGET) so that neither build
# invalidates the other.
AB_TARGET=${AB_TARGET:-$PWD/target-ab}
bench_bin "$WORK/a" "$AB_TARGET" >"$WORK/a.bin"
cp "$(cat "$WORK/a.bin")" "$WORK/bench-a"
if [ -n "$B" ]; then
    git worktree add -f --detach "$WORK/b" "$B" >/dev/null
    bench_bin "$WORK/b" "$AB_TARGET" >"$WORK/b.bin"
    git worktree remove --force "$WORK/b" >/dev/null
else
    bench_bin "$PWD" "$PWD/target" >"$WORK/b.bin"
fi
cp "$(cat "$WORK/b.bin")" "$WORK/bench-b"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
    echo "kernel: $(uname -r)"
    echo "A: $(git rev-parse --short "$A")"
    echo "B: ${B:+$(git rev-parse --short "$B")}${B:-work tree $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)}"
    echo "filter: $FILTER, rounds: $ROUNDS, pinned to core $CORE"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT_DIR/machine.txt"

for r in $(seq 1 "$ROUNDS"); do
    for side in a b; do
        echo "round $r: $side" >&2
        taskset -c "$CORE" "$WORK/bench-$side" --bench --noplot --warm-up-time 1 \
            --measurement-time 3 "$FILTER" >"$OUT_DIR/raw/$side-$r.txt" 2>&1
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT_DIR/machine.txt"

python3 - "$OUT_DIR" "$ROUNDS" >"$OUT_DIR/table.md" <<'EOF'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
unit = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
res = {"a": {}, "b": {}}
for side in "ab":
    for r in range(1, rounds + 1):
        name = None
        for line in open(f"{out}/raw/{side}-{r}.txt", encoding="utf-8"):
            m = re.match(r"^(\S+)\s*(time:.*)?$", line.rstrip())
            if m and not line.startswith(" ") and "/" in m.group(1):
                name = m.group(1)
            t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
            if t and name:
                res[side].setdefault(name, []).append(float(t.group(1)) * unit[t.group(2)])
                name = None
names = sorted(set(res["a"]) | set(res["b"]), key=lambda n: (n.split("/")[0], n))
print("| bench | A median µs | B median µs | B/A | runs A, B |")
print("|---|---:|---:|---:|---|")
for n in names:
    a, b = res["a"].get(n, []), res["b"].get(n, [])
    ma = statistics.median(a) if a else None
    mb = statistics.median(b) if b else None
    ratio = f"{mb / ma:.2f}" if ma and mb else ""
    f = lambda v: f"{v:.3f}" if v is not None else "—"
    print(f"| {n} | {f(ma)} | {f(mb)} | {ratio} | {len(a)}, {len(b)} |")
EOF
cat "$OUT_DIR/table.md"
