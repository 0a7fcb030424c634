#!/usr/bin/env python3
"""`swrun perplexity` on the example model (Gemma 3 270M Q4_K_M, CPU): llama-perplexity's output lines, a KL-divergence
base file that swrun writes and reads back (KLD 0, same top p 100%, PPL(base) = the run's PPL), several --attn specs
side by side (dense against itself: KLD 0; a 16-key window: KLD up), and bad input (one line, non-zero exit). The
comparison with llama.cpp itself is tests/peer/perplexity_peer.py.
  usage: cli_perplexity.py SWRUN WORKDIR"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TEXT = os.path.join(ROOT, "tests", "fixtures", "peer", "alice.txt")  # 367 Gemma tokens
swrun, work = sys.argv[1], sys.argv[2]
failures = []


def run(args):
    return subprocess.run([swrun, "perplexity", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    base = os.path.join(work, "base.kld")
    common = ["-m", model, "--backend", "cpu", "-t", "2"]

    r = run(common + ["-f", TEXT, "-c", "64", "--chunks", "2", "--kl-divergence-base", base])
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", r.stderr)
    running = re.findall(r"\[(\d)\]([0-9.]+),", r.stdout)
    check("perplexity runs: [1]..,[2].. on stdout, Final estimate on stderr",
          r.returncode == 0 and final is not None and [i for i, _ in running] == ["1", "2"], r.stderr[-400:])
    if final and running:
        check("Final estimate is the last running value", abs(float(final.group(1)) - float(running[-1][1])) < 1e-3)
        check("PPL plausible for Gemma 3 270M on English prose (2 .. 200)", 2 < float(final.group(1)) < 200)
    n_vocab = 262144
    nv = 2 * ((n_vocab + 1) // 2) + 4
    size = os.path.getsize(base) if os.path.exists(base) else 0
    check("base file size: header + 2x64 tokens + 2x31 rows of llama.cpp's width",
          size == 20 + 4 * 128 + 2 * 31 * nv * 2, str(size))
    with open(base, "rb") as f:
        head = f.read(20)
    check("base file header", head[:8] == b"_logits_" and int.from_bytes(head[8:12], "little") == 64 and
          int.from_bytes(head[12:16], "little") == n_vocab and int.from_bytes(head[16:20], "little") == 2)

    r = run(common + ["-f", TEXT, "--kl-divergence-base", base, "--kl-divergence"])
    row = re.search(r"^\s+2\s+([0-9.]+) ±\s+[0-9.]+\s+(-?[0-9.]+) ±\s+[0-9.]+\s+(-?[0-9.]+) ±.*?([0-9.]+) ±\s+[0-9.]+ %\s*$",
                    r.stdout, re.M)
    check("KL divergence against its own base: the chunk table", r.returncode == 0 and row is not None,
          r.stdout[-600:] + r.stderr[-300:])
    if row and final:
        check("own base: PPL(Q) as the run's", abs(float(row.group(1)) - float(final.group(1))) < 1e-3, row.group(0))
        check("own base: KLD ~ 0 and same top p 100%", abs(float(row.group(3))) < 1e-4 and row.group(4) == "100.000",
              row.group(0))
        check("own base: ln(PPL(Q)/PPL(base)) ~ 0 (16-bit log-probabilities)", abs(float(row.group(2))) < 0.01,
              row.group(0))

    # Several specs over the same chunks: a row each; without a base file the first spec is the base.
    # name, PPL, ln(PPL/PPL(base)), KLD mean, same top p
    table_row = (r"^%s\s+([0-9.]+) ±\s+[0-9.]+\s+(-?[0-9.]+) ±\s+[0-9.]+\s+(-?[0-9.]+) ±\s+[0-9.]+"
                 r"\s+[0-9.]+ ±\s+[0-9.]+ %%\s+([0-9.]+) ±")
    r = run(common + ["-f", TEXT, "-c", "64", "--chunks", "2", "--attn", "dense,dense,sliding:16"])
    base_row = re.search(r"^dense \(base\)\s+([0-9.]+) ±", r.stdout, re.M)
    rows = re.findall(table_row % r"(dense|sliding:16)", r.stdout, re.M)
    check("several specs: a base row and a row per other spec", r.returncode == 0 and base_row is not None and
          [x[0] for x in rows] == ["dense", "sliding:16"], r.stdout[-800:] + r.stderr[-300:])
    check("several specs: the per-layer policy printed once per spec", r.stderr.count("attention per layer") == 3)
    if base_row and final and len(rows) == 2:
        check("several specs: the base's PPL is the single run's (model = dense below the 512 window)",
              abs(float(base_row.group(1)) - float(final.group(1))) < 1e-3, base_row.group(0))
        _, ppl, ln_ratio, kld, same_top = rows[0]
        check("dense against itself: KLD 0, same top p 100%", abs(float(kld)) < 1e-4 and same_top == "100.000",
              str(rows[0]))
        _, ppl, ln_ratio, kld, same_top = rows[1]
        check("sliding:16 against dense: KLD and PPL up", float(kld) > 0.1 and float(ln_ratio) > 0.1, str(rows[1]))

    # Several specs writing a base file: the first spec's rows, byte for byte the file the single run wrote.
    multi = os.path.join(work, "multi.kld")
    r = run(common + ["-f", TEXT, "-c", "64", "--chunks", "2", "--attn", "model,sliding:16", "--kl-divergence-base",
                      multi])
    same = False
    if r.returncode == 0 and os.path.exists(multi):
        with open(base, "rb") as f, open(multi, "rb") as g:
            same = f.read() == g.read()
    check("several specs write the first spec's base file, as the single run does", same, r.stderr[-300:])

    # Several specs against a base file: every spec is compared, the file's own PPL heads the table.
    r = run(common + ["--kl-divergence-base", base, "--kl-divergence", "--attn", "dense,sliding:16"])
    rows = re.findall(table_row % r"(dense|sliding:16)", r.stdout, re.M)
    check("several specs against a base file: a file row and a row per spec",
          r.returncode == 0 and "file: " + base in r.stdout and [x[0] for x in rows] == ["dense", "sliding:16"],
          r.stdout[-800:] + r.stderr[-300:])
    if len(rows) == 2:
        check("against the file written by the single run: dense KLD 0", abs(float(rows[0][3])) < 1e-4, str(rows[0]))

    bad = os.path.join(work, "bad.kld")
    with open(bad, "wb") as f:
        f.write(b"not a base file")
    truncated = os.path.join(work, "truncated.kld")
    with open(base, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read(20 + 4 * 128 + 1000))
    short = os.path.join(work, "short.txt")
    with open(short, "w") as f:
        f.write("Too short.\n")
    cases = [
        ("text shorter than 2 x ctx", common + ["-f", short, "-c", "64"], "needs at least 128"),
        ("no text", common + ["-c", "64"], "-f"),
        ("-c too small", common + ["-f", TEXT, "-c", "4"], "-c"),
        ("--chunks 0", common + ["-f", TEXT, "--chunks", "0"], "--chunks"),
        ("--kl-divergence without base", common + ["--kl-divergence"], "--kl-divergence-base"),
        ("not a base file", common + ["--kl-divergence", "--kl-divergence-base", bad], "not a KL-divergence base"),
        ("truncated base file", common + ["--kl-divergence", "--kl-divergence-base", truncated], "truncated"),
        ("-c differs from the base's", common + ["--kl-divergence", "--kl-divergence-base", base, "-c", "128"],
         "-c 64"),
        ("text differs from the base's", common + ["--kl-divergence", "--kl-divergence-base", base, "-f", short],
         "does not tokenize"),
        ("an unknown spec among several", common + ["-f", TEXT, "--attn", "dense,bogus"], "bogus"),
    ]
    for name, args, needle in cases:
        r = run(args)
        lines = [l for l in r.stderr.splitlines() if l.startswith("swrun: error")]
        check(f"bad input: {name}", r.returncode != 0 and len(lines) == 1 and needle in lines[0],
              f"rc {r.returncode}: {r.stderr[-300:]}")
    if failures:
        sys.exit("cli_perplexity: FAILED\n  " + "\n  ".join(failures))
    print("cli_perplexity: ok")


if __name__ == "__main__":
    main()
