#!/usr/bin/env python3
"""llama.cpp's own tokenizer test suite (tests/test-tokenizer-0.cpp) run through `swrun tokenize`.

Every case of every vocabulary below is tokenized with `swrun tokenize -m VOCAB --ids --no-bos -f CASE...` (no BOS,
special tokens not parsed: llama.cpp's add_special = false, parse_special = false) and compared with the ids in
the .out file. The .inp file holds the cases separated by "\\n__ggml_vocab_test__\\n" and split the way
test-tokenizer-0.cpp splits it; the .out file has one line of ids per case. Also checks that generation refuses a
vocab-only file with one clear line.

usage: tokenizer_llama_suite.py SWRUN [VOCAB_DIR]   (VOCAB_DIR: from scripts/fetch-llama-vocabs.sh by default)
"""
import os
import subprocess
import sys
import tempfile

VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2", "deepseek-llm", "deepseek-coder",
          "command-r", "starcoder", "falcon", "refact", "mpt", "gemma-4"]
SEPARATOR = b"\n__ggml_vocab_test__\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_cases(path):
    raw = open(path + ".inp", "rb").read()
    inputs, pos = [], 0
    while pos < len(raw):  # a separator at the very end closes the last case and opens none
        nxt = raw.find(SEPARATOR, pos)
        if nxt < 0:
            inputs.append(raw[pos:])
            break
        inputs.append(raw[pos:nxt])
        pos = nxt + len(SEPARATOR)
    outputs = [[int(t) for t in line.split()] for line in open(path + ".out", encoding="utf-8").read().split("\n")]
    if outputs and outputs[-1] == [] and len(outputs) == len(inputs) + 1:
        outputs.pop()  # the newline that ends the file's last line
    if len(inputs) != len(outputs):
        sys.exit(f"{path}: {len(inputs)} cases in .inp but {len(outputs)} lines in .out")
    return list(zip(inputs, outputs))


def tokenize(swrun, vocab, texts, workdir):
    """The ids of each text, from one `swrun tokenize` run with one -f file per text (one output line each)."""
    files = []
    for i, text in enumerate(texts):
        files.append(os.path.join(workdir, f"case{i}.txt"))
        with open(files[-1], "wb") as f:
            f.write(text)
    r = subprocess.run([swrun, "tokenize", "-m", vocab, "--ids", "--no-bos", "-f"] + files, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{vocab}: swrun tokenize failed: {r.stderr.decode(errors='replace').strip()}")
    lines = r.stdout.decode().split("\n")
    if len(lines) != len(texts) + 1 or lines[-1] != "":
        sys.exit(f"{vocab}: swrun tokenize printed {len(lines) - 1} lines for {len(texts)} texts")
    return [[int(t) for t in line.split()] for line in lines[:-1]]


def check_vocab_only_generation(swrun, vocab):
    r = subprocess.run([swrun, "-m", vocab, "-p", "hi", "-n", "1", "--backend", "cpu"], capture_output=True)
    lines = r.stderr.decode(errors="replace").strip().splitlines()
    ok = r.returncode == 1 and len(lines) == 1 and "no tensors" in lines[0]
    print(f"generation with a vocab-only file: exit {r.returncode}, {lines}: {'ok' if ok else 'FAILED'}")
    return ok


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    swrun = sys.argv[1]
    if len(sys.argv) == 3:
        vocab_dir = sys.argv[2]
    else:
        fetch = subprocess.run([os.path.join(ROOT, "scripts", "fetch-llama-vocabs.sh")], capture_output=True,
                               text=True)
        if fetch.returncode != 0:
            sys.exit("tokenizer_llama_suite: fetching the vocabularies failed:\n" + fetch.stderr)
        vocab_dir = fetch.stdout.strip()

    all_ok = True
    total_cases = total_matches = 0
    with tempfile.TemporaryDirectory() as workdir:
        for name in VOCABS:
            vocab = os.path.join(vocab_dir, f"ggml-vocab-{name}.gguf")
            cases = read_cases(vocab)
            results = tokenize(swrun, vocab, [text for text, _ in cases], workdir)
            matches = 0
            for (text, expected), got in zip(cases, results):
                if got == expected:
                    matches += 1
                    continue
                print(f"  {name}: MISMATCH for {text!r}\n    expected {expected}\n    got      {got}")
            print(f"{name}: {len(cases)} cases, {matches} match")
            total_cases += len(cases)
            total_matches += matches
            all_ok &= matches == len(cases)
    print(f"total: {total_cases} cases, {total_matches} match")
    all_ok &= check_vocab_only_generation(swrun, os.path.join(vocab_dir, "ggml-vocab-llama-bpe.gguf"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
