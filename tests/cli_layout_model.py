#!/usr/bin/env python3
"""make_layout_model end to end: full-size random-weight files of two layouts, checked through swrun.

- gemma3-270m at q4_k_m with the example model's tokenizer: `swrun inspect` shows the same tensor table (names,
  types, shapes) as the published Gemma 3 270M Q4_K_M file (models/gemma-3-270m-q4_k_m.gguf), the layout's keys
  and file type 15; `swrun --backend cpu -n 2 --temp 0` generates; swrun_logits' logits are finite and of a sane
  spread (random scales that overflowed would show here).
- qwen2.5-0.5b at q4_k_m with llama.cpp's qwen2 test vocabulary (scripts/fetch-llama-vocabs.sh): a hand-written
  type table (rows of 896 fall back to Q5_0 / Q8_0, the tied token_embd takes the output's type), q/k/v biases,
  generation and finite logits.
- Vocab-only files padded to a layout's vocabulary (qwen2.5-7b: 151936 -> 152064 rows; gemma3-4b: 262144 ->
  262208) tokenize exactly as their source vocabularies.
- Bad input: one clear line, non-zero exit, no file left behind.

usage: cli_layout_model.py MAKE_LAYOUT_MODEL SWRUN WORKDIR [SWRUN_LOGITS]
Exit 77 (skip) when neither the example model nor the llama.cpp vocabularies can be had."""
import os
import re
import struct
import subprocess
import sys

from cli_check import check, finish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
make, swrun, work = sys.argv[1:4]
swrun_logits = sys.argv[4] if len(sys.argv) > 4 else None
os.makedirs(work, exist_ok=True)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=900, **kw)


def fetch(script):
    r = run([os.path.join(ROOT, "scripts", script)])
    return r.stdout.strip() if r.returncode == 0 else None


def inspect(path):
    """(metadata {key: value text}, [(name, type, shape text)]) from `swrun inspect`."""
    r = run([swrun, "inspect", path])
    check(f"inspect {os.path.basename(path)}", r.returncode == 0, r.stderr[-300:] if r.returncode else "")
    meta, tensors, in_tensors = {}, [], False
    for line in r.stdout.splitlines():
        if line.startswith("Tensors"):
            in_tensors = True
            continue
        if in_tensors:
            m = re.match(r"\s+(\S+)\s+(\S+)\s+(\[[^\]]*\])", line)
            if m and m[1] != "name":
                tensors.append((m[1], m[2], m[3]))
        else:
            m = re.match(r"\s+(\S+)\s+(\S+)\s+(.*)$", line)
            if m:
                meta[m[1]] = m[3].strip()
    return meta, tensors


def make_model(layout, vocab, out, *extra):
    r = run([make, "--layout", layout, "--type", "q4_k_m", "--vocab", vocab, "-o", out, "--threads", "2", *extra])
    ok = r.returncode == 0 and os.path.exists(out)
    check(f"{layout}: written", ok, "" if ok else r.stderr[-400:])
    return r.returncode == 0


def generate_and_logits(model, tokens):
    r = run([swrun, "-m", model, "-p", "The capital of France is", "-n", "2", "--temp", "0", "--backend", "cpu",
             "-t", "2"])
    ok = r.returncode == 0 and "generated 2 tokens" in r.stderr
    check(f"{os.path.basename(model)}: generates 2 tokens on the CPU", ok, "" if ok else r.stderr[-400:])
    if not swrun_logits:
        return
    out = model + ".logits"
    r = run([swrun_logits, "-m", model, "--tokens", tokens, "--out", out, "--backend", "cpu", "-t", "2"])
    check(f"{os.path.basename(model)}: swrun_logits runs", r.returncode == 0, r.stderr[-400:] if r.returncode else "")
    if r.returncode != 0:
        return
    data = open(out, "rb").read()
    values = struct.unpack(f"{len(data) // 4}f", data)
    finite = all(v == v and abs(v) != float("inf") for v in values)
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    check(f"{os.path.basename(model)}: logits finite, spread {sd:.3g}", finite and 0.01 < sd < 100)
    os.remove(out)


def tokenize(vocab, text):
    r = run([swrun, "tokenize", "-m", vocab, "--ids", "-p", text])
    return r.stdout.strip() if r.returncode == 0 else "error: " + r.stderr.strip()


def bad_input():
    out = os.path.join(work, "never.gguf")
    cases = [
        ("no --vocab", [make, "--layout", "gemma3-270m", "-o", out], "a vocabulary is needed"),
        ("unknown layout", [make, "--layout", "gemma9-1t", "--vocab", out, "-o", out], "unknown layout 'gemma9-1t'"),
        ("unknown type", [make, "--layout", "gemma3-270m", "--type", "q3_k", "--vocab", out, "-o", out],
         "unknown --type"),
        ("missing vocab file", [make, "--layout", "gemma3-270m", "--vocab", os.path.join(work, "nope.gguf"), "-o",
                                out], "nope.gguf"),
    ]
    for label, args, needle in cases:
        r = run(args)
        lines = r.stderr.strip().splitlines()
        check(f"bad input ({label}): one line, non-zero exit",
              r.returncode != 0 and len(lines) == 1 and needle in lines[0], repr(r.stderr))
    check("bad input leaves no file", not any(f.startswith("never.gguf") for f in os.listdir(work)))


