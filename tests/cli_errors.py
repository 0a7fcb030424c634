"""Bad input to the swrun CLI: each case must print exactly one line on stderr starting with 'swrun: error:'
and exit non-zero (never a crash). Also checks that a valid tiny model runs. Usage: cli_errors.py SWRUN WORKDIR"""
import os
import subprocess
import sys

import numpy as np
import gguf

swrun, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
rng = np.random.default_rng(1)


def tiny_model(path, arch="gemma3", bad_type=None):
    """A 2-layer gemma3-shaped model with a byte-fallback SentencePiece vocabulary."""
    dim, heads, hd, ffn = 64, 2, 32, 128
    pieces = ["<pad>", "</s>", "<s>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "\u2581a", "a", "b"]
    types = [3, 3, 3, 2] + [6] * 256 + [1, 1, 1, 1]
    w = gguf.GGUFWriter(path, arch)
    w.add_uint32(f"{arch}.context_length", 128)
    w.add_uint32(f"{arch}.embedding_length", dim)
    w.add_uint32(f"{arch}.block_count", 2)
    w.add_uint32(f"{arch}.feed_forward_length", ffn)
    w.add_uint32(f"{arch}.attention.head_count", heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", 1)
    w.add_uint32(f"{arch}.attention.key_length", hd)
    w.add_uint32(f"{arch}.attention.value_length", hd)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_uint32(f"{arch}.attention.sliding_window", 8)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", pieces)
    w.add_array("tokenizer.ggml.scores", [0.0] * len(pieces))
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.bos_token_id", 2)
    w.add_uint32("tokenizer.ggml.eos_token_id", 1)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 3)
    w.add_uint32("tokenizer.ggml.padding_token_id", 0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_space_prefix", False)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.1
    w.add_tensor("token_embd.weight", f32(len(pieces), dim))
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    for l in range(2):
        p = f"blk.{l}."
        for n in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"]:
            w.add_tensor(p + n + ".weight", np.ones(dim, np.float32))
        w.add_tensor(p + "attn_q_norm.weight", np.ones(hd, np.float32))
        w.add_tensor(p + "attn_k_norm.weight", np.ones(hd, np.float32))
        w.add_tensor(p + "attn_q.weight", f32(heads * hd, dim))
        w.add_tensor(p + "attn_k.weight", f32(hd, dim))
        w.add_tensor(p + "attn_v.weight", f32(hd, dim))
        w.add_tensor(p + "attn_output.weight", f32(dim, heads * hd))
        w.add_tensor(p + "ffn_gate.weight", f32(ffn, dim))
        w.add_tensor(p + "ffn_up.weight", f32(ffn, dim))
        if l == 1 and bad_type is not None:
            # IQ4_NL blocks (32 elements in 18 bytes): a type the runtime does not read
            w.add_tensor(p + "ffn_down.weight", rng.integers(0, 255, (dim, ffn // 32 * 18), dtype=np.uint8),
                         raw_shape=(dim, ffn // 32 * 18), raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
        else:
            w.add_tensor(p + "ffn_down.weight", f32(dim, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
