#!/usr/bin/env python3
"""Table of criterion medians per bench from raw/{old,new}-N.txt (run.sh's output)."""
import glob, re, statistics, os
os.chdir(os.path.dirname(os.path.abspath(__file__)))
res = {}
for f in sorted(glob.glob('raw/*.txt')):
    v, _ = os.path.basename(f)[:-4].split('-')
    for m in re.finditer(r'^(inspect_\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]', open(f).read(), re.M):
        val, unit = float(m.group(2)), m.group(3)
        us = val / 1000 if unit == 'ns' else (val if unit in ('µs', 'us') else val * 1000)
        res.setdefault(m.group(1), {}).setdefault(v, []).append(us)
print('| bench | before (µs, 3 runs) | after (µs, 3 runs) | median after/before |')
print('|---|---|---|---|')
for name, d in res.items():
    o, n = d.get('old', []), d.get('new', [])
    f = lambda xs: ', '.join(f'{x:.3f}' for x in xs)
    print(f'| {name} | {f(o)} | {f(n)} | {statistics.median(n) / statistics.median(o):.3f} |')
