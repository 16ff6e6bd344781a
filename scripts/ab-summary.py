#!/usr/bin/env python3
"""Summarizes scripts/bench-ab.sh's CSV: medians per target, and the per-round ratios
(after/before, each against nginx) that this noisy VM needs (rounds drift together).

    scripts/bench-ab.sh > ab.csv && scripts/ab-summary.py ab.csv

Rounds missing a target (a run cut short) are left out.
"""
import csv
import statistics as st
import sys


def main(path):
    rounds = {}
    for row in csv.DictReader(open(path)):
        rounds.setdefault(row["round"], {})[row["target"]] = row
    whole = [r for r in rounds.values() if {"nginx", "before", "after"} <= r.keys()]
    if not whole:
        sys.exit(f"{path}: no complete round")
    print(f"{len(whole)} complete rounds")
    for t in ("nginx", "before", "after"):
        med = {k: st.median(float(r[t][k]) for r in whole)
               for k in ("rps", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req")}
        print(f"{t:7s} rps {med['rps']:8.0f}  CPU µs/request {med['cpu_us_per_req']:5.2f}"
              f" (user {med['user_us_per_req']:4.2f}, sys {med['sys_us_per_req']:4.2f})")
    for k, name in (("rps", "rps"), ("cpu_us_per_req", "CPU/request")):
        pairs = [("after", "before"), ("before", "nginx"), ("after", "nginx")]
        for a, b in pairs:
            rs = [float(r[a][k]) / float(r[b][k]) for r in whole]
            lower = sum(x < 1 for x in rs)
            print(f"{name:11s} {a}/{b}: median {st.median(rs):.3f} (range {min(rs):.3f}-{max(rs):.3f},"
                  f" below 1 in {lower}/{len(rs)})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
