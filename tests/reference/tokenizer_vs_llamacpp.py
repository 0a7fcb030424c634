#!/usr/bin/env python3
"""Fresh random strings through `swrun tokenize` and llama.cpp's own tokenizer (scripts/build-llama-oracle.sh),
for every BPE vocabulary of llama.cpp's test suite (byte-level, and Gemma 4's SentencePiece-style BPE), with and
without parse_special: the ids must be the same. The strings mix what the pre-tokenizers treat specially:
contractions in both cases, digit runs, Unicode whitespace (U+0085, U+3000, ...), newline runs, CJK, combining marks,
emoji, symbols, U+2581, special-token texts and invalid UTF-8 bytes.

Pre-tokenizers the suite has no vocabulary for (gpt-4o, gpt-oss's) run on a generated "pair vocabulary": the 256
byte symbols plus every pair of ASCII characters, merged in a shuffled order, so that where a word boundary falls
shows in the ids (a real vocabulary's merges rarely cross the boundaries where gpt-4o's split differs from
llama3's, and both then give the same ids). Measured once (two seeds): with llama3's split in place of gpt-4o's,
39 of 300 random strings differ from llama.cpp; with qwen2's, 94-104; with gpt-4o's, none.

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
PAIR_VOCAB_PRES = ["gpt-4o"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIECES = ["a", "e", "The", "hello", "ing", "Z", "0", "7", "42", "123456", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n",
          "\r", "\v", "\f", "\u0085", "\u00a0", "\u1680", "\u180e", "\u2000", "\u3000", "\u2028", "\u202f", ".", ",",
          "!", "?", "(", ")", "{", "'", "'s", "'S", "'ll", "'LL", "'Re", "'ve", "'d", "'m", "'t", "\"", "$", "+", "<",
          "=", ">", "^", "~", "|", "`", "-", "_", "@", "#", "%", "&", "*", "/", "\\", ":", ";", "[", "]", "é", "ß",
          "Ж", "и", "ω", "日", "本", "語", "한", "국", "ﾊ", "あ", "\u0301", "\u0308", "क", "ि", "ع", "😀", "🦙",
          "👨\u200d👩", "\u200d", "\ufe0f", "٣", "²", "Ⅻ", "½", "€", "©", "™", "\u00ad", "\x1c", "\x00", "\x7f",
          "\ue000", "\u0378", "\ufffd", "µ", "ª", "ǅ", "ｱ", "Ａ", "！", "、", "。", "‘", "”", "…", "<|endoftext|>",
          "<|im_start|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<mask>", "\u2581",
          "camelCase", "iPhone", "HTTPServer", "aBC",
          "<bos>", "<eos>", "<|turn>", "<turn|>", "<|tool_response>", "<|\"|>", "<0x41>", "\n\n\n", "    "]
INVALID = [b"\xff", b"\xc3", b"\xe2\x98", b"\x80", b"\xf0\x9f\x98"]


def random_text(rng):
    parts = [rng.choice(INVALID) if rng.random() < 0.03 else rng.choice(PIECES).encode()
             for _ in range(rng.randint(0, 25))]
    return b"".join(parts)


def byte_symbols():
    """Byte-level BPE's alphabet: GPT-2's printable stand-in for each byte, in byte order."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    symbols, shifted = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def pair_vocab(dst, pre):
    """A byte-level BPE vocabulary GGUF (gguf-py) with tokenizer.ggml.pre = `pre`: the byte symbols, then every pair
    of ASCII characters (and CR, LF) as a merge, in a fixed shuffled order."""
    import gguf
    symbols = byte_symbols()
    ascii_symbols = [symbols[b] for b in list(range(0x20, 0x7F)) + [0x0A, 0x0D]]
    pairs = [(a, b) for a in ascii_symbols for b in ascii_symbols]
    random.Random(0).shuffle(pairs)
    tokens = symbols + [a + b for a, b in pairs]
    w = gguf.GGUFWriter(dst, "gpt2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
    w.add_token_merges([f"{a} {b}" for a, b in pairs])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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
        vocabs = [(name, os.path.join(vocab_dir, f"ggml-vocab-{name}.gguf")) for name in VOCABS]
        for pre in PAIR_VOCAB_PRES:
            vocabs.append((f"{pre} (pair vocabulary)", os.path.join(work, f"pairs-{pre}.gguf")))
            pair_vocab(vocabs[-1][1], pre)
        for name, vocab in vocabs:
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
