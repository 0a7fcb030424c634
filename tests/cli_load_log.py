"""swrun -v: the load breakdown on stderr, on a synthetic model from make_synthetic_model (every matrix type, the
tokenizer of tests/tiny_model.py). Every phase is there once, sub-phases follow a phase, the top-level phases sum
to the printed total, and that total is the load time of the summary line. Runs on the CPU backend; where a GPU is
present it also runs on CUDA and checks the backend's own split (context, copies, dequantization, warm-up).
Usage: cli_load_log.py SWRUN MAKE_SYNTHETIC WORKDIR"""
import os
import re
import subprocess
import sys

from cli_check import check, finish
from tiny_model import tiny_model

swrun, make_synthetic, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
vocab = os.path.join(work, "vocab.gguf")
model = os.path.join(work, "synthetic_gemma3.gguf")
tiny_model(vocab)
subprocess.run([make_synthetic, "--arch", "gemma3", "--vocab", vocab, "-o", model], check=True, capture_output=True)

LINE = re.compile(r"^load: (?P<indent> *)(?P<name>\S.*?) +(?P<ms>\d+\.\d\d) ms(?:  (?P<detail>.*))?$")
TOP = ["gguf open", "tokenizer", "prompt encode", "backend init (wait)", "weights", "KV cache"]


def load_log(backend, extra=()):
    """(top-level phases [(name, ms, detail, subs)], total ms, summary load ms) of one run, or None."""
    r = subprocess.run([swrun, "-m", model, "--backend", backend, "-p", "a b c d e f", "-n", "3", "--temp", "0",
                        "-v", *extra], capture_output=True, text=True, timeout=300)
    check(f"{backend}: -v runs", r.returncode == 0, r.stderr[-300:] if r.returncode else "")
    if r.returncode != 0:
        return None
    phases, total = [], None
    malformed = [line for line in r.stderr.splitlines() if line.startswith("load:") and not LINE.match(line)]
    check(f"{backend}: load lines well-formed", not malformed, str(malformed))
    for line in r.stderr.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        ms, indent = float(m["ms"]), len(m["indent"])
        if indent == 0 and m["name"] == "total":
            total = ms
        elif indent == 2:
            phases.append((m["name"], ms, m["detail"] or "", []))
        elif indent == 4 and phases:
            phases[-1][3].append((m["name"], ms, m["detail"] or ""))
        else:
            check(f"{backend}: sub-phase after a phase", False, line)
    summary = re.search(r"^swrun: load (\d+) ms", r.stderr, re.M)
    check(f"{backend}: total and summary printed", total is not None and summary is not None)
    return phases, total, float(summary[1]) if summary else None


def check_common(backend, run):
    phases, total, summary = run
    names = [p[0] for p in phases]
    check(f"{backend}: every phase once", all(names.count(n) == 1 for n in TOP) and names[-1].startswith("warm-up"),
          str(names))
    top_sum = sum(p[1] for p in phases)
    # Phases are consecutive on the host clock: only the gaps between clock reads are outside them.
    check(f"{backend}: phases sum to the total", abs(top_sum - total) <= 0.5 + 0.01 * total, f"{top_sum} vs {total}")
    check(f"{backend}: total is the summary's load time", abs(total - summary) <= 1.0, f"{total} vs {summary}")
    check(f"{backend}: no negative time", all(p[1] >= 0 for p in phases) and all(s[1] >= 0 for p in phases for s in p[3]))
    return {p[0]: p for p in phases}


run = load_log("cpu")
if run:
    by_name = check_common("cpu", run)
    check("cpu: weights stay in the mapping", "file mapping" in by_name["weights"][2], by_name["weights"][2])
    check("cpu: no warm-up", by_name["warm-up"][1] == 0, str(by_name["warm-up"]))
    check("cpu: the tokenizer's vocabulary size", by_name["tokenizer"][2].endswith(" tokens"))

def gpu_present():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


if gpu_present():
    for extra in ([], ["--no-graph"]):
        label = "cuda" + (" --no-graph" if extra else "")
        run = load_log("cuda", extra)
        if not run:
            continue
        by_name = check_common(label, run)
        subs = {s[0]: s for s in by_name["backend init (wait)"][3]}
        check(f"{label}: set-up split", {"CUDA driver", "CUDA context", "cuBLAS"} <= set(subs), str(list(subs)))
        weights = {s[0]: s for s in by_name["weights"][3]}
        check(f"{label}: upload split", {"device allocations", "copy to device"} <= set(weights)
              and any(n.endswith("-> bf16") for n in weights), str(list(weights)))
        # Each part within the phase (their sum need not be: a dequantization runs while the next tensor's memory
        # is allocated).
        longest = max(s[1] for s in weights.values())
        check(f"{label}: upload split within the phase", longest <= by_name["weights"][1] * 1.05 + 0.5,
              f"{longest} vs {by_name['weights'][1]}")
        warm = [n for n in by_name if n.startswith("warm-up")]
        want = ["warm-up prefill", "warm-up decode step"] + ([] if extra else ["warm-up decode graph"])
        check(f"{label}: warm-up parts", warm == want, str(warm))
finish()
