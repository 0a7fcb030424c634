"""`swrun fit`: the memory plan on a synthetic Gemma 3 (make_synthetic_model) and, where present, the example model.
Exit 0 when the plan fits, 1 when it does not (with the part and the flag that helps), 2 on bad input (one line on
stderr); --json carries the issue's keys; --mem moves the verdict exactly at total + the context reserve; --attn
dense leaves no rings; -c 0 is the training context; gpt-oss (sinks, YaRN, MoE: all on the CUDA backend) plans
without a refusal. Reads headers only: no GPU, a few seconds.
Usage: cli_fit.py SWRUN MAKE_SYNTHETIC WORKDIR"""
import json
import os
import subprocess
import sys

from cli_check import check, finish

swrun, make_synthetic, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
model = os.path.join(work, "synthetic_gemma3.gguf")
subprocess.run([make_synthetic, "--arch", "gemma3", "-o", model], check=True, capture_output=True)
gpt_oss = os.path.join(work, "synthetic_gpt_oss.gguf")
subprocess.run([make_synthetic, "--arch", "gpt-oss", "-o", gpt_oss], check=True, capture_output=True)
GIB = 1 << 30
KEYS = ["weights_bytes", "kv_bytes", "activation_bytes", "workspace_bytes", "total_bytes", "budget_bytes", "fits"]


