"""Independent float64 reference forward pass for the GGUF architectures swrun runs (gemma3, llama).

Written from the architecture description in issue 2 with numpy and the `gguf` package's reader and
dequantizers only, so that it shares no code (and no bugs) with the C++ runtime it checks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import gguf
from gguf.quants import dequantize

UNBOUNDED = math.inf

# Rows of the output matrix dequantized at a time: keeps the float64 copy of a 262144-row vocabulary small.
OUTPUT_CHUNK_ROWS = 16384


@dataclass(frozen=True)
class Window:
    """Keys visible to query i: i-left <= j <= i+right (ARCHITECTURE.md). Causal W keys = (W-1, 0)."""
    left: float = UNBOUNDED
    right: int = 0

    @staticmethod
    def dense() -> "Window":
        return Window()

    @staticmethod
    def sliding(keys: int) -> "Window":
        if keys < 1:
            raise ValueError(f"sliding window must have at least 1 key, got {keys}")
        return Window(keys - 1, 0)


def resolve_attn_spec(spec: str, declared: list[Window], model_window: int) -> list[Window]:
    """Per-layer windows for an --attn spec: model | dense | sliding[:W] | "0-4:sliding:512,5:dense,6-:sliding"."""
    n_layer = len(declared)

    def policy(kind: str, width: str | None) -> Window:
        if kind in ("dense", "dense-naive"):
            if width is not None:
                raise ValueError(f"attn spec: '{kind}' takes no window")
            return Window.dense()
        if kind == "sliding":
            keys = int(width) if width is not None else model_window
            if keys <= 0:
                raise ValueError("attn spec: 'sliding' without a width needs a model that declares a window")
            return Window.sliding(keys)
        raise ValueError(f"attn spec: unknown attention kind '{kind}'")

    spec = spec.strip()
    if spec == "model":
        return list(declared)
    if not re.match(r"^\d", spec):
        kind, _, width = spec.partition(":")
        return [policy(kind, width or None)] * n_layer

    result = list(declared)
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(-(\d*))?:([a-z-]+)(:(\d+))?", part.strip())
        if not m:
            raise ValueError(f"attn spec: cannot parse '{part}'")
        first = int(m.group(1))
        last = first if m.group(2) is None else (int(m.group(3)) if m.group(3) else n_layer - 1)
        if first > last or last >= n_layer:
            raise ValueError(f"attn spec: layers '{part}' outside 0..{n_layer - 1}")
        for layer in range(first, last + 1):
            result[layer] = policy(m.group(4), m.group(6))
    return result


@dataclass
class Rope:
    base: float
    position_scale: float  # linear scaling: rotation angle uses position * position_scale
    neox: bool             # True: rotate (i, i + n_rot/2); False: rotate (2i, 2i+1)
    n_rot: int


@dataclass
class Config:
    arch: str
    n_layer: int
    dim: int
    n_head: int
    n_head_kv: int
    head_dim: int
    eps: float
    attn_scale: float
    model_window: int               # 0: the model declares no sliding window
    declared: list[Window] = field(default_factory=list)
    ropes: list[Rope] = field(default_factory=list)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def apply_rope(x: np.ndarray, positions: np.ndarray, rope: Rope) -> np.ndarray:
    """x: [n, heads, head_dim]; rotates the first n_rot dims of every head."""
    half = rope.n_rot // 2
    inv_freq = rope.base ** (-np.arange(half, dtype=np.float64) * 2.0 / rope.n_rot)
    angle = (positions.astype(np.float64) * rope.position_scale)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    out = x.copy()
    if rope.neox:
        a, b = x[..., :half], x[..., half:rope.n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:rope.n_rot] = b * cos + a * sin
    else:
        a, b = x[..., 0:rope.n_rot:2], x[..., 1:rope.n_rot:2]
        out[..., 0:rope.n_rot:2] = a * cos - b * sin
        out[..., 1:rope.n_rot:2] = a * sin + b * cos
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, window: Window) -> np.ndarray:
    """q: [n, Hq, d], k/v: [n, Hkv, d] at positions 0..n-1; grouped-query heads share kv head h // (Hq/Hkv)."""
    n, n_head, _ = q.shape
    group = n_head // k.shape[1]
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    visible = (j >= i - window.left) & (j <= i + window.right)
    out = np.empty_like(q)
    for h in range(n_head):
        kv = h // group
        scores = (q[:, h, :] @ k[:, kv, :].T) * scale
        scores = np.where(visible, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, kv, :]
    return out


