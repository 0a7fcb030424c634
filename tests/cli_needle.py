#!/usr/bin/env python3
"""`swrun needle` on the example model (Gemma 3 270M Q4_K_M, CPU): the physics of a window, on prompts of 768 tokens.

Gemma 3 270M runs 5 of every 6 layers with a 512-key window and the 6th dense. A needle near the start of the
haystack (depth 0.1, ~700 tokens before the end of the prompt) is beyond the reach of its windowed layers, and the
model's own policy still retrieves it through the dense ones; with every layer windowed to 128 keys it must be lost,
while a needle at the end of the haystack (within 128 keys of the question) is found under both. Checked by hand
before this test was written: without a preface line saying that magic numbers are hidden in the text, the model
missed a needle 900 tokens back under its own policy (it answered with a newline) and with every layer dense (it
answered with filler), and found it with one; so the preface is part of the prompt (engine/needle.h).

Also: the CSV, JSON and SVG carry the same trials, every spec is asked the same prompts, and bad input fails with
one line, a non-zero exit and no output file.
  usage: cli_needle.py SWRUN WORKDIR"""
import csv
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
swrun, work = sys.argv[1], sys.argv[2]
failures = []


def run(args):
    return subprocess.run([swrun, "needle", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        failures.append(name + (": " + detail if detail else ""))


def main():
    os.makedirs(work, exist_ok=True)
    model = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(model):
        r = subprocess.run([os.path.join(ROOT, "scripts", "fetch-model.sh")], stdout=subprocess.PIPE, text=True)
        model = r.stdout.strip() if r.returncode == 0 else ""
    if not model or not os.path.exists(model):
        print("skipped: the example model could not be fetched")
        sys.exit(77)
    # One thread: ctest runs two tests at once on the 2-core CI machine, and two OpenMP threads sharing a core with
    # another test spend their time at barriers (here 163 CPU-s for the 8 trials on 2 threads, 108 on 1).
    common = ["-m", model, "--backend", "cpu", "-t", "1"]
    out = {ext: os.path.join(work, "grid." + ext) for ext in ("csv", "json", "svg")}
    for path in out.values():
        if os.path.exists(path):
            os.remove(path)

    # 2 specs x 1 length x 2 depths x 2 needles = 8 trials of 768 tokens.
    r = run(common + ["--lengths", "768", "--depths", "0.1,1", "--needles", "2", "--attn", "model,sliding:128",
                      "--seed", "1", "--csv", out["csv"], "--json", out["json"], "--svg", out["svg"]])
    check("needle runs", r.returncode == 0, r.stderr[-800:])
    if r.returncode != 0:
        sys.exit("cli_needle: FAILED\n  " + "\n  ".join(failures))
    print(r.stdout)
    check("a grid per spec on stdout", "attn model:" in r.stdout and "attn sliding:128:" in r.stdout, r.stdout)
    check("per-layer policy printed per spec", r.stderr.count("attention per layer") == 2)
    check("progress with an ETA on stderr", r.stderr.count("ETA") == 8, r.stderr[-600:])

    with open(out["json"]) as f:
        report = json.load(f)
    trials = report["trials"]
    check("JSON: 8 trials, 4 cells", len(trials) == 8 and len(report["cells"]) == 4)
    with open(out["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    check("CSV: one row per trial, as the JSON", len(rows) == 8 and
          [r["answer"] for r in rows] == [t["answer"] for t in trials])
    svg = ET.parse(out["svg"]).getroot()
    rects = [e for e in svg.iter() if e.tag.endswith("rect")]
    check("SVG: well-formed, a cell per spec x depth x length (+ background)", len(rects) == 1 + 4, str(len(rects)))

    by_spec = {}
    for t in trials:
        by_spec.setdefault(t["attn"], []).append(t)
    same = [(t["key"], t["number"], t["needle_pos"]) for t in by_spec["model"]] == \
           [(t["key"], t["number"], t["needle_pos"]) for t in by_spec["sliding:128"]]
    check("every spec answers the same prompts", same)

    def show(t):
        return f'{t["attn"]} depth {t["depth"]} distance {t["distance"]}: "{t["answer"]}" for {t["number"]}'

    far = [t for t in trials if t["depth"] == 0.1]
    near = [t for t in trials if t["depth"] == 1.0]
    check("far needles lie beyond the model's 512-key windows", all(t["distance"] > 512 for t in far),
          "; ".join(show(t) for t in far))
    check("near needles lie within 128 keys of the prompt's end", all(t["distance"] < 128 for t in near),
          "; ".join(show(t) for t in near))
    check("the model's own policy finds the far needles (through its dense layers)",
          all(t["found"] for t in far if t["attn"] == "model"), "; ".join(show(t) for t in far))
    check("sliding:128 everywhere loses the far needles",
          not any(t["found"] for t in far if t["attn"] == "sliding:128"), "; ".join(show(t) for t in far))
    check("both find the near needles", all(t["found"] for t in near), "; ".join(show(t) for t in near))

    bad_out = os.path.join(work, "bad.csv")
    cases = [
        ("length shorter than preface + needle + question", ["--lengths", "40"], "leaves no room"),
        ("depth outside [0, 1]", ["--depths", "0,1.5"], "--depths"),
        ("unknown spec", ["--attn", "model,bogus"], "bogus"),
        ("no needles", ["--needles", "0"], "--needles"),
        ("bad length list", ["--lengths", "1024,x"], "--lengths"),
        ("missing haystack file", ["-f", os.path.join(work, "absent.txt")], "haystack file"),
    ]
    for name, args, needle in cases:
        r = run(common + args + ["--csv", bad_out])
        lines = [l for l in r.stderr.splitlines() if l.startswith("swrun: error")]
        check(f"bad input: {name}", r.returncode != 0 and len(lines) == 1 and needle in lines[0] and
              not os.path.exists(bad_out), f"rc {r.returncode}: {r.stderr[-300:]}")
    if failures:
        sys.exit("cli_needle: FAILED\n  " + "\n  ".join(failures))
    print("cli_needle: ok")


if __name__ == "__main__":
    main()