def fit(*args):
    r = subprocess.run([swrun, "fit", *args], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def plan(*args):
    code, out, err = fit(*args, "--json")
    try:
        return code, json.loads(out)
    except ValueError:
        return code, {"stdout": out, "stderr": err}


# Fits: a table and "fits", exit 0.
code, out, err = fit("-m", model, "-c", "4096", "--mem", "80G")
check("fits: exit 0", code == 0, err[-300:])
for part in ["weights", "KV dense", "KV rings", "activations", "workspace", "total", "budget"]:
    has = any(line.strip().startswith(part) for line in out.splitlines())
    check(f"table has '{part}'", has, "" if has else out[-500:])
check("says it fits", out.strip().splitlines()[-1].startswith("fits"), out.strip().splitlines()[-1])

# JSON: the keys, consistent sums, budget = --mem less the stated reserve.
code, j = plan("-m", model, "-c", "4096", "--mem", "80G")
check("json: exit 0", code == 0, "" if code == 0 else str(j)[:300])
check("json: the issue's keys", all(k in j for k in KEYS), str(sorted(j)))
check("json: key order starts with the issue's", list(j)[:len(KEYS)] == KEYS, str(list(j)[:8]))
check("json: total is the sum", j["total_bytes"] == j["weights_bytes"] + j["kv_bytes"] + j["activation_bytes"] +
      j["workspace_bytes"])
check("json: budget is --mem less the reserve", j["budget_bytes"] == 80 * GIB - j["context_reserve_bytes"])
check("json: kv dense + rings", j["kv_bytes"] == j["kv_dense_bytes"] + j["kv_ring_bytes"] and j["kv_ring_bytes"] > 0)
check("json: fits", j["fits"] is True)
check("json: parts sum to the total", sum(p["bytes"] for p in j["parts"]) == j["total_bytes"])

# The verdict turns exactly at total + reserve (--mem in MiB here: 1 MiB below the edge does not fit).
edge_mib = (j["total_bytes"] + j["context_reserve_bytes"]) // (1 << 20) + 1
code, above = plan("-m", model, "-c", "4096", "-b", str(j["ubatch"]), "--mem", f"{edge_mib}M")
check("1 MiB above the edge fits (exit 0)", code == 0 and above.get("fits") is True, f"exit {code}")
code, below = plan("-m", model, "-c", "4096", "-b", str(j["ubatch"]), "--mem", f"{edge_mib - 2}M")
check("1 MiB below the edge does not fit (exit 1)", code == 1 and below.get("fits") is False, f"exit {code}")
check("json: message names a flag", "try -c" in below.get("message", "") or "try -b" in below.get("message", ""),
      below.get("message", ""))
code, out, err = fit("-m", model, "-c", "4096", "-b", str(j["ubatch"]), "--mem", f"{edge_mib - 2}M")
last = out.strip().splitlines()[-1] if out.strip() else ""
check("human: exit 1, 'does not fit' names the part and a flag",
      code == 1 and last.startswith("does not fit:") and "needs" in last and "try -" in last, last)

# Activations grow linearly with -b.
acts = [plan("-m", model, "-c", "8192", "-b", str(b), "--mem", "80")[1]["activation_bytes"] for b in (256, 512, 1024)]
check("activations linear in -b", acts[2] - acts[1] == 2 * (acts[1] - acts[0]), str(acts))

# --attn dense: every layer dense, no rings; -c 0: the training context.
code, dense = plan("-m", model, "-c", "4096", "--attn", "dense", "--mem", "80")
check("--attn dense: no rings", code == 0 and dense.get("kv_ring_bytes") == 0 and dense.get("ring_layers") == 0,
      f"exit {code}, rings {dense.get('ring_layers')}")
code, train = plan("-m", model, "-c", "0", "--mem", "80")
inspect = subprocess.run([swrun, "inspect", model], capture_output=True, text=True).stdout
declared = [int(l.split()[-1]) for l in inspect.splitlines() if l.strip().startswith("gemma3.context_length")]
check("-c 0: the training context", code == 0 and train.get("ctx") == (declared[0] if declared else 4096),
      f"{train.get('ctx')} vs {declared}")

# Bad input: exit 2, one line on stderr starting with 'swrun: error:' and naming the problem.
text = os.path.join(work, "not.gguf")
open(text, "w").write("this is not a gguf file\n" * 10)
for label, args, needle in [
    ("missing file", ["-m", os.path.join(work, "nope.gguf")], "nope.gguf"),
    ("not a GGUF", ["-m", text], "gguf"),
    ("bad --mem", ["-m", model, "--mem", "lots"], "--mem"),
    ("bad --attn", ["-m", model, "--attn", "sliding:zero"], "--attn"),
    ("--attn past the last layer", ["-m", model, "--attn", "0-99:dense"], "layer"),
    ("negative -c", ["-m", model, "-c", "-1"], "-c"),
    ("negative -b", ["-m", model, "-b", "-4"], "-b"),
    ("no -m", [], "model"),
    ("unknown flag", ["-m", model, "--frobnicate"], "frobnicate"),
]:
    code, out, err = fit(*args)
    lines = [l for l in err.splitlines() if l.strip()]
    check(f"bad input: {label}: exit 2, one clear line",
          code == 2 and len(lines) == 1 and lines[0].startswith("swrun: error:") and needle.lower() in lines[0].lower(),
          f"exit {code}: {' | '.join(lines)[:200]}")

# gpt-oss: everything it needs runs on the CUDA backend, so the plan counts it (experts in their MXFP4 blocks).
code, j = plan("-m", gpt_oss, "-c", "1024", "--mem", "80")
check("gpt-oss plans on the GPU", code == 0 and j.get("fits") is True and j.get("weights_bytes", 0) > 0,
      f"exit {code}: {str(j)[:200]}")

# The example model, where present: a 32K context on an 80 GiB GPU gets the 32768 chunk.
example = os.environ.get("SWRUN_MODEL") or os.path.join(os.path.dirname(__file__), "..", "models",
                                                        "gemma-3-270m-q4_k_m.gguf")
if os.path.exists(example):
    code, j = plan("-m", example, "-c", "32768", "--mem", "80")
    check("example model: 32K fits 80 GiB with ubatch 32768", code == 0 and j.get("ubatch") == 32768,
          f"exit {code}, ubatch {j.get('ubatch')}, total {j.get('total_bytes')}")
else:
    print("skip example model (not found)")
finish()
