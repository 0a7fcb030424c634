#!/usr/bin/env python3
"""Every --attn spec on every architecture (CPU, tiny synthetic models, swrun_logits): each spec runs; a window
at least as long as the text equals dense; a short window changes the logits; a bare `sliding` on a model that
declares no window fails with one line. Usage: attn_specs.py SWRUN_LOGITS MAKE_SYNTHETIC WORKDIR"""
import os
import subprocess
import sys

import numpy as np

swrun_logits, make_synthetic, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
TOKENS = ",".join(str((i * 37 + 11) % 1000) for i in range(40))
failures = []


def check(label, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {label} {detail}")
    if not cond:
        failures.append(label)


def logits(model, attn):
    out = os.path.join(work, "logits.f32")
    r = subprocess.run([swrun_logits, "-m", model, "--tokens", TOKENS, "--out", out, "--attn", attn, "-t", "2",
                        "--ubatch", "16"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return np.fromfile(out, dtype=np.float32), ""


# (arch, extra options, whether the model declares a window)
for arch, opts, windowed in [("qwen2", [], False), ("qwen3", ["--tied"], False), ("gemma2", ["--window", "6"], True),
                             ("gemma3", ["--window", "6"], True), ("phi3", ["--window", "6"], True),
                             ("gpt-oss", ["--window", "6"], True), ("gemma4", ["--window", "6"], True)]:
    model = os.path.join(work, f"{arch}.gguf")
    subprocess.run([make_synthetic, "--arch", arch, *opts, "-o", model], check=True)
    dense, err = logits(model, "dense")
    check(f"{arch}: dense runs", dense is not None, err)
    for spec in ["model", "dense-naive", "sliding:5", "sliding:40", "0:dense,1-:sliding:3", "0-1:sliding:9,2:dense"]:
        got, err = logits(model, spec)
        check(f"{arch}: --attn {spec} runs", got is not None, err)
        if got is None or dense is None:
            continue
        diff = float(np.abs(got - dense).max())
        if spec in ("dense-naive", "sliding:40") or (spec == "model" and not windowed):
            check(f"{arch}: {spec} equals dense", diff < 1e-3, f"max |d| {diff:.2e}")
        else:
            check(f"{arch}: {spec} differs from dense", diff > 1e-2, f"max |d| {diff:.2e}")
    got, err = logits(model, "sliding")
    if windowed:
        check(f"{arch}: bare sliding takes the model's window", got is not None, err)
    else:
        check(f"{arch}: bare sliding without a model window fails with one line",
              got is None and err.count("\n") == 0 and "window" in err, err)

# Gemma 4's shared-KV layers (5, 6 read layer 3's sliding cache, 7 reads layer 4's) given wider windows than their
# sources: the source caches must hold what their readers need, in batches of 16 as in one batch of 40.
model = os.path.join(work, "gemma4.gguf")
spec = "0-4:sliding:4,5-:dense"
batched, err = logits(model, spec)
check(f"gemma4: {spec} runs in batches", batched is not None, err)
one = subprocess.run([swrun_logits, "-m", model, "--tokens", TOKENS, "--out", os.path.join(work, "one.f32"), "--attn",
                      spec, "-t", "2", "--ubatch", "40"], capture_output=True, text=True, timeout=300)
if batched is not None and one.returncode == 0:
    diff = float(np.abs(np.fromfile(os.path.join(work, "one.f32"), dtype=np.float32) - batched).max())
    check(f"gemma4: {spec} in batches equals one batch", diff < 1e-4, f"max |d| {diff:.2e}")
else:
    check(f"gemma4: {spec} in one batch runs", False, one.stderr.strip())

print("FAILED: " + ", ".join(failures) if failures else "all attention specs ok")
sys.exit(1 if failures else 0)
