#!/usr/bin/env python3
"""Attention benchmark sweep: swbench (our kernels) beside the PyTorch anchors, merged into one table.

On the GPU machine (one call runs both and merges):
    python3 bench/sweep.py --swbench BIN/swbench --out DIR [--n 512,...] [--anchor-n 4096,32768]
                           [--swbench-budget-s S] [--anchor-budget-s S]
Anywhere, from a saved sweep (needs no GPU; without --no-plots it needs matplotlib):
    python3 bench/sweep.py --from-json DIR/sweep.json --out DIR2 [--no-plots]

Writes into --out: sweep.json (raw rows of both sources + metadata; what --from-json reads), sweep.csv,
sweep.md (headline table + full table), runtime.svg and memory.svg, and the logs swbench.log and anchors.log.
Exit status 1 when a row of ours failed its spot check, errored or was lost to a swbench abort; OOM rows,
unsupported shapes and rows cut by a time budget are marked in the table but are not failures.
"""
import argparse
import csv
import datetime
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# name -> heads, kv heads, head_dim, (left, right) window of the sliding impl, swbench --shapes spec.
SHAPES = {
    "gemma3": dict(hq=4, hkv=1, d=256, left=511, right=0, spec="gemma3"),
    "mistral": dict(hq=32, hkv=8, d=128, left=4095, right=0, spec="mistral"),
    "llama64": dict(hq=32, hkv=4, d=64, left=1023, right=0, spec="llama64"),
    # The encoder-style toy of the original experiment: bidirectional window of +-2 keys. swbench runs its fused
    # rows zero-padded to head_dim 64 and its dense rows as full bidirectional attention.
    "toy": dict(hq=4, hkv=4, d=16, left=2, right=2, spec="toy:4/4/16/2:2"),
}
OUR_IMPLS = ["naive", "dense", "sliding"]
IMPL_LABELS = {
    "naive": "dense-naive (materialized)",
    "dense": "dense (fused)",
    "sliding": "sliding (fused)",
    "torch:sdpa_flash_dense": "PyTorch SDPA flash (FA2) dense",
    "torch:sdpa_cudnn_dense": "PyTorch SDPA cuDNN dense",
    "torch:flex_sliding": "FlexAttention sliding",
    "torch:flex_dense": "FlexAttention dense",
    "torch:naive_materialized": "PyTorch materialized dense",
    "cudnn:sliding": "cuDNN SDPA sliding (cudnn-frontend band)",
    "cudnn:dense": "cuDNN SDPA dense (cudnn-frontend)",
}
# Our time divided by the anchor's: below 1 means ours is faster.
RATIO_ANCHORS = {
    "vs_cudnn_dense": "torch:sdpa_cudnn_dense",
    "vs_fa2_dense": "torch:sdpa_flash_dense",
    "vs_flex_sliding": "torch:flex_sliding",
    "vs_cudnn_sliding": "cudnn:sliding",
    "vs_cudnn_graph_dense": "cudnn:dense",
}
# Statuses of our rows that make the sweep fail (see module docstring).
FAILING = {"FAIL", "ERROR", "aborted"}
CSV_FIELDS = ["shape", "N", "impl", "source", "status", "ms", "tflops", "speedup_vs_naive", "speedup_vs_dense",
              "mem_bytes", "mem_source", "max_rel_err", "reps", "vs_cudnn_dense", "vs_fa2_dense",
              "vs_flex_sliding", "vs_cudnn_sliding", "vs_cudnn_graph_dense", "note"]
DEFAULT_NS = [512 << i for i in range(9)]  # 512 ... 131072


class SweepError(Exception):
    pass


# ---------------------------------------------------------------- arguments

def int_list(text):
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: '{text}'")
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"lengths must be positive: '{text}'")
    return values


