#!/usr/bin/env python3
"""Fresh random strings through `swrun tokenize` and llama.cpp's own tokenizer (scripts/build-llama-oracle.sh),
for every BPE vocabulary of llama.cpp's test suite (byte-level, and Gemma 4's SentencePiece-style BPE), with and
without parse_special: the ids must be the same. The strings mix what the pre-tokenizers treat specially:
contractions in both cases, digit runs, Unicode whitespace (U+0085, U+3000, ...), newline runs, CJK, combining marks,
emoji, symbols, U+2581, special-token texts and invalid UTF-8 bytes.

SentencePiece vocabularies are left out: they run on libsentencepiece, which reads invalid UTF-8 as U+FFFD where
llama.cpp feeds raw bytes to byte fallback, and llama.cpp strips spaces after phi-3's special tokens by model name.

usage: tokenizer_vs_llamacpp.py SWRUN [--oracle PATH] [--random N] [--seed S]
Skips (exit 77) when the oracle is not built (default: ~/.cache/swrun/llama.cpp-0.3.36/build/).
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

VOCABS = ["llama-bpe", "qwen2", "qwen35", "gpt-2", "deepseek-llm", "deepseek-coder", "command-r", "starcoder",
          "falcon", "refact", "mpt", "gemma-4"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIECES = ["a", "e", "The", "hello", "ing", "Z", "0", "7", "42", "123456", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n",
          "\r", "\v", "\f", "\u0085", "\u00a0", "\u1680", "\u180e", "\u2000", "\u3000", "\u2028", "\u202f", ".", ",",
          "!", "?", "(", ")", "{", "'", "'s", "'S", "'ll", "'LL", "'Re", "'ve", "'d", "'m", "'t", "\"", "$", "+", "<",
          "=", ">", "^", "~", "|", "`", "-", "_", "@", "#", "%", "&", "*", "/", "\\", ":", ";", "[", "]", "é", "ß",
          "Ж", "и", "ω", "日", "本", "語", "한", "국", "ﾊ", "あ", "\u0301", "\u0308", "क", "ि", "ع", "😀", "🦙",
          "👨\u200d👩", "\u200d", "\ufe0f", "٣", "²", "Ⅻ", "½", "€", "©", "™", "\u00ad", "\x1c", "\x00", "\x7f",
          "\ue000", "\u0378", "\ufffd", "µ", "ª", "ǅ", "ｱ", "Ａ", "！", "、", "。", "‘", "”", "…", "<|endoftext|>",
          "<|im_start|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<mask>", "\u2581",
          "<bos>", "<eos>", "<|turn>", "<turn|>", "<|tool_response>", "<|\"|>", "<0x41>", "\n\n\n", "    "]
INVALID = [b"\xff", b"\xc3", b"\xe2\x98", b"\x80", b"\xf0\x9f\x98"]


def random_text(rng):
    parts = [rng.choice(INVALID) if rng.random() < 0.03 else rng.choice(PIECES).encode()
             for _ in range(rng.randint(0, 25))]
    return b"".join(parts)


def ids_per_file(cmd, n):
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {r.stderr.decode(errors='replace').strip()}")
    lines = r.stdout.decode().split("\n")
    if len(lines) != n + 1:
        sys.exit(f"{cmd[0]} printed {len(lines) - 1} lines for {n} files")
    return lines[:-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("swrun")
    ap.add_argument("--oracle", default=os.path.expanduser("~/.cache/swrun/llama.cpp-0.3.36/build/"
                                                           "llama_tokenize_ids"))
    ap.add_argument("--random", type=int, default=300)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = ap.parse_args()
    if not os.access(args.oracle, os.X_OK):
        print(f"tokenizer_vs_llamacpp: {args.oracle} not built (scripts/build-llama-oracle.sh); skipped")
        return 77
    vocab_dir = subprocess.run([os.path.join(ROOT, "scripts", "fetch-llama-vocabs.sh")], capture_output=True,
                               text=True, check=True).stdout.strip()
    rng = random.Random(args.seed)
    texts = [random_text(rng) for _ in range(args.random)]
    print(f"tokenizer_vs_llamacpp: {len(texts)} random strings, --seed {args.seed}")
    failed = 0
    with tempfile.TemporaryDirectory() as work:
        files = []
        for i, text in enumerate(texts):
            files.append(os.path.join(work, f"case{i}.txt"))
            with open(files[-1], "wb") as f:
                f.write(text)
        for name in VOCABS:
            vocab = os.path.join(vocab_dir, f"ggml-vocab-{name}.gguf")
            for special in ([], ["--parse-special"]):
                ours = ids_per_file([args.swrun, "tokenize", "-m", vocab, "--ids", "--no-bos"] + special +
                                    ["-f"] + files, len(files))
                theirs = ids_per_file([args.oracle, vocab] + special + files, len(files))
                bad = [i for i in range(len(texts)) if ours[i] != theirs[i]]
                label = name + (" parse_special" if special else "")
                print(f"{label}: {len(texts)} strings, {len(texts) - len(bad)} match")
                for i in bad[:3]:
                    print(f"    {texts[i]!r}\n      swrun     {ours[i]}\n      llama.cpp {theirs[i]}")
                failed += len(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
