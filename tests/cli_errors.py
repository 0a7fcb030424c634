"""Bad input to the swrun CLI: each case must print exactly one line on stderr starting with 'swrun: error:'
and exit non-zero (never a crash). Also checks that a valid tiny model runs. Usage: cli_errors.py SWRUN WORKDIR"""
import os
import subprocess
import sys

import gguf

from tiny_model import tiny_model

swrun, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
def run(args, expect_ok=False):
    r = subprocess.run([swrun] + args, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


failures = []


def expect_error(label, args, must_contain):
    code, out, err = run(args)
    lines = [l for l in err.splitlines() if l.strip()]
    ok = (code not in (0,) and code < 128 and len(lines) == 1 and lines[0].startswith("swrun: error:")
          and must_contain.lower() in lines[0].lower())
    print(f"{'ok  ' if ok else 'FAIL'} {label}: exit {code}: {' | '.join(lines)[:200]}")
    if not ok:
        failures.append(label)


good = os.path.join(work, "tiny.gguf")
tiny_model(good)
code, out, err = run(["-m", good, "-p", "a", "-n", "4", "--temp", "0", "--backend", "cpu"])
print(f"{'ok  ' if code == 0 else 'FAIL'} valid tiny model runs: exit {code}")
if code != 0:
    print(err)
    failures.append("valid model")

text = os.path.join(work, "not.gguf")
open(text, "w").write("this is not a gguf file\n" * 10)
trunc = os.path.join(work, "trunc.gguf")
data = open(good, "rb").read()
open(trunc, "wb").write(data[: len(data) // 2])
unknown_arch = os.path.join(work, "arch.gguf")
tiny_model(unknown_arch, arch="mamba9")
bad_type = os.path.join(work, "iq4nl.gguf")
tiny_model(bad_type, bad_type=True)
# An unknown type id: patch the type field of the first tensor in the tensor table.
unknown_type = os.path.join(work, "type99.gguf")
r = gguf.GGUFReader(good)
t = r.tensors[0]
patched = bytearray(data)
off = t.field.offset + 8 + len(t.name.encode()) + 4 + 8 * len(t.shape)
assert int.from_bytes(patched[off:off + 4], "little") == int(t.tensor_type)
patched[off:off + 4] = (99).to_bytes(4, "little")
open(unknown_type, "wb").write(bytes(patched))

expect_error("missing model file", ["-m", os.path.join(work, "nope.gguf"), "-p", "a"], "nope.gguf")
expect_error("not a GGUF", ["-m", text, "-p", "a"], "gguf")
expect_error("truncated file", ["-m", trunc, "-p", "a", "--backend", "cpu"], "trunc.gguf")
expect_error("unknown architecture", ["-m", unknown_arch, "-p", "a", "--backend", "cpu"], "mamba9")
expect_error("unsupported tensor type", ["-m", bad_type, "-p", "a", "--backend", "cpu"], "IQ4_NL")
expect_error("unknown tensor type id", ["-m", unknown_type, "-p", "a", "--backend", "cpu"], "type")
expect_error("bad --attn spec", ["-m", good, "-p", "a", "--attn", "sliding:zero"], "--attn")
expect_error("bad --attn layer", ["-m", good, "-p", "a", "--attn", "0-9:dense", "--backend", "cpu"], "layer")
expect_error("prompt longer than -c", ["-m", good, "-p", "a b a b a b a b", "-c", "3", "--backend", "cpu"], "-c")
expect_error("no prompt", ["-m", good], "prompt")
expect_error("unknown flag", ["-m", good, "-p", "a", "--frobnicate"], "frobnicate")
expect_error("bad -ctk", ["-m", good, "-p", "a", "-ctk", "q9_0"], "-ctk")
expect_error("bad -ctv", ["-m", good, "-p", "a", "-ctv", "iq4_nl", "--backend", "cpu"], "-ctv")
# -ctk / -ctv on the CPU: llama.cpp's spellings run (the rows rounded through the type).
code, out, err = run(["-m", good, "-p", "a", "-n", "4", "--temp", "0", "--backend", "cpu", "-ctk", "q8_0", "-ctv",
                      "f16"])
ok = code == 0 and "KV cache K q8_0 / V f16" in err
print(f"{'ok  ' if ok else 'FAIL'} -ctk q8_0 -ctv f16 runs on the CPU: exit {code}")
if not ok:
    print(err)
    failures.append("-ctk on the CPU")


def vocab_only(path, model, pre):
    """A byte-level BPE vocabulary and nothing else: no hyperparameters, no tensors."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_string("tokenizer.ggml.model", model)
    w.add_string("tokenizer.ggml.pre", pre)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "ab", "\u0120"])
    w.add_array("tokenizer.ggml.token_type", [1, 1, 1, 1])
    w.add_array("tokenizer.ggml.merges", ["a b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


vocab = os.path.join(work, "vocab.gguf")
vocab_only(vocab, "gpt2", "gpt-2")
code, out, err = run(["tokenize", "-m", vocab, "-p", "ab a", "--ids"])
tokenized = code == 0 and out == "2 3 0\n"  # "ab" merged, " a" is the space token then "a"
print(f"{'ok  ' if tokenized else 'FAIL'} tokenize a vocab-only file: exit {code}: {out!r}")
if not tokenized:
    failures.append("tokenize vocab-only")
unknown_pre = os.path.join(work, "pre.gguf")
vocab_only(unknown_pre, "gpt2", "no-such-pre")
unknown_model = os.path.join(work, "model.gguf")
vocab_only(unknown_model, "t5", "gpt-2")
expect_error("unknown pre-tokenizer", ["tokenize", "-m", unknown_pre, "-p", "a"],
             "pre.gguf: tokenizer.ggml.pre 'no-such-pre'")
expect_error("unknown tokenizer model", ["tokenize", "-m", unknown_model, "-p", "a"],
             "model.gguf: tokenizer model 't5'")
expect_error("tokenize without text", ["tokenize", "-m", vocab], "-p/--prompt or -f/--file")
expect_error("generation from a vocab-only file", ["-m", vocab, "-p", "a", "--backend", "cpu"], "no tensors")
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