def shape_list(text):
    names = [x for x in text.split(",") if x]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown shape {unknown[0]} (known: {', '.join(SHAPES)})")
    return names


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--from-json", type=Path, help="re-render a saved sweep.json instead of running anything")
    p.add_argument("--swbench", type=Path, help="the swbench binary (run mode)")
    p.add_argument("--shapes", type=shape_list, default=list(SHAPES), help="comma list of " + ",".join(SHAPES))
    p.add_argument("--n", type=int_list, default=DEFAULT_NS, help="lengths for all impls (default 512..131072)")
    p.add_argument("--sliding-extra-n", type=lambda t: [] if t.strip() == "0" else int_list(t), default=[262144],
                   help="further lengths for the sliding impl alone (default 262144; '0' for none)")
    p.add_argument("--impls", default=",".join(OUR_IMPLS), help="swbench impls (default naive,dense,sliding)")
    p.add_argument("--target-ms", type=int, default=200, help="swbench timing budget per row")
    p.add_argument("--swbench-extra", default="", help="further swbench flags, one shell-quoted string")
    p.add_argument("--swbench-budget-s", type=float, default=150, help="wall time for all swbench runs")
    p.add_argument("--anchors", type=Path, default=BENCH_DIR / "attn_anchors.py", help="the anchor script")
    p.add_argument("--anchor-n", default="4096,32768,131072",
                   help="lengths for the anchors (NS of attn_anchors.py), or 'none'")
    p.add_argument("--anchor-budget-s", type=float, default=150, help="wall time for the anchor script")
    p.add_argument("--commit", default=os.environ.get("SWRUN_COMMIT", ""), help="commit measured (default: git)")
    p.add_argument("--no-plots", action="store_true", help="skip the SVG plots (no matplotlib needed)")
    args = p.parse_args(argv)
    if args.from_json is None and args.swbench is None:
        p.error("give --swbench BIN (run mode) or --from-json FILE (re-render)")
    args.sliding_extra_n = [n for n in args.sliding_extra_n if n > 0 and n not in args.n]
    args.anchor_n = [] if args.anchor_n == "none" else int_list(args.anchor_n)
    args.impls = [x for x in args.impls.split(",") if x]
    return args


# ---------------------------------------------------------------- helpers

def computed_bytes(shape, n, impl):
    """Bytes a row needs, counted as swbench counts them: bf16 Q, K, V, O (for the fused impls at head_dim
    zero-padded to 64, 128 or 256), plus for the materialized baseline its workspace of N x N fp32 scores and
    16-bit probabilities per head."""
    s = SHAPES.get(shape)
    if s is None:
        return None
    d = s["d"] if impl == "naive" else min([k for k in (64, 128, 256) if k >= s["d"]] or [s["d"]])
    io = 2 * n * d * (2 * s["hq"] + 2 * s["hkv"])
    return io + ((4 + 2) * n * n * s["hq"] if impl == "naive" else 0)


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def run_logged(cmd, log, deadline, env=None):
    """Runs cmd with stdout+stderr appended to log; kills its process group at the deadline.
    Returns (exit code or None on timeout, the text it printed)."""
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(str(c) for c in cmd)}\n")
        f.flush()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    with open(log) as f:
        f.seek(start)
        return rc, f.read()


def placeholder(shape, n, impl, source, status, note):
    return dict(shape=shape, N=n, impl=impl, source=source, status=status, ms=None, tflops=None, note=note)


# ---------------------------------------------------------------- swbench

# A row of swbench's stdout table: shape impl N ms TFLOP/s vs-dense vs-naive MiB reps check note.
# shape, impl, N, ms, TFLOP/s, KV-GB/s, vs-dense, vs-naive, MiB, reps, check, note
SWBENCH_LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s?(.*)$")


def num_or_none(text):
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def swbench_row(shape, r):
    """One row of swbench's JSON (or salvaged stdout) in our schema; unsupported shapes are marked as such."""
    note = r.get("note") or ""
    status = r.get("check") or "-"
    if status == "-" and finite(r.get("ms")):
        status = "unchecked"
    if status == "ERROR" and re.search(r"head_dim \d+ not supported", note):
        status = "unsupported"
        note = f"unsupported by swbench: head_dim {SHAPES[shape]['d']} ({note})"
    return dict(shape=shape, N=int(r["N"]), impl=r["impl"], source="swbench", status=status, ms=r.get("ms"),
                tflops=r.get("tflops"), speedup_vs_naive=r.get("vs_naive"), speedup_vs_dense=r.get("vs_dense"),
                mem_bytes=r.get("bytes"), max_rel_err=r.get("max_rel_err"), reps=r.get("reps"), note=note)