def gemma3(example):
    model = os.path.join(work, "gemma3-270m-q4_k_m.gguf")
    if not make_model("gemma3-270m", example, model):
        return
    meta, tensors = inspect(model)
    _, published = inspect(example)
    check("gemma3-270m: tensor table (names, types, shapes) = the published Q4_K_M file's",
          sorted(tensors) == sorted(published), f"{len(tensors)} vs {len(published)} tensors")
    want = {"general.architecture": '"gemma3"', "general.file_type": "15", "gemma3.block_count": "18",
            "gemma3.embedding_length": "640", "gemma3.attention.head_count_kv": "1",
            "gemma3.attention.key_length": "256", "gemma3.attention.sliding_window": "512",
            "gemma3.context_length": "32768", "gemma3.rope.freq_base": "1000000"}
    for k, v in want.items():
        check(f"gemma3-270m: {k} = {v}", meta.get(k) == v, str(meta.get(k)))
    check("gemma3-270m: 262144 tokens", "262144 items" in meta.get("tokenizer.ggml.tokens", ""))
    generate_and_logits(model, "2,818,5279,529,7001,563")
    os.remove(model)

    padded = os.path.join(work, "gemma3-4b-vocab.gguf")
    r = run([make, "--layout", "gemma3-4b", "--vocab", example, "--vocab-only", "-o", padded])
    meta, tensors = inspect(padded) if r.returncode == 0 else ({}, [])
    check("gemma3-4b vocab-only: 262208 tokens, no tensors",
          "262208 items" in meta.get("tokenizer.ggml.tokens", "") and not tensors, r.stderr[-300:] if r.returncode else "")
    text = "Hello world, 12345 tokens élan"
    check("gemma3-4b vocab-only: tokenizes as the source vocabulary", tokenize(padded, text) == tokenize(example, text))


def qwen2(vocab_dir):
    vocab = os.path.join(vocab_dir, "ggml-vocab-qwen2.gguf")
    model = os.path.join(work, "qwen2.5-0.5b-q4_k_m.gguf")
    if not make_model("qwen2.5-0.5b", vocab, model):
        return
    meta, tensors = inspect(model)
    types = {name: (t, shape) for name, t, shape in tensors}
    check("qwen2.5-0.5b: 290 tensors", len(tensors) == 290, str(len(tensors)))
    more_bits = {0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23}  # llama.cpp's use_more_bits(i, 24)
    expect = {"token_embd.weight": ("Q8_0", "[896, 151936]"), "output_norm.weight": ("F32", "[896]")}
    for l in range(24):
        p = f"blk.{l}."
        expect.update({
            p + "attn_q.weight": ("Q5_0", "[896, 896]"), p + "attn_k.weight": ("Q5_0", "[896, 128]"),
            p + "attn_v.weight": ("Q8_0" if l in more_bits else "Q5_0", "[896, 128]"),
            p + "attn_q.bias": ("F32", "[896]"), p + "attn_k.bias": ("F32", "[128]"),
            p + "attn_v.bias": ("F32", "[128]"), p + "attn_output.weight": ("Q5_0", "[896, 896]"),
            p + "ffn_gate.weight": ("Q5_0", "[896, 4864]"), p + "ffn_up.weight": ("Q5_0", "[896, 4864]"),
            p + "ffn_down.weight": ("Q6_K" if l in more_bits else "Q4_K", "[4864, 896]"),
            p + "attn_norm.weight": ("F32", "[896]"), p + "ffn_norm.weight": ("F32", "[896]")})
    wrong = [(n, types.get(n), e) for n, e in expect.items() if types.get(n) != e]
    check("qwen2.5-0.5b: types and shapes as llama.cpp's Q4_K_M rule gives them", not wrong, str(wrong[:4]))
    check("qwen2.5-0.5b: no output.weight (tied)", "output.weight" not in types)
    check("qwen2.5-0.5b: file type 15, 24 layers, 2 KV heads",
          meta.get("general.file_type") == "15" and meta.get("qwen2.block_count") == "24"
          and meta.get("qwen2.attention.head_count_kv") == "2", "")
    generate_and_logits(model, "9707,1879,11,220,16,17")
    os.remove(model)

    padded = os.path.join(work, "qwen2.5-7b-vocab.gguf")
    r = run([make, "--layout", "qwen2.5-7b", "--vocab", vocab, "--vocab-only", "-o", padded])
    meta, tensors = inspect(padded) if r.returncode == 0 else ({}, [])
    check("qwen2.5-7b vocab-only: 152064 tokens, no tensors",
          "152064 items" in meta.get("tokenizer.ggml.tokens", "") and not tensors, r.stderr[-300:] if r.returncode else "")
    text = "Hello world, 12345 tokens élan <|im_start|>"
    check("qwen2.5-7b vocab-only: tokenizes as the source vocabulary", tokenize(padded, text) == tokenize(vocab, text))


def main():
    bad_input()
    example = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(example):
        example = fetch("fetch-model.sh")
    vocab_dir = fetch("fetch-llama-vocabs.sh")
    if not example and not vocab_dir:
        print("skipped: neither the example model nor llama.cpp's vocabularies could be fetched")
        sys.exit(77)
    if example:
        gemma3(example)
    else:
        check("example model fetched (scripts/fetch-model.sh)", False)
    if vocab_dir:
        qwen2(vocab_dir)
    else:
        check("llama.cpp vocabularies fetched (scripts/fetch-llama-vocabs.sh)", False)
    finish()


if __name__ == "__main__":
    main()
