#!/usr/bin/env python3
"""What each kernel of a greedy decode step adds to the step, from a kernel_trace file (tools/kernel_trace.cpp).

Launched under the one before it (programmatic dependent launch), a kernel starts early and overlaps its
predecessor, so its own duration says little about the step; its end minus the previous kernel's end is what it
adds. Steps are cut after the final argmax (the one-block top-k kernel); the first two are dropped (warm-up).

  decode_step_trace.py TRACE [--kernels N]
"""
import argparse
import collections
import re
import shutil
import statistics
import subprocess
import sys


def demangle(names):
    if not shutil.which('c++filt'):
        return {n: n for n in names}
    out = subprocess.run(['c++filt'], input='\n'.join(names), capture_output=True, text=True).stdout.split('\n')
    return dict(zip(names, out))


def short(name):
    name = re.sub(r'swrun::cuda::|\(anonymous namespace\)::|attn::|quant::|^void ', '', name)
    return re.sub(r'\(.*', '', name)[:64]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('trace')
    ap.add_argument('--kernels', type=int, default=12, help='kernels of the step listed one by one (default 12)')
    args = ap.parse_args()
    try:
        lines = [l.rstrip('\n').split(' ', 6) for l in open(args.trace)]
    except OSError as e:
        sys.exit(f'decode_step_trace: {e}')
    rows = [l for l in lines if len(l) == 7]
    if not rows:
        sys.exit(f'decode_step_trace: {args.trace}: no kernel records')
    names = demangle(sorted({r[6] for r in rows}))
    kernels = sorted((int(s), int(e), int(grid), short(names[n])) for s, e, _, grid, _, _, n in rows)
    steps, step = [], []
    for k in kernels:
        step.append(k)
        if k[3].startswith('top_k_kernel') and k[2] == 1:
            steps.append(step)
            step = []
    steps = steps[2:]
    if not steps:
        sys.exit(f'decode_step_trace: {args.trace}: fewer than three greedy decode steps (no one-block top_k_kernel)')
    med = lambda v: statistics.median(v) / 1000 if v else float('nan')
    print(f'{len(steps)} steps of {statistics.median(len(s) for s in steps):.0f} kernels, first start to last end '
          f'{med([s[-1][1] - s[0][0] for s in steps]):.1f} us (median)')
    duration, adds, early = (collections.defaultdict(list) for _ in range(3))
    for s in steps:
        for i, (start, end, grid, name) in enumerate(s):
            key = (i, name, grid)
            duration[key].append(end - start)
            if i:
                adds[key].append(end - s[i - 1][1])
                early[key].append(s[i - 1][1] - start)
    print(f'\n{"#":>3} {"kernel":64s} {"grid":>6} | {"duration":>8} | {"adds":>6} | '
          'started before the previous end (us)')
    for key in sorted(duration)[:args.kernels]:
        print(f'{key[0]:3d} {key[1]:64s} {key[2]:6d} | {med(duration[key]):8.2f} | {med(adds.get(key)):6.2f} | '
              f'{med(early.get(key)):8.2f}')
    total, count, dur = collections.defaultdict(float), collections.Counter(), collections.defaultdict(float)
    for key, v in adds.items():
        kind = key[1:]
        total[kind] += med(v)
        count[kind] += 1
        dur[kind] += med(duration[key])
    print(f'\n{"kernel":64s} {"grid":>6} {"count":>5} {"adds a step":>11} {"each":>6} {"duration":>8} (us)')
    for kind, t in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f'{kind[0]:64s} {kind[1]:6d} {count[kind]:5d} {t:11.1f} {t / count[kind]:6.2f} '
              f'{dur[kind] / count[kind]:8.2f}')
    print(f'{"total":64s} {"":6s} {"":5s} {sum(total.values()):11.1f}')


if __name__ == '__main__':
    main()