def salvage_stdout(shape, text):
    """Rows swbench printed before it died (it prints each length's rows just before rewriting its JSON)."""
    rows = []
    for line in text.splitlines():
        m = SWBENCH_LINE.match(line)
        if not m or line.startswith("shape ") or m.group(1) != shape:
            continue
        mib = num_or_none(m.group(9))
        rows.append(swbench_row(shape, dict(
            N=int(m.group(3)), impl=m.group(2), ms=num_or_none(m.group(4)), tflops=num_or_none(m.group(5)),
            vs_dense=num_or_none(m.group(7)), vs_naive=num_or_none(m.group(8)),
            bytes=None if mib is None else mib * 1048576, reps=int(m.group(10)), check=m.group(11),
            note=(m.group(12).strip() + " (salvaged from stdout)").strip())))
    return rows


def abort_reason(text, rc):
    lines = [ln for ln in text.splitlines() if ln.strip() and not SWBENCH_LINE.match(ln)]
    last = lines[-1].strip() if lines else ""
    return f"swbench exited with {rc}: {last}" if last else f"swbench exited with {rc}"


def argument_rejected(shape, reason):
    """Status and note of rows whose shape swbench refused to parse (e.g. the toy's 'L,R' window, which its
    comma-separated --shapes list splits apart)."""
    if not re.search(r"swbench: (shape|bad|unknown) ", reason):
        return "aborted", reason
    s = SHAPES[shape]
    missing = [f"head_dim {s['d']}"] if s["d"] not in (64, 128, 256) else []
    if s["right"] > 0:
        missing.append(f"bidirectional window -{s['left']}/+{s['right']}")
    return "unsupported", f"unsupported by swbench: {' and '.join(missing) or 'shape'} ({reason})"


def run_swbench(args, shape, impls, ns, deadline, tmp, log):
    """All rows of one shape over ns. swbench runs again after an abort (a crash, or an error outside a row)
    from the next length on, so one bad length costs only its own rows."""
    rows, todo = [], list(ns)
    while todo:
        if deadline - time.monotonic() < 2:
            rows += [placeholder(shape, n, i, "swbench", "not run", "swbench time budget spent")
                     for n in todo for i in impls]
            break
        out_json = tmp / f"swbench-{shape}-{todo[0]}.json"
        cmd = [args.swbench, "--shapes", SHAPES[shape]["spec"], "--impls", ",".join(impls),
               "--n", ",".join(map(str, todo)), "--target-ms", str(args.target_ms), "--json", out_json,
               *shlex.split(args.swbench_extra)]
        rc, text = run_logged(cmd, log, deadline)
        got = []
        if out_json.exists():  # rewritten after every length, so it holds the finished ones even after a kill
            try:
                data = json.loads(out_json.read_text())
            except json.JSONDecodeError as e:
                raise SweepError(f"swbench wrote unreadable JSON {out_json}: {e}")
            got = [swbench_row(shape, r) for r in data["rows"]]
            args.meta.setdefault("device", data.get("device"))
        in_json = {r["N"] for r in got}
        got += [r for r in salvage_stdout(shape, text) if r["N"] not in in_json]
        rows += got
        done = {r["N"] for r in got}
        todo = [n for n in todo if n not in done]
        if not todo:
            break
        if rc is None:
            rows += [placeholder(shape, n, i, "swbench", "not run", "swbench time budget spent")
                     for n in todo for i in impls]
            break
        reason = abort_reason(text, rc)
        if not got and "device:" not in text:  # swbench stopped before any GPU work: retrying cannot help
            status, note = argument_rejected(shape, reason)
            rows += [placeholder(shape, n, i, "swbench", status, note) for n in todo for i in impls]
            break
        status = "OOM" if re.search(r"out of memory|cudaMalloc", reason, re.I) else "aborted"
        rows += [placeholder(shape, todo[0], i, "swbench", status, reason) for i in impls]
        todo = todo[1:]
    return rows


