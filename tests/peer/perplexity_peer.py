#!/usr/bin/env python3
"""`swrun perplexity` against llama.cpp's perplexity method, and the KL-divergence base file both ways.

A synthetic model (llama architecture, the phi-3 vocabulary: 32k tokens, so a run takes seconds) in F32 and F16;
the text is a public-domain-licensed file every Debian/Ubuntu system has (/usr/share/common-licenses/GPL-3, 35 KB;
tests/fixtures/peer/alice.txt at a smaller context where it is absent). llama.cpp's side is
tests/peer/llama_perplexity.cpp (llama-perplexity's method on llama.cpp's library, built by
scripts/build-llama-cpp.sh). Checked per type:
  - PPL: swrun's "Final estimate" within 0.2% of llama.cpp's (measured 4e-7 relative on F32);
  - the base files written by both start with the same header and token list (format and tokenization), and have
    the same size;
  - swrun reading its own base: KLD mean ~0, same top p 100%;
  - swrun reading llama.cpp's base, and llama.cpp's side reading swrun's: KLD mean < 1e-3, same top p >= 99%.
Phi-3 itself is not used: its synthetic file's LongRoPE switch (original context 128) falls differently in
llama.cpp, which pads the context to 256.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"perplexity_peer: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout + r.stderr


def final_ppl(out):
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    if not m:
        sys.exit(f"perplexity_peer: no 'Final estimate' in:\n{out}")
    return float(m.group(1)), float(m.group(2))


def kl_stats(out):
    kld = re.search(r"Mean    KLD: +(-?[0-9.]+)", out)
    top = re.search(r"Same top p: +([0-9.]+)", out)
    if not kld or not top:
        sys.exit(f"perplexity_peer: no KLD statistics in:\n{out}")
    return float(kld.group(1)), float(top.group(1)) / 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swrun", required=True)
    ap.add_argument("--make-synthetic", required=True)
    ap.add_argument("--llama-build", help="build dir printed by scripts/build-llama-cpp.sh (default: run it)")
    ap.add_argument("--types", default="F32,F16")
    args = ap.parse_args()
    build = args.llama_build or subprocess.run([os.path.join(ROOT, "scripts", "build-llama-cpp.sh")],
                                               stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    driver = os.path.join(build, "llama_perplexity")
    vocab = os.path.join(build, "ggml-vocab-phi-3.gguf")
    text, ctx = "/usr/share/common-licenses/GPL-3", 128
    if not os.path.exists(text):
        text, ctx = os.path.join(ROOT, "tests", "fixtures", "peer", "alice.txt"), 64
    chunks = 4
    failures = []
    print("| type | ctx | chunks | PPL llama.cpp | PPL swrun | gap | KLD swrun<-llama base | same top | "
          "KLD llama<-swrun base | same top |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="swrun-ppl-") as tmp:
        for wtype in args.types.split(","):
            model = os.path.join(tmp, f"llama-{wtype}.gguf")
            run([args.make_synthetic, "--peer", "--arch", "llama", "--type", wtype, "--vocab", vocab, "-o", model])
            base_ll, base_sw = os.path.join(tmp, "llama.kld"), os.path.join(tmp, "swrun.kld")
            ppl_ll, _ = final_ppl(run([driver, model, text, str(ctx), str(chunks), "--write-base", base_ll]))
            ppl_sw, _ = final_ppl(run([args.swrun, "perplexity", "-m", model, "-f", text, "-c", str(ctx),
                                       "--chunks", str(chunks), "--backend", "cpu", "-t", "2",
                                       "--kl-divergence-base", base_sw]))
            gap = ppl_sw / ppl_ll - 1
            if abs(gap) > 2e-3:
                failures.append(f"{wtype}: PPL {ppl_sw} vs llama.cpp {ppl_ll} ({100 * gap:+.4f}%)")
            with open(base_ll, "rb") as a, open(base_sw, "rb") as b:
                head = 20 + 4 * ctx * chunks
                if a.read(head) != b.read(head):
                    failures.append(f"{wtype}: base files differ in header or tokens")
            if os.path.getsize(base_ll) != os.path.getsize(base_sw):
                failures.append(f"{wtype}: base file sizes differ")
            kl_cmd = [args.swrun, "perplexity", "-m", model, "--backend", "cpu", "-t", "2", "--kl-divergence"]
            self_kld, self_top = kl_stats(run(kl_cmd + ["--kl-divergence-base", base_sw]))
            if abs(self_kld) > 1e-5 or self_top < 1.0:
                failures.append(f"{wtype}: swrun against its own base: KLD {self_kld}, same top {self_top}")
            kld_a, top_a = kl_stats(run(kl_cmd + ["--kl-divergence-base", base_ll, "-f", text]))
            m = re.search(r"kld_mean (\S+) same_top (\S+)", run([driver, model, "--read-base", base_sw]))
            kld_b, top_b = float(m.group(1)), float(m.group(2))
            for who, kld, top in (("swrun on llama.cpp's base", kld_a, top_a),
                                  ("llama.cpp on swrun's base", kld_b, top_b)):
                if kld > 1e-3 or top < 0.99:
                    failures.append(f"{wtype}: {who}: KLD {kld}, same top {top}")
            print(f"| {wtype} | {ctx} | {chunks} | {ppl_ll:.4f} | {ppl_sw:.4f} | {100 * gap:+.5f}% | {kld_a:.6f} | "
                  f"{100 * top_a:.2f}% | {kld_b:.8f} | {100 * top_b:.2f}% |")
    if failures:
        sys.exit("perplexity_peer: FAILED\n  " + "\n  ".join(failures))
    print("perplexity_peer: ok")


if __name__ == "__main__":
    main()
