#!/usr/bin/env python3
"""Writes tests/fixtures/quant/: random GGUF blocks per tensor type with the values the `gguf` package's
dequantizer gives for them, and, for the types the package can quantize, fp32 inputs with the bytes it produces.

Files per type T (lower-case name):
  T.blocks / T.f32            raw blocks and their dequantized float32 values (little-endian)
  T.quant_in.f32 / T.quant_out.blocks   quantizer input and the package's quantized bytes (where it has one)

Blocks are random bytes with the fp16 scale fields replaced by sane values (finite, mixed signs and
magnitudes, including zero and fp16 subnormals), so every bit of the packed fields is exercised.
Run: python3 tests/reference/make_quant_fixtures.py [--seed N|random] [--out DIR]
(ctest also runs it with a random seed into the build tree and checks the C++ code against that fresh set.)
"""
import argparse
import pathlib
import secrets
import sys

import numpy as np

try:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
    from gguf import quants
except ImportError:
    print("the gguf Python package is not installed: skipping", file=sys.stderr)
    sys.exit(77)

COMMITTED = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "quant"

# Byte offsets of the fp16 scale fields inside each block (from the ggml block structs).
SCALE_OFFSETS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS_PER_TYPE = {T.Q4_0: 8, T.Q4_1: 8, T.Q5_0: 8, T.Q5_1: 8, T.Q8_0: 8, T.Q4_K: 4, T.Q5_K: 4, T.Q6_K: 4}
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.F16, T.BF16]
MXFP4_BLOCKS = 16


def sane_scales(rng, count):
    """fp16 scales: mostly normal values over several decades, plus zero and subnormals."""
    mags = 10.0 ** rng.uniform(-4, 1, count)
    vals = (mags * rng.choice([-1.0, 1.0], count)).astype(np.float16)
    vals[0] = np.float16(0.0)
    if count > 1:
        vals[1] = np.frombuffer(np.uint16(rng.integers(1, 0x400)).tobytes(), dtype=np.float16)[0]  # subnormal
    rng.shuffle(vals)
    return vals


def random_blocks(rng, qtype):
    n_blocks = BLOCKS_PER_TYPE[qtype]
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    offsets = SCALE_OFFSETS[qtype]
    scales = sane_scales(rng, n_blocks * len(offsets)).reshape(n_blocks, len(offsets))
    for k, off in enumerate(offsets):
        blocks[:, off:off + 2] = np.ascontiguousarray(scales[:, k]).view(np.uint8).reshape(n_blocks, 2)
    return blocks


def special_f16():
    bits = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
            0x7E00, 0x7C01, 0x3555, 0x0200]
    return np.array(bits, dtype=np.uint16)


def special_bf16():
    bits = [0x0000, 0x8000, 0x0001, 0x8001, 0x007F, 0x0080, 0x3F80, 0xBF80, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80,
            0x7FC0, 0x7F81, 0x3EAB, 0x0040]
    return np.array(bits, dtype=np.uint16)


def write(out, name, array):
    (out / name).write_bytes(np.ascontiguousarray(array).tobytes())


def dequant_fixtures(rng, out):
    for qtype in BLOCKS_PER_TYPE:
        blocks = random_blocks(rng, qtype)
        values = quants.dequantize(blocks, qtype).astype(np.float32)
        assert values.size == blocks.shape[0] * GGML_QUANT_SIZES[qtype][0]
        write(out, f"{qtype.name.lower()}.blocks", blocks)
        write(out, f"{qtype.name.lower()}.f32", values)
    # Plain types: every special class (zeros, subnormals, extremes, inf, NaN) plus random bit patterns.
    for qtype, specials in ((T.F16, special_f16()), (T.BF16, special_bf16())):
        raw = np.concatenate([specials, rng.integers(0, 0x10000, 48, dtype=np.uint16)]).astype("<u2")
        values = quants.dequantize(raw.view(np.uint8), qtype).astype(np.float32)
        write(out, f"{qtype.name.lower()}.blocks", raw)
        write(out, f"{qtype.name.lower()}.f32", values)
    f32 = rng.standard_normal(64).astype("<f4")
    write(out, "f32.blocks", f32)
    write(out, "f32.f32", quants.dequantize(f32.view(np.uint8), T.F32).astype(np.float32))


def mxfp4_fixtures(rng, out):
    """MXFP4 blocks (random nibbles, exponent bytes that keep values finite: mostly 100..154, some of the
    subnormal scales 0 and 1) and the package's quantization of the usual rows. Drawn after every other
    type, so that adding it left their committed fixtures unchanged."""
    blocks = rng.integers(0, 256, (MXFP4_BLOCKS, GGML_QUANT_SIZES[T.MXFP4][1]), dtype=np.uint8)
    blocks[:, 0] = rng.integers(100, 155, MXFP4_BLOCKS)
    blocks[:2, 0] = [0, 1]
    write(out, "mxfp4.blocks", blocks)
    write(out, "mxfp4.f32", quants.dequantize(blocks, T.MXFP4).astype(np.float32))
    data = quant_rows(rng, 32).astype(np.float32)
    write(out, "mxfp4.quant_in.f32", data)
    write(out, "mxfp4.quant_out.blocks", quants.quantize(data, T.MXFP4).view(np.uint8))


def quant_rows(rng, block):
    return np.concatenate([
        rng.standard_normal(4 * block),                 # ordinary data
        rng.standard_normal(block) * 1e-3 + 5.0,        # offset data (all positive)
        np.zeros(block),                                # all zero: d = 0 must not divide
        np.full(block, -2.5),                           # constant negative
        np.round(rng.standard_normal(block) * 8) / 8,   # values on a coarse grid: rounding ties
        rng.standard_normal(block) * 1e4,               # large magnitudes
    ])


def quant_fixtures(rng, out):
    for qtype in QUANTIZABLE:
        block = GGML_QUANT_SIZES[qtype][0] if qtype not in (T.F16, T.BF16) else 32
        data = quant_rows(rng, block).astype(np.float32)
        write(out, f"{qtype.name.lower()}.quant_in.f32", data)
        write(out, f"{qtype.name.lower()}.quant_out.blocks", quants.quantize(data, qtype).view(np.uint8))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", default="20240601", help="an integer, or 'random' for a fresh set")
    parser.add_argument("--out", type=pathlib.Path, default=COMMITTED)
    args = parser.parse_args()
    seed = secrets.randbits(32) if args.seed == "random" else int(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dequant_fixtures(rng, args.out)
    quant_fixtures(rng, args.out)
    mxfp4_fixtures(rng, args.out)
    print(f"seed {seed}: wrote {len(list(args.out.iterdir()))} files to {args.out}")


if __name__ == "__main__":
    main()