def sweep_swbench(args, tmp, log):
    deadline = time.monotonic() + args.swbench_budget_s
    rows = []
    for shape in args.shapes:
        rows += run_swbench(args, shape, args.impls, args.n, deadline, tmp, log)
        if "sliding" in args.impls and args.sliding_extra_n:
            rows += run_swbench(args, shape, ["sliding"], args.sliding_extra_n, deadline, tmp, log)
    return rows


# ---------------------------------------------------------------- anchors

ANCHOR_LINE = re.compile(r"^(\S+)\s+N=\s*(\d+)\s+(\S+)\s+(?:([0-9.]+) ms\b.*|(ERR:.*))$")


def anchor_impl(name):
    """The anchor script's row name as an impl: cuDNN's own graph API rows are cudnn:*, the rest PyTorch's."""
    return "cudnn:" + name[len("cudnn_"):] if name.startswith("cudnn_") else "torch:" + name


def anchor_row(shape, n, impl, ms, err, rel_err=None):
    if ms is not None:
        status, note = "anchor", ""
    else:
        status = "OOM" if re.search(r"OutOfMemory|out of memory", err or "") else "ERROR"
        note = err or ""
    return dict(shape=shape, N=int(n), impl=anchor_impl(impl), source="anchor", status=status, ms=ms, tflops=None,
                max_rel_err=rel_err, note=note)


def parse_anchor_stdout(text):
    rows = []
    for line in text.splitlines():
        m = ANCHOR_LINE.match(line.strip())
        if m:
            rows.append(anchor_row(m.group(1), m.group(2), m.group(3), num_or_none(m.group(4)), m.group(5)))
    return rows


def run_anchors(args, tmp, log):
    """The anchor script on args.anchor_n; on a timeout the rows it printed so far are kept."""
    if not args.anchor_n:
        return []
    out_json = tmp / "anchors.json"
    env = dict(os.environ, NS=",".join(map(str, args.anchor_n)), PYTHONUNBUFFERED="1")
    if not args.anchors.exists():
        raise SweepError(f"anchor script not found: {args.anchors}")
    rc, text = run_logged([sys.executable, args.anchors, out_json], log,
                          time.monotonic() + args.anchor_budget_s, env)
    if rc == 0 and out_json.exists():
        rows = [anchor_row(r["shape"], r["N"], r["impl"], r.get("ms"), r.get("err"), r.get("rel_err_fp64"))
                for r in json.loads(out_json.read_text())]
        missing_note = "not run by attn_anchors.py"
    else:
        rows = parse_anchor_stdout(text)
        missing_note = "anchor time budget spent" if rc is None else f"attn_anchors.py exited with {rc}"
    have = {(r["shape"], r["N"], r["impl"]) for r in rows}
    shapes = [s for s in args.shapes if s != "toy"]  # the anchor script knows no toy shape
    rows += [placeholder(s, n, impl, "anchor", "not run", missing_note)
             for s in shapes for n in args.anchor_n for impl in RATIO_ANCHORS.values()
             if (s, n, impl) not in have]
    return rows


# ---------------------------------------------------------------- merge

def useful_flops(shape, n, impl):
    """4 * d * Hq * sum_i min(i + 1, W), as swbench and the anchor script count causal rows (the anchors are
    all causal)."""
    s = SHAPES[shape]
    w = s["left"] + 1 if "sliding" in impl else n
    keys = n * (n + 1) // 2 if w >= n else w * (w + 1) // 2 + (n - w) * w
    return 4.0 * s["d"] * s["hq"] * keys


