"""Gemma 4 through the CLI on a synthetic E-variant file with llama.cpp's gemma-4 vocabulary (CPU backend):
`swrun inspect` shows the layout a run builds (sliding/dense per layer, the two head dims, KV heads, which layers
read another's KV cache), chat-template-free generation runs and is the same greedy text whether the prompt is
prefilled at once or in chunks of 3 (sliding rings and shared caches across batches), and `swrun fit` (the GPU
memory plan) refuses the architecture with one line; the MoE variant (26B-A4B's layout) shows its experts in
`swrun inspect` and generates alike in one batch and in chunks.
Usage: cli_gemma4.py SWRUN MAKE_SYNTHETIC WORKDIR"""
import os
import subprocess
import sys

from cli_check import check, finish

swrun, make_synthetic, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
vocab_dir = subprocess.run([os.path.join(root, "scripts", "fetch-llama-vocabs.sh")], capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()[-1]
model = os.path.join(work, "gemma4.gguf")
subprocess.run([make_synthetic, "--arch", "gemma4", "--window", "4", "--vocab",
                os.path.join(vocab_dir, "ggml-vocab-gemma-4.gguf"), "-o", model], check=True)

# errors="replace": inspect cuts long token strings at a byte count, which may split a UTF-8 character
r = subprocess.run([swrun, "inspect", model], capture_output=True, text=True, errors="replace", timeout=300)
check("inspect runs", r.returncode == 0, r.stderr[-300:])
rows = {}
for line in r.stdout.splitlines():
    f = line.split()
    if len(f) >= 8 and f[0].isdigit():
        rows[int(f[0])] = f
expected = {  # layer: policy, head_dim, kv heads, ffn, kv cache (make_synthetic_model's make_gemma4)
    0: ("sliding:4", "64", "2", "512", "own"), 2: ("dense", "128", "1", "512", "own"),
    4: ("dense", "128", "1", "512", "own"), 5: ("sliding:4", "64", "2", "1024", "layer 3's"),
    6: ("sliding:4", "64", "2", "1024", "layer 3's"), 7: ("dense", "128", "1", "1024", "layer 4's")}
for layer, (policy, head_dim, kv_heads, ffn, kv) in expected.items():
    f = rows.get(layer, [])
    got = (f[1], f[4], f[5], f[6], " ".join(f[7:])) if f else None
    check(f"inspect shows layer {layer} as {policy}, head_dim {head_dim}, {kv_heads} KV heads, ffn {ffn}, KV {kv}",
          got == (policy, head_dim, kv_heads, ffn, kv), str(got))


def generate(extra):
    r = subprocess.run([swrun, "-m", model, "--backend", "cpu", "-p", "The capital of France is", "-n", "12",
                        "--temp", "0", "-t", "2", *extra], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


code, whole, err = generate([])
check("generation runs", code == 0, err[-300:])
check("generation prints a continuation", len(whole.strip()) > 0, repr(whole[:200]))
code, chunked, err = generate(["-b", "3"])
check("prefill in chunks of 3 gives the same greedy text", code == 0 and chunked == whole,
      f"{chunked[:120]!r} vs {whole[:120]!r}")

r = subprocess.run([swrun, "fit", "-m", model], capture_output=True, text=True, timeout=300)
check("fit refuses Gemma 4 with one line", r.returncode != 0 and r.stderr.strip().count("\n") == 0 and
      "Gemma 4" in r.stderr, r.stderr)

# The MoE variant (26B-A4B's layout: routed experts beside every layer's MLP): inspect names the experts, and
# generation runs with the same greedy text in one batch and in chunks of 3.
model = os.path.join(work, "gemma4-moe.gguf")
subprocess.run([make_synthetic, "--arch", "gemma4", "--gemma4-moe", "--window", "4", "--vocab",
                os.path.join(vocab_dir, "ggml-vocab-gemma-4.gguf"), "-o", model], check=True)
r = subprocess.run([swrun, "inspect", model], capture_output=True, text=True, errors="replace", timeout=300)
check("inspect shows the MoE layout", r.returncode == 0 and
      "mixture of experts on layers 0-7: 8 experts, 2 used per token, expert ffn 256" in r.stdout, r.stdout[-300:])
code, whole, err = generate([])
check("MoE generation runs", code == 0 and len(whole.strip()) > 0, err[-300:])
code, chunked, err = generate(["-b", "3"])
check("MoE prefill in chunks of 3 gives the same greedy text", code == 0 and chunked == whole,
      f"{chunked[:120]!r} vs {whole[:120]!r}")
# The GPU memory plan builds the model as the CUDA backend would: it refuses the experts with one line.
r = subprocess.run([swrun, "fit", "-m", model], capture_output=True, text=True, timeout=300)
check("fit refuses Gemma 4's experts with one line", r.returncode != 0 and r.stderr.strip().count("\n") == 0 and
      "Gemma 4's mixture of experts" in r.stderr, r.stderr)
finish()