class GgufModel:
    """A GGUF file's metadata and weights, dequantized to float64 on demand."""

    def __init__(self, path: str):
        self.path = path
        self.reader = gguf.GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}

    def meta(self, key: str, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(f"{self.path}: missing metadata key {key}")
            return default
        return f.contents()

    def has_tensor(self, name: str) -> bool:
        return name in self.tensors

    def rows(self, name: str) -> int:
        return int(self.tensors[name].shape[-1]) if len(self.tensors[name].shape) > 1 else 1

    def weight(self, name: str, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
        """Rows [row_start, row_stop) of a matrix [rows, cols] (a vector for 1-D tensors), as float64."""
        t = self.tensors.get(name)
        if t is None:
            raise KeyError(f"{self.path}: missing tensor {name}")
        data = t.data if t.data.ndim == 1 else t.data[row_start:row_stop]
        return np.asarray(dequantize(np.asarray(data), t.tensor_type), dtype=np.float64)

    def weight_rows(self, name: str, row_ids: np.ndarray) -> np.ndarray:
        t = self.tensors[name]
        return np.asarray(dequantize(np.asarray(t.data[row_ids]), t.tensor_type), dtype=np.float64)


def read_config(m: GgufModel) -> Config:
    arch = m.meta("general.architecture")
    if arch not in ("gemma3", "llama"):
        raise ValueError(f"{m.path}: reference supports gemma3 and llama, not {arch}")
    n_layer = int(m.meta(f"{arch}.block_count"))
    dim = int(m.meta(f"{arch}.embedding_length"))
    n_head = int(m.meta(f"{arch}.attention.head_count"))
    n_head_kv = int(m.meta(f"{arch}.attention.head_count_kv", n_head))
    head_dim = int(m.meta(f"{arch}.attention.key_length", dim // n_head))
    eps = float(m.meta(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5 if arch == "llama" else 1e-6))
    attn_scale = float(m.meta(f"{arch}.attention.scale", 1.0 / math.sqrt(head_dim)))
    freq_base = float(m.meta(f"{arch}.rope.freq_base", 10000.0))
    n_rot = int(m.meta(f"{arch}.rope.dimension_count", head_dim))
    scaling_type = m.meta(f"{arch}.rope.scaling.type", "none")
    factor = float(m.meta(f"{arch}.rope.scaling.factor", 1.0))
    if scaling_type not in ("none", "linear"):
        raise ValueError(f"{m.path}: rope scaling '{scaling_type}' is not implemented in the reference")
    position_scale = 1.0 / factor if scaling_type == "linear" and factor > 0 else 1.0

    if arch == "gemma3":
        window = int(m.meta("gemma3.attention.sliding_window"))
        is_global = [(layer + 1) % 6 == 0 for layer in range(n_layer)]
        declared = [Window.dense() if g else Window.sliding(window) for g in is_global]
        # Sliding layers use the fixed local base 10000 and no scaling; global layers the file's base and scaling.
        ropes = [Rope(freq_base, position_scale, True, n_rot) if g else Rope(10000.0, 1.0, True, n_rot)
                 for g in is_global]
    else:
        window = int(m.meta("llama.attention.sliding_window", 0))
        declared = [Window.sliding(window) if window > 0 else Window.dense()] * n_layer
        ropes = [Rope(freq_base, position_scale, False, n_rot)] * n_layer
    return Config(arch, n_layer, dim, n_head, n_head_kv, head_dim, eps, attn_scale, window, declared, ropes)


def forward(m: GgufModel, tokens: list[int], attn_spec: str = "model") -> np.ndarray:
    """Logits [n, vocab] (float64) of every position of `tokens` run from position 0."""
    cfg = read_config(m)
    windows = resolve_attn_spec(attn_spec, cfg.declared, cfg.model_window)
    gemma = cfg.arch == "gemma3"
    ids = np.asarray(tokens, dtype=np.int64)
    vocab = m.rows("token_embd.weight")
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"token id out of range 0..{vocab - 1}")
    n = len(ids)
    positions = np.arange(n)

    x = m.weight_rows("token_embd.weight", ids)
    if gemma:
        x = x * math.sqrt(cfg.dim)

    for layer in range(cfg.n_layer):
        p = f"blk.{layer}."
        h = rms_norm(x, m.weight(p + "attn_norm.weight"), cfg.eps)
        q = (h @ m.weight(p + "attn_q.weight").T).reshape(n, cfg.n_head, cfg.head_dim)
        k = (h @ m.weight(p + "attn_k.weight").T).reshape(n, cfg.n_head_kv, cfg.head_dim)
        v = (h @ m.weight(p + "attn_v.weight").T).reshape(n, cfg.n_head_kv, cfg.head_dim)
        if gemma:
            q = rms_norm(q, m.weight(p + "attn_q_norm.weight"), cfg.eps)
            k = rms_norm(k, m.weight(p + "attn_k_norm.weight"), cfg.eps)
        q = apply_rope(q, positions, cfg.ropes[layer])
        k = apply_rope(k, positions, cfg.ropes[layer])
        a = attention(q, k, v, cfg.attn_scale, windows[layer]).reshape(n, cfg.n_head * cfg.head_dim)
        a = a @ m.weight(p + "attn_output.weight").T
        if gemma:
            a = rms_norm(a, m.weight(p + "post_attention_norm.weight"), cfg.eps)
        x = x + a

        h = rms_norm(x, m.weight(p + "ffn_norm.weight"), cfg.eps)
        gate = h @ m.weight(p + "ffn_gate.weight").T
        up = h @ m.weight(p + "ffn_up.weight").T
        f = ((gelu_tanh(gate) if gemma else silu(gate)) * up) @ m.weight(p + "ffn_down.weight").T
        if gemma:
            f = rms_norm(f, m.weight(p + "post_ffw_norm.weight"), cfg.eps)
        x = x + f

    x = rms_norm(x, m.weight("output_norm.weight"), cfg.eps)
    out_name = "output.weight" if m.has_tensor("output.weight") else "token_embd.weight"
    n_vocab = m.rows(out_name)
    logits = np.empty((n, n_vocab), dtype=np.float64)
    for r0 in range(0, n_vocab, OUTPUT_CHUNK_ROWS):
        r1 = min(r0 + OUTPUT_CHUNK_ROWS, n_vocab)
        logits[:, r0:r1] = x @ m.weight(out_name, r0, r1).T
    return logits


def main() -> None:
    import argparse
    parser = argparse.ArgumentParser(description="Reference logits for a token-id list; prints each position's top tokens")
    parser.add_argument("model")
    parser.add_argument("--tokens", required=True, help="comma-separated token ids, e.g. 2,818,5279")
    parser.add_argument("--attn", default="model", help="model | dense | sliding[:W] | per-layer list")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    m = GgufModel(args.model)
    pieces = m.meta("tokenizer.ggml.tokens", [])
    logits = forward(m, [int(t) for t in args.tokens.split(",")], args.attn)
    for pos, row in enumerate(logits):
        best = np.argsort(-row)[:args.top]
        names = [repr(pieces[t]) if t < len(pieces) else str(int(t)) for t in best]
        print(pos, "  ".join(f"{name} {row[t]:.4f}" for name, t in zip(names, best)))


if __name__ == "__main__":
    main()