def merge(swbench_rows, anchor_rows):
    """One table: ours and the anchors, with speedups over our naive and dense rows and time ratios to the
    anchors at the same shape and N."""
    rows = [dict(r) for r in swbench_rows + anchor_rows]
    by_key = {(r["shape"], r["N"], r["impl"]): r for r in rows}

    def ms_of(shape, n, impl):
        r = by_key.get((shape, n, impl))
        return r["ms"] if r and finite(r.get("ms")) else None

    for r in rows:
        ms = r.get("ms") if finite(r.get("ms")) else None
        if ms and r["source"] == "anchor" and r["shape"] in SHAPES:
            r["tflops"] = useful_flops(r["shape"], r["N"], r["impl"]) / (ms * 1e-3) / 1e12
        for key, base in (("speedup_vs_naive", "naive"), ("speedup_vs_dense", "dense")):
            b = ms_of(r["shape"], r["N"], base)
            if not finite(r.get(key)):
                r[key] = b / ms if ms and b else None
        for key, anchor in RATIO_ANCHORS.items():
            a = ms_of(r["shape"], r["N"], anchor)
            r[key] = ms / a if ms and a and r["source"] == "swbench" else None
        if r["source"] == "swbench":
            if not r.get("mem_bytes") or r["status"] in ("skip", "not run", "aborted", "unsupported"):
                r["mem_bytes"], r["mem_source"] = computed_bytes(r["shape"], r["N"], r["impl"]), "computed"
            else:
                r["mem_source"] = "swbench"
        else:
            r["mem_bytes"], r["mem_source"] = None, ""
        for k in CSV_FIELDS:
            r.setdefault(k, None)
    order = {s: i for i, s in enumerate(SHAPES)}
    impl_order = {s: i for i, s in enumerate(IMPL_LABELS)}
    rows.sort(key=lambda r: (order.get(r["shape"], 99), r["shape"], r["N"], impl_order.get(r["impl"], 99),
                             r["impl"]))
    return rows


# ---------------------------------------------------------------- outputs

def fmt(x, spec=".3g"):
    return format(x, spec) if finite(x) else ""


def human_bytes(b):
    if not finite(b):
        return ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_FIELDS})


def time_cell(r):
    """A time, or what happened instead; a row that failed its check keeps its time and says so."""
    if r is None:
        return ""
    if finite(r.get("ms")):
        ms = fmt(r["ms"], ".4g")
        return ms if r["status"] in ("ok", "anchor", "unchecked") else f"{ms} ({r['status']})"
    return r["status"]


def headline_table(rows):
    by_key = {(r["shape"], r["N"], r["impl"]): r for r in rows}
    keys = sorted({(r["shape"], r["N"]) for r in rows}, key=lambda k: (list(SHAPES).index(k[0])
                                                                        if k[0] in SHAPES else 99, k))
    cols = [("naive", "dense-naive"), ("dense", "dense"), ("sliding", "sliding"),
            ("cudnn:sliding", "cuDNN sliding"), ("cudnn:dense", "cuDNN dense"),
            ("torch:sdpa_cudnn_dense", "SDPA cuDNN dense"), ("torch:sdpa_flash_dense", "FA2 dense"),
            ("torch:flex_sliding", "Flex sliding")]
    out = ["| shape | N | " + " | ".join(c[1] + " ms" for c in cols) +
           " | sliding speedup vs dense | sliding / cuDNN sliding | dense / cuDNN dense | sliding / Flex |",
           "|" + " --- |" * (len(cols) + 6)]
    for shape, n in keys:
        cells = [time_cell(by_key.get((shape, n, impl))) for impl, _ in cols]
        sl, de = by_key.get((shape, n, "sliding")), by_key.get((shape, n, "dense"))
        out.append(f"| {shape} | {n} | " + " | ".join(cells) + " | " +
                   " | ".join([fmt(sl and sl.get("speedup_vs_dense"), ".3g"),
                               fmt(sl and sl.get("vs_cudnn_sliding"), ".3g"),
                               fmt(de and de.get("vs_cudnn_graph_dense"), ".3g"),
                               fmt(sl and sl.get("vs_flex_sliding"), ".3g")]) + " |")
    return out


