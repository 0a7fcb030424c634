"""swrun --profile and --ab end to end on a tiny synthetic model (CPU backend): outputs well-formed and consistent,
A/B of a spec against itself gives KL 0 and 100% agreement, a narrow window changes the distributions, bad flags
fail with one line. Usage: cli_modes.py SWRUN WORKDIR"""
import csv
import json
import math
import os
import subprocess
import xml.etree.ElementTree as ET

from cli_check import check, finish, setup_tiny_gemma3

swrun, work, model = setup_tiny_gemma3()


def run(args):
    r = subprocess.run([swrun, "-m", model, "--backend", "cpu", "-p", "a b c d e f g"] + args, capture_output=True,
                       text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


# --profile: table on stdout, JSON/CSV/SVG files that agree with each other
paths = {ext: os.path.join(work, f"profile.{ext}") for ext in ("json", "csv", "svg")}
code, out, err = run(["--profile", "--prompt-len", "40", "-b", "16", "--repeat", "2", "--profile-json", paths["json"],
                      "--profile-csv", paths["csv"], "--profile-svg", paths["svg"]])
check("profile runs", code == 0, err[-300:])
if code == 0:
    prof = json.load(open(paths["json"]))
    check("profile covers 40 tokens in 3 chunks", prof["n_tokens"] == 40 and prof["chunks"] == 3)
    check("profile took 2 timed runs", prof["repeat"] == 2 and len(prof["prefill_ms_runs"]) == 2)
    layer_sum = sum(r["total_ms"] for r in prof["rows"])
    check("layer rows sum to the total", math.isclose(layer_sum, prof["totals"]["total_ms"], rel_tol=1e-6),
          f"{layer_sum} vs {prof['totals']['total_ms']}")
    rows = list(csv.reader(open(paths["csv"])))
    check("CSV rectangular", len({len(r) for r in rows}) == 1 and len(rows) >= len(prof["rows"]) + 1)
    ET.parse(paths["svg"])  # raises on malformed XML
    check("SVG parses", True)
    check("table lists every layer", all(f"\n{l} " in out or f"\n{l}  " in out for l in range(7)))

# --ab of a spec against itself: identical distributions
ab_json = os.path.join(work, "ab_same.json")
code, out, err = run(["--ab", "dense", "dense", "--prompt-len", "30", "-b", "8", "-n", "5", "--repeat", "1",
                      "--profile-json", ab_json])
check("ab same-spec runs", code == 0, err[-300:])
if code == 0:
    q = json.load(open(ab_json))["quality"]
    check("same spec: KL mean 0", q["kl_mean"] == 0 and q["kl_max"] == 0, f"{q['kl_mean']} {q['kl_max']}")
    check("same spec: top-1 100%", q["top1_agreement"] == 1.0 and q["positions"] == 30)
    check("same spec: perplexities equal", q["perplexity_a"] == q["perplexity_b"])
    check("same spec: greedy identical", q["greedy_a"] == q["greedy_b"] and q["first_divergence"] is None)

# --ab dense vs a window of 2 keys over 30 tokens: distributions must move
ab_json = os.path.join(work, "ab_narrow.json")
code, out, err = run(["--ab", "dense", "sliding:2", "--prompt-len", "30", "-b", "8", "-n", "5", "--repeat", "1",
                      "--profile-json", ab_json])
check("ab narrow runs", code == 0, err[-300:])
if code == 0:
    q = json.load(open(ab_json))["quality"]
    check("narrow window: KL > 0", q["kl_mean"] > 1e-4 and q["kl_max"] >= q["kl_mean"], str(q["kl_mean"]))

# bad flags: one line, non-zero exit
for label, args, word in [
    ("profile and ab together", ["--profile", "--ab"], "pick one"),
    ("report file without a mode", ["--profile-json", os.path.join(work, "x.json")], "need --profile"),
    ("repeat 0", ["--profile", "--repeat", "0"], "repeat"),
    ("ab with three specs", ["--ab", "dense", "model", "dense"], "ab"),
    ("bad ab spec", ["--ab", "dense", "sliding:x"], "--attn spec"),
    ("negative prompt-len", ["--profile", "--prompt-len", "-5"], "prompt-len"),
    ("unwritable report", ["--profile", "--profile-json", "/nonexistent/dir/p.json"], "/nonexistent/dir"),
]:
    code, out, err = run(args)
    lines = [l for l in err.splitlines() if l.strip().startswith("swrun: error")]
    ok = code != 0 and code < 128 and len(lines) == 1 and word.lower() in lines[0].lower()
    check(f"bad flags: {label}", ok, f"exit {code}: {' | '.join(lines)[:160]}")

finish()
