"""swrun bench end to end on a tiny synthetic model (CPU backend): llama-bench's rows in its order, every format
well-formed and carrying the same numbers, model size and parameters as the gguf package counts them, and bad
flags failing with one line and nothing on stdout. Usage: cli_bench.py SWRUN WORKDIR"""
import csv
import io
import json
import math
import os
import statistics
import subprocess

import gguf

from cli_check import check, finish, setup_tiny_gemma3

swrun, work, model = setup_tiny_gemma3()


def bench(args, with_model=True):
    head = [swrun, "bench"] + (["-m", model] if with_model else [])
    r = subprocess.run(head + ["--backend", "cpu"] + args, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


reader = gguf.GGUFReader(model)
n_params = sum(int(t.n_elements) for t in reader.tensors)
n_bytes = sum(int(t.n_bytes) for t in reader.tensors)

# JSON: pp and tg at depth 0 and 32, in llama-bench's order, with consistent statistics
code, out, err = bench(["-p", "16", "-n", "4", "-d", "0,32", "-r", "2", "-o", "json"])
check("json run", code == 0, "" if code == 0 else err[-300:])
if code == 0:
    rows = json.loads(out)
    names = [r["test"] for r in rows]
    check("tests in llama-bench order", names == ["pp16", "tg4", "pp16 @ d32", "tg4 @ d32"], str(names))
    check("sizes and depths", [(r["n_prompt"], r["n_gen"], r["n_depth"]) for r in rows] ==
          [(16, 0, 0), (0, 4, 0), (16, 0, 32), (0, 4, 32)])
    for r in rows:
        ts = r["samples_ts"]
        tokens = r["n_prompt"] + r["n_gen"]
        check(f"{r['test']}: 2 samples, t/s from ns", len(ts) == 2 and len(r["samples_ns"]) == 2 and all(
            math.isclose(t, tokens * 1e9 / ns, rel_tol=1e-9) for t, ns in zip(ts, r["samples_ns"])))
        check(f"{r['test']}: mean and sample stddev", math.isclose(r["avg_ts"], statistics.mean(ts), rel_tol=1e-9)
              and math.isclose(r["stddev_ts"], statistics.stdev(ts), rel_tol=1e-6, abs_tol=1e-9))
        check(f"{r['test']}: positive speed", all(t > 0 for t in ts))
    r = rows[0]
    check("model fields", r["model_filename"] == model and r["model_type"].startswith("gemma3 ") and
          r["model_n_params"] == n_params and r["model_size"] == n_bytes,
          f"{r['model_type']} {r['model_n_params']}/{n_params} {r['model_size']}/{n_bytes}")
    check("CPU fields", r["backend"] == "CPU" and r["peak_memory_bytes"] == 0 and r["n_threads"] >= 1
          and r["attn"] == "model")
    check("load time", all(0 < r["load_ms"] < 60000 for r in rows) and len({r["load_ms"] for r in rows}) == 1)

# CSV: two attention specs (one of them a per-layer list with its own commas), specs outermost
code, out, err = bench(["-p", "8", "-n", "2", "-r", "1", "--attn", "model,0-4:dense,5-:sliding:4", "-o", "csv"])
check("csv run", code == 0, "" if code == 0 else err[-300:])
if code == 0:
    rows = list(csv.DictReader(io.StringIO(out)))
    check("csv: one row per (spec, test)", [(r["attn"], r["test"]) for r in rows] ==
          [("model", "pp8"), ("model", "tg2"), ("0-4:dense,5-:sliding:4", "pp8"), ("0-4:dense,5-:sliding:4", "tg2")],
          str([(r["attn"], r["test"]) for r in rows]))
    check("csv: every value quoted", all(line.startswith('"') for line in out.splitlines()[1:]))
    check("csv: numbers parse", all(float(r["avg_ts"]) > 0 and int(r["n_ubatch"]) == 512 for r in rows))

# Markdown (the default): header, separator, one line per test with llama-bench's columns plus attn
code, out, err = bench(["-p", "8", "-n", "2", "-d", "0,16", "-r", "1", "-b", "4"])
check("md run", code == 0, "" if code == 0 else err[-300:])
if code == 0:
    lines = out.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    check("md columns", head == ["model", "size", "params", "backend", "threads", "n_ubatch", "attn", "test", "t/s"],
          str(head))
    tests = [l.split("|")[8].strip() for l in lines[2:]]
    check("md rows", len(lines) == 6 and tests == ["pp8", "tg2", "pp8 @ d16", "tg2 @ d16"], str(tests))
    check("md progress on stderr", "4/4 tg2 @ d16" in err, "" if "4/4 tg2 @ d16" in err else err[-200:])

# bad input: one line, non-zero exit, nothing on stdout
for label, args, word in [
    ("unparseable -p", ["-p", "12x"], "-p list '12x'"),
    ("empty item in -n", ["-n", "1,,2"], "-n list"),
    ("negative depth", ["-d", "0,-5"], "'-5'"),
    ("nothing to run", ["-p", "0", "-n", "0"], "no test"),
    ("repetitions 0", ["-r", "0"], "-r"),
    ("unknown format", ["-o", "xml"], "'xml'"),
    ("bad attn spec", ["--attn", "dense,sliding:x"], "sliding:x"),
    ("attn layer past the model", ["--attn", "model,0-9:dense", "-p", "8", "-n", "0"], "layer"),
    ("missing model file", ["-m", os.path.join(work, "nope.gguf")], "nope.gguf"),
    ("unknown flag", ["--frobnicate"], "frobnicate"),
]:
    code, out, err = bench(args, with_model="-m" not in args)
    lines = [l for l in err.splitlines() if l.startswith("swrun: error")]
    ok = code != 0 and code < 128 and len(lines) == 1 and word.lower() in lines[0].lower() and out == ""
    check(f"bad input: {label}", ok, f"exit {code}: {' | '.join(lines)[:160]} stdout {len(out)} chars")
code, out, err = bench(["-p", "8"], with_model=False)
check("bad input: no model", code != 0 and out == "" and "--model" in err, err.strip()[:160])

finish()