def full_table(rows):
    out = ["| shape | N | impl | ms | TFLOP/s | x naive | x dense | memory | check | ours/SDPA-cuDNN | ours/FA2 | "
           "ours/Flex-sliding | ours/cuDNN-sliding | ours/cuDNN-dense | note |", "|" + " --- |" * 15]
    for r in rows:
        mem = human_bytes(r.get("mem_bytes")) + (" (computed)" if r.get("mem_source") == "computed" else "")
        check = r["status"] + (f" ({r['max_rel_err']:.1e})" if finite(r.get("max_rel_err")) else "")
        note = (r.get("note") or "").replace("|", "/")
        out.append("| " + " | ".join([r["shape"], str(r["N"]), r["impl"], fmt(r.get("ms"), ".4g"),
                                       fmt(r.get("tflops"), ".1f"), fmt(r.get("speedup_vs_naive"), ".3g"),
                                       fmt(r.get("speedup_vs_dense"), ".3g"), mem, check,
                                       fmt(r.get("vs_cudnn_dense"), ".3g"), fmt(r.get("vs_fa2_dense"), ".3g"),
                                       fmt(r.get("vs_flex_sliding"), ".3g"), fmt(r.get("vs_cudnn_sliding"), ".3g"),
                                       fmt(r.get("vs_cudnn_graph_dense"), ".3g"), note]) + " |")
    return out


def write_markdown(rows, meta, path):
    lines = [f"# Attention sweep: {meta.get('device') or 'unknown device'}, commit {meta.get('commit') or '?'}",
             "", f"{meta.get('date', '')}. Times are medians in ms (bf16, causal unless the shape says otherwise). "
             "Ratios ours/anchor are time ratios: below 1 means ours is faster.", "", "## Headline", ""]
    lines += headline_table(rows)
    lines += ["", "## All rows", ""] + full_table(rows)
    Path(path).write_text("\n".join(lines) + "\n")


def plot_series(rows, shape, impl, value):
    pts = sorted((r["N"], value(r)) for r in rows if r["shape"] == shape and r["impl"] == impl
                 and finite(value(r)))
    return [p[0] for p in pts], [p[1] for p in pts]


def write_plots(rows, meta, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("sweep: matplotlib is not installed: wrote the data, skipped the plots "
              "(install it and re-render with --from-json, or pass --no-plots)", file=sys.stderr)
        return
    plt.rcParams["svg.hashsalt"] = "swrun-sweep"  # same data, same file
    plt.rcParams["svg.fonttype"] = "none"
    shapes = [s for s in SHAPES if any(r["shape"] == s for r in rows)]
    impls = [i for i in IMPL_LABELS if any(r["impl"] == i for r in rows)]
    title = f"{meta.get('device') or ''}  commit {meta.get('commit') or '?'}"
    colors = {impl: f"C{i}" for i, impl in enumerate(IMPL_LABELS)}  # one colour per impl in every panel

    def panels(fname, ylabel, impls_here, value, extra=None):
        fig, axes = plt.subplots(1, len(shapes), figsize=(4.6 * len(shapes), 4.2), squeeze=False)
        for ax, shape in zip(axes[0], shapes):
            drawn = False
            for impl in impls_here:
                xs, ys = plot_series(rows, shape, impl, value)
                if xs:
                    ax.plot(xs, ys, marker="o", ms=3, ls="--" if impl.startswith("torch:") else "-",
                            color=colors[impl], label=IMPL_LABELS[impl])
                    drawn = True
            if not drawn:
                statuses = sorted({r["status"] for r in rows if r["shape"] == shape and r["impl"] in impls_here})
                ax.text(0.5, 0.5, "no timed rows\n(" + ", ".join(statuses) + ": see the table)",
                        transform=ax.transAxes, ha="center", va="center", fontsize=9)
            if extra:
                extra(ax, shape)
            s = SHAPES[shape]
            ax.set_title(f"{shape} ({s['hq']}/{s['hkv']}/{s['d']})", fontsize=10)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("N (tokens)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        handles = {}  # label -> first handle: the panels share one legend
        for ax in axes[0]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4, fontsize=8)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.12, 1, 0.95))
        fig.savefig(out / fname, format="svg", metadata={"Date": None})
        plt.close(fig)

    def failed_points(ax, shape):
        bad = [r for r in rows if r["shape"] == shape and r["status"] in FAILING and finite(r.get("ms"))]
        if bad:
            ax.scatter([r["N"] for r in bad], [r["ms"] for r in bad], marker="x", color="red", zorder=5,
                       label="failed check")

    def oom_points(ax, shape):
        oom = [r for r in rows if r["shape"] == shape and r["status"] == "OOM" and finite(r.get("mem_bytes"))]
        if oom:
            ax.scatter([r["N"] for r in oom], [r["mem_bytes"] / 2**30 for r in oom], marker="x", color="red",
                       zorder=5, label="needed, out of memory")
        if finite(meta.get("gpu_memory_bytes")):
            ax.axhline(meta["gpu_memory_bytes"] / 2**30, color="gray", ls=":", label="GPU memory")

    panels("runtime.svg", "time (ms, median)", impls, lambda r: r.get("ms"), failed_points)
    ours = [i for i in impls if not i.startswith("torch:")]
    panels("memory.svg", "memory (GiB)", ours,
           lambda r: r["mem_bytes"] / 2**30 if finite(r.get("ms")) and finite(r.get("mem_bytes")) else None,
           oom_points)


def render(data, out, plots):
    rows = merge(data["swbench_rows"], data["anchor_rows"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(dict(data, rows=rows), indent=1) + "\n")
    write_csv(rows, out / "sweep.csv")
    write_markdown(rows, data["meta"], out / "sweep.md")
    if plots:
        write_plots(rows, data["meta"], out)
    return rows


# ---------------------------------------------------------------- run mode

def gpu_facts():
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        name, mib = [x.strip() for x in text.split(",")]
        return dict(device=name, gpu_memory_bytes=float(mib) * 1048576)
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return {}


def git_commit():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=BENCH_DIR, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=BENCH_DIR, timeout=30).stdout.strip()
        return head + ("+dirty" if head and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def run_sweep(args):
    if not os.access(args.swbench, os.X_OK):
        raise SweepError(f"swbench not found or not executable: {args.swbench}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.meta = dict(gpu_facts(), commit=args.commit or git_commit() or "unknown",
                     date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                     command=shlex.join(sys.argv), shapes={s: SHAPES[s] for s in args.shapes})
    for name in ("swbench.log", "anchors.log"):
        (args.out / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        t0 = time.monotonic()
        swbench_rows = sweep_swbench(args, Path(tmp), args.out / "swbench.log")
        t1 = time.monotonic()
        anchor_rows = run_anchors(args, Path(tmp), args.out / "anchors.log")
        args.meta["seconds"] = dict(swbench=round(t1 - t0, 1), anchors=round(time.monotonic() - t1, 1))
    return dict(meta=args.meta, swbench_rows=swbench_rows, anchor_rows=anchor_rows)


def main(argv):
    args = parse_args(argv)
    try:
        if args.from_json:
            try:
                data = json.loads(args.from_json.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise SweepError(f"cannot read {args.from_json}: {e}")
            if not all(k in data for k in ("meta", "swbench_rows", "anchor_rows")):
                raise SweepError(f"{args.from_json} is not a sweep.json (needs meta, swbench_rows, anchor_rows)")
        else:
            data = run_sweep(args)
        rows = render(data, args.out, not args.no_plots)
    except SweepError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    bad = [r for r in rows if r["source"] == "swbench" and r["status"] in FAILING]
    for r in bad:
        print(f"sweep: {r['shape']} N={r['N']} {r['impl']}: {r['status']} {r.get('note') or ''}", file=sys.stderr)
    print(f"sweep: {len(rows)} rows ({len(bad)} failed) -> {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
