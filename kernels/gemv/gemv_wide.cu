// Variant 9 of the decode GEMV (gemv_wide.cuh): units of 32 weights, 4 rows per warp, rows staged by cp.async.
#include <cstdlib>
#include "kernels/gemv/gemv_wide.cuh"

#include <algorithm>
#include <string>
#include <type_traits>

#include <cuda_fp16.h>

#include "kernels/attention/mma_sm80.cuh"  // cp_async_16, cp_async_commit, cp_async_wait
#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/activation.cuh"
#include "kernels/elementwise/vec.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarps = 8;
constexpr int kThreads = kWarp * kWarps;
constexpr int kTileRows = 4;  // weight rows a warp multiplies at once (gated: 2 gate rows and the same 2 up rows)
constexpr int kStages = 3;    // passes staged per warp: two in flight while one is decoded

// N little-endian words starting at any byte address p of shared memory: the aligned words around them, shifted.
// Reads one word past the last whole word (the stages leave room for it).
template <int N>
__device__ __forceinline__ void lds_words(const uint8_t* p, uint32_t (&out)[N]) {
  const uint32_t misalign = uint32_t(reinterpret_cast<uintptr_t>(p) & 3);
  const auto* w = reinterpret_cast<const uint32_t*>(p - misalign);  // pointer arithmetic: still known as shared
  const uint32_t shift = misalign * 8;
  uint32_t lo = w[0];
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const uint32_t hi = w[i + 1];
    out[i] = __funnelshift_r(lo, hi, shift);
    lo = hi;
  }
}

// Byte k of v as a float minus `bias_plus_2_23` - 2^23: the byte becomes the low mantissa bits of 2^23 (exact), one
// subtraction removes 2^23 and any integer bias with it (exact for these small integers).
__device__ __forceinline__ float byte_value(uint32_t v, int k, float bias_plus_2_23) {
  return __uint_as_float(__byte_perm(v, 0x4B000000u, 0x7440u | uint32_t(k))) - bias_plus_2_23;
}
constexpr float k2Pow23 = 8388608.f;

// Byte k of v, which holds 0x80 | m (m < 128), as the float whose bits are 0x3F800000 | m << 16: 1 + m / 128, exact,
// in one byte permute. With m = q << 3 (4-bit q) that is 1 + q/16, with m = q << 1 (6-bit q) 1 + q/64. A dot then
// needs no subtraction per weight: sum((1 + q/s) x) = sum(x) + sum(q x)/s.
__device__ __forceinline__ float one_plus(uint32_t v, int k) {
  return __uint_as_float(__byte_perm(v, 0x3F000000u, 0x7044u | (uint32_t(k) << 8)));
}

__device__ __forceinline__ float half_lo(uint32_t v) { return __half2float(__ushort_as_half(uint16_t(v & 0xFFFF))); }
__device__ __forceinline__ float half_hi(uint32_t v) { return __half2float(__ushort_as_half(uint16_t(v >> 16))); }

// 8 consecutive activations as two float4 loads (16-byte aligned: units start at multiples of 8 elements).
__device__ __forceinline__ void load8(const float* x, float* v) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(x)), b = __ldg(reinterpret_cast<const float4*>(x) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// Sum of n floats in four interleaved chains (n a multiple of 4), for the latency of one.
template <int N>
__device__ __forceinline__ float sum_of(const float* v) {
  float s[4] = {v[0], v[1], v[2], v[3]};
#pragma unroll
  for (int i = 4; i < N; ++i) s[i % 4] += v[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// ---- units: a type's 32-weight piece of a block, its activations, and its dot with them ----

// Q4_K unit u = 2g + h: qs bytes 32g + 16h .. +16, whose low nibbles are elements 64g + 16h + i of sub-block 2g and
// high nibbles elements 64g + 32 + 16h + i of sub-block 2g + 1 (i < 16). Q4_K rows are whole 144-byte blocks, so
// every block of a 16-byte aligned matrix is 16-byte aligned: the header and the unit's qs are one 16-byte load each.
struct UnitQ4_K {
  static constexpr int kBlockBytes = 144, kBlockElems = 256, kUnitsPerBlock = 8;
  struct X {
    float lo[16], hi[16];
    float sum_lo, sum_hi;
  };
  __device__ static void load_x(const float* xb, int u, X& x) {
    const float* p = xb + 64 * (u / 2) + 16 * (u % 2);
    load8(p, x.lo), load8(p + 8, x.lo + 8), load8(p + 32, x.hi), load8(p + 40, x.hi + 8);
    x.sum_lo = sum_of<16>(x.lo), x.sum_hi = sum_of<16>(x.hi);
  }
  __device__ static float dot(const uint8_t* block, int u, const X& x) {
    return dot(*reinterpret_cast<const uint4*>(block), *reinterpret_cast<const uint4*>(block + 16 + 16 * u), u, x);
  }
  // hdr: the block's first 16 bytes (d, dmin | the 12 scale bytes of quant::k_scale_min); qv: unit u's 16 qs bytes.
  __device__ static float dot(const uint4& hdr, const uint4& qv, int u, const X& x) {
    return scaled(hdr, u, nibble_sum<false>(qv, x.lo), nibble_sum<true>(qv, x.hi), x.sum_lo, x.sum_hi);
  }
  // Sum of (1 + q/16) x over the unit's 16 low (sub-block 2g) or high (2g + 1) nibbles and their activations.
  template <bool kHigh>
  __device__ static float nibble_sum(const uint4& qv, const float* x16) {
    const uint32_t qs[4] = {qv.x, qv.y, qv.z, qv.w};
    float f = 0.f;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const uint32_t q = (((kHigh ? qs[w] >> 1 : qs[w] << 3)) & 0x78787878u) | 0x80808080u;
#pragma unroll
      for (int k = 0; k < 4; ++k) f = fmaf(one_plus(q, k), x16[4 * w + k], f);
    }
    return f;
  }
  // The unit's dot from its nibble sums f and activation sums.
  __device__ static float scaled(const uint4& hdr, int u, float f_lo, float f_hi, float sum_lo, float sum_hi) {
    // Sub-blocks j = 2g, 2g + 1 share byte j & 3 of each scale word; j >= 4 (g >= 2) takes the packed form.
    const uint32_t shift = 8 * ((2 * (u / 2)) & 3);
    const uint32_t b0 = hdr.y >> shift, b1 = hdr.z >> shift, b2 = hdr.w >> shift;  // bytes j', j'+4, j'+8
    uint32_t sc_lo, m_lo, sc_hi, m_hi;
    if (u < 4) {
      sc_lo = b0 & 63, m_lo = b1 & 63, sc_hi = (b0 >> 8) & 63, m_hi = (b1 >> 8) & 63;
    } else {
      sc_lo = (b2 & 0xF) | (((b0 >> 6) & 3) << 4), m_lo = ((b2 >> 4) & 0xF) | (((b1 >> 6) & 3) << 4);
      sc_hi = ((b2 >> 8) & 0xF) | (((b0 >> 14) & 3) << 4), m_hi = ((b2 >> 12) & 0xF) | (((b1 >> 14) & 3) << 4);
    }
    // d*sc * sum(q x) - dmin*m * sum(x) with sum(q x) = 16 (f - sum(x)).
    const float d = half_lo(hdr.x), dmin = half_hi(hdr.x);
    const float s_lo = 16.f * __fmul_rn(d, float(sc_lo)), s_hi = 16.f * __fmul_rn(d, float(sc_hi));
    const float lo = fmaf(s_lo, f_lo, -(s_lo + __fmul_rn(dmin, float(m_lo))) * sum_lo);
    return lo + fmaf(s_hi, f_hi, -(s_hi + __fmul_rn(dmin, float(m_hi))) * sum_hi);
  }
};

// Q6_K unit u: half h = u / 4, l0 = 8 * (u % 4); elements 128h + 32k + l0 + i (k < 4, i < 8) from ql[64h + l0 + i]
// (k = 0 low nibble, 2 high), ql[64h + 32 + l0 + i] (k = 1 low, 3 high) and bit pair k of qh[32h + l0 + i];
// group k's scale is scales[8h + l0/16 + 2k]. Blocks are 210 bytes: at 2-byte offsets, read as shifted words.
struct UnitQ6_K {
  static constexpr int kBlockBytes = 210, kBlockElems = 256, kUnitsPerBlock = 8;
  struct X {
    float v[4][8];
    float sum[4];
  };
  __device__ static void load_x(const float* xb, int u, X& x) {
    const float* p = xb + 128 * (u / 4) + 8 * (u % 4);
#pragma unroll
    for (int k = 0; k < 4; ++k) load8(p + 32 * k, x.v[k]), x.sum[k] = sum_of<8>(x.v[k]);
  }
  __device__ static float dot(const uint8_t* block, int u, const X& x) {
    const int h = u / 4, l0 = 8 * (u % 4);
    uint32_t a[2], b[2], q[2], s[2], dw[1];
    lds_words<2>(block + 64 * h + l0, a);
    lds_words<2>(block + 64 * h + 32 + l0, b);
    lds_words<2>(block + 128 + 32 * h + l0, q);
    lds_words<2>(block + 192 + 8 * h + l0 / 16, s);  // scales for k = 0..3 at bytes 0, 2, 4, 6
    lds_words<1>(block + 208, dw);
    float f[4] = {0.f, 0.f, 0.f, 0.f};  // sums of (1 + q/64) x per group
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      // Each byte 0x80 | q << 1: the nibble in bits 1-4, the qh pair in bits 5-6.
      const uint32_t v[4] = {((a[w] << 1) & 0x1E1E1E1Eu) | ((q[w] << 5) & 0x60606060u) | 0x80808080u,
                             ((b[w] << 1) & 0x1E1E1E1Eu) | ((q[w] << 3) & 0x60606060u) | 0x80808080u,
                             ((a[w] >> 3) & 0x1E1E1E1Eu) | ((q[w] << 1) & 0x60606060u) | 0x80808080u,
                             ((b[w] >> 3) & 0x1E1E1E1Eu) | ((q[w] >> 1) & 0x60606060u) | 0x80808080u};
#pragma unroll
      for (int k = 0; k < 4; ++k)
#pragma unroll
        for (int j = 0; j < 4; ++j) f[k] = fmaf(one_plus(v[k], j), x.v[k][4 * w + j], f[k]);
    }
    // d*sc * sum((q - 32) x) with sum(q x) = 64 (f - sum(x)): d*sc * (64 f - 96 sum(x)).
    const float d = half_lo(dw[0]);
    float acc = 0.f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int sc = int(int8_t(uint8_t(s[k / 2] >> (16 * (k % 2)))));
      acc = fmaf(__fmul_rn(d, float(sc)), fmaf(64.f, f[k], -96.f * x.sum[k]), acc);
    }
    return acc;
  }
};

// Q8_0 unit = one block: d, then 32 int8 quants (elements 0..31).
struct UnitQ8_0 {
  static constexpr int kBlockBytes = 34, kBlockElems = 32, kUnitsPerBlock = 1;
  struct X {
    float v[32];
  };
  __device__ static void load_x(const float* xb, int, X& x) {
#pragma unroll
    for (int i = 0; i < 32; i += 8) load8(xb + i, x.v + i);
  }
  __device__ static float dot(const uint8_t* block, int, const X& x) {
    uint32_t qs[8], dw[1];
    lds_words<1>(block, dw);
    lds_words<8>(block + 2, qs);
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < 8; ++w) {
      const uint32_t biased = qs[w] ^ 0x80808080u;  // q + 128 as unsigned bytes
#pragma unroll
      for (int k = 0; k < 4; ++k) sum = fmaf(byte_value(biased, k, k2Pow23 + 128.f), x.v[4 * w + k], sum);
    }
    return half_lo(dw[0]) * sum;
  }
};

// ---- the kernel ----

struct WideArgs {
  GemvWideSeg seg[kGemvWideMaxSegs];
  int64_t seg_tiles[kGemvWideMaxSegs];  // tiles of each segment
  int count;
  const uint8_t* up;  // gated: the up matrix (seg[0] is the gate), else null
  int64_t row_bytes;
  int units_per_row, passes;
  int64_t tiles;
  GatedActKind act;
};

template <typename U>
struct WidePlan {
  static constexpr int kPassBlocks = kWarp / U::kUnitsPerBlock;
  // A row's pass, aligned down to 16 bytes, plus a vector for the skew and one for lds_words' read past the end.
  static constexpr int kRowVecs = (kPassBlocks * U::kBlockBytes + 15) / 16 + 2;
  static constexpr int kWarpVecs = kStages * kTileRows * kRowVecs;
  static constexpr size_t kSmemBytes = size_t(kWarps) * kWarpVecs * 16;
};

// Tile t: its first weight row (and the up matrix's, gated), where its outputs go, how many of its rows exist.
// Row r of the tile is output row r % kOutRows of the gate/plain matrix (r < kOutRows) or of the up matrix.
struct Tile {
  const uint8_t* w;
  const uint8_t* up;
  float* out;
  int valid;
};

template <int kRows, bool kGated>
constexpr int kOutRows = kGated ? kRows / 2 : kRows;

template <int kRows, bool kGated>
__device__ __forceinline__ Tile tile_at(const WideArgs& a, int64_t t) {
  // Constant indices only: an indexed kernel parameter would be copied to local memory.
  static_assert(kGemvWideMaxSegs == 3, "the segment chain below");
  GemvWideSeg seg = a.seg[0];
  if (a.count > 1 && t >= a.seg_tiles[0]) {
    t -= a.seg_tiles[0], seg = a.seg[1];
    if (a.count > 2 && t >= a.seg_tiles[1]) t -= a.seg_tiles[1], seg = a.seg[2];
  }
  const int64_t first = t * kOutRows<kRows, kGated>;
  return {seg.w + first * a.row_bytes, kGated ? a.up + first * a.row_bytes : nullptr, seg.out + first,
          int(min(int64_t(kOutRows<kRows, kGated>), seg.n_out - first))};
}

// Row r of a tile, or null past its valid rows.
template <int kRows, bool kGated>
__device__ __forceinline__ const uint8_t* tile_row(const Tile& t, int r, int64_t row_bytes) {
  const int o = r % kOutRows<kRows, kGated>;
  if (o >= t.valid) return nullptr;
  return (kGated && r >= kOutRows<kRows, kGated> ? t.up : t.w) + o * row_bytes;
}

template <typename U, bool kGated>
__global__ void __launch_bounds__(kThreads, 3) gemv_wide_kernel(WideArgs a, const float* __restrict__ x) {
  using Plan = WidePlan<U>;
  extern __shared__ uint4 smem[];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  uint4* stages = smem + warp * Plan::kWarpVecs;
  const int64_t warp_id = int64_t(blockIdx.x) * kWarps + warp, warp_stride = int64_t(gridDim.x) * kWarps;
  const int blocks_per_row = a.units_per_row / U::kUnitsPerBlock;

  // The warp's steps: its tiles warp_id, warp_id + warp_stride, ... and each tile's passes in order. Two cursors walk
  // them: the copies run kStages - 1 steps ahead of the decoding; step s goes to stage s % kStages.
  struct Cursor {
    int64_t tile;
    int pass, stage;
    Tile rows;
  };
  auto start = [&](int64_t tile) { return Cursor{tile, 0, 0, tile < a.tiles ? tile_at<kTileRows, kGated>(a, tile) : Tile{}}; };
  auto advance = [&](Cursor& c) {
    c.stage = c.stage + 1 == kStages ? 0 : c.stage + 1;
    if (++c.pass == a.passes) {
      c.pass = 0;
      c.tile += warp_stride;
      if (c.tile < a.tiles) c.rows = tile_at<kTileRows, kGated>(a, c.tile);
    }
  };
  auto issue = [&](const Cursor& c) {
    if (c.tile < a.tiles) {
      const int b0 = c.pass * Plan::kPassBlocks;
      const int bytes = min(Plan::kPassBlocks, blocks_per_row - b0) * U::kBlockBytes;
      uint4* stage = stages + c.stage * kTileRows * Plan::kRowVecs;
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) {
        const uint8_t* row = tile_row<kTileRows, kGated>(c.rows, r, a.row_bytes);
        if (!row) continue;
        const uint8_t* src = row + int64_t(b0) * U::kBlockBytes;
        const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
        const auto* aligned = reinterpret_cast<const uint4*>(src - skew);
        const int vecs = (skew + bytes + 15) / 16;
        for (int v = lane; v < vecs; v += kWarp) attn::cp_async_16(stage + r * Plan::kRowVecs + v, aligned + v, true);
      }
    }
    attn::cp_async_commit();  // an empty group past the last step keeps the wait count uniform
  };

  Cursor ahead = start(warp_id);
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(ahead), advance(ahead);
  wait_for_predecessor();  // x is the predecessor's output; the weights above never change

  float acc[kTileRows];
  for (Cursor c = start(warp_id); c.tile < a.tiles; advance(c)) {
    issue(ahead), advance(ahead);
    attn::cp_async_wait<kStages - 1>();
    __syncwarp();
    if (c.pass == 0) {
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) acc[r] = 0.f;
    }
    const int unit = c.pass * kWarp + lane;
    if (unit < a.units_per_row) {
      const int b0 = c.pass * Plan::kPassBlocks, block = unit / U::kUnitsPerBlock, sub = unit % U::kUnitsPerBlock;
      typename U::X xu;
      U::load_x(x + int64_t(block) * U::kBlockElems, sub, xu);
      const auto* stage = reinterpret_cast<const uint8_t*>(stages + c.stage * kTileRows * Plan::kRowVecs);
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) {
        const uint8_t* row = tile_row<kTileRows, kGated>(c.rows, r, a.row_bytes);
        if (!row) continue;
        const int skew = int(reinterpret_cast<uintptr_t>(row + int64_t(b0) * U::kBlockBytes) & 15);
        acc[r] += U::dot(stage + r * Plan::kRowVecs * 16 + skew + (block - b0) * U::kBlockBytes, sub, xu);
      }
    }
    __syncwarp();  // the stage is refilled kStages - 1 steps from now
    if (c.pass == a.passes - 1) {
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) acc[r] = warp_sum(acc[r]);
      if (lane == 0) {
#pragma unroll
        for (int o = 0; o < kOutRows<kTileRows, kGated>; ++o)
          if (o < c.rows.valid)
            c.rows.out[o] = kGated ? gated_activate(acc[o], a.act) * acc[o + kOutRows<kTileRows, kGated>] : acc[o];
      }
    }
  }
  attn::cp_async_wait<0>();
}

// ---- variants 10 and 11: rows loaded straight into registers, steps balanced over the warps ----
//
// A step is one pass (32 units, a unit per lane) over the kRows rows of a tile; the matrix is tiles x passes steps,
// and warp w of N takes steps [w S / N, (w + 1) S / N): every warp the same work within one step, whatever the
// shape (variant 9's warps took whole tiles: 1.5 tiles per warp for 18944 rows left half of them idle at the end).
// A tile split between warps is finished by the last of them: each writes its kRows partial sums to
// g_stream_partials, counts itself in on g_stream_arrivals, and the last adds the partials in warp order (the same
// sum whichever warp comes last: deterministic). No shared memory and no copies: each lane loads its unit's bytes
// of every row into registers (L1 bypassed, so x stays there); Q4_K issues the next step's loads before the
// current step's sums (two register buffers).
constexpr int kStreamMaxWarps = 16384;  // 128 SMs x 64 warps and more: grids are capped to it
constexpr int kStreamMaxRows = 8;
__device__ float g_stream_partials[kStreamMaxWarps][2][kStreamMaxRows];  // [warp][its first tile, its last]
__device__ unsigned g_stream_arrivals[kStreamMaxWarps];                  // by the first warp of a split tile

struct StreamArgs {
  WideArgs wide;
  int64_t steps;  // tiles x passes
  int64_t warps;  // N: the grid's working warps (<= steps)
};

__device__ __forceinline__ uint4 load_streamed(const uint8_t* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t load_streamed_word(const uint8_t* p) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// Whether row r of a tile with `valid` output rows exists (gated: rows kOutRows.. are the up matrix's).
template <int kRows, bool kGated>
__device__ __forceinline__ bool row_valid(int r, int valid) {
  return (r < kOutRows<kRows, kGated> ? r : r - kOutRows<kRows, kGated>) < valid;
}

// Q4_K: a unit's block header and 16 qs bytes, two 16-byte loads (144-byte blocks: every block 16-byte aligned).
struct StreamQ4_K {
  using U = UnitQ4_K;
  static constexpr bool kPrefetch = true;  // the next step's loads in flight during this step's sums
  struct Row {
    uint4 hdr, qv;
  };
  __device__ static void load(const uint8_t* block, int sub, Row& w) {
    w.hdr = load_streamed(block), w.qv = load_streamed(block + 16 + 16 * sub);
  }
  // The activations of the low nibbles, then of the high ones: 16 registers, not 32.
  template <int kRows, bool kGated>
  __device__ static void add(const Row (&w)[kRows], const float* xb, int sub, int valid, float (&acc)[kRows]) {
    const float* xu = xb + 64 * (sub / 2) + 16 * (sub % 2);
    float xs[16];
    load8(xu, xs), load8(xu + 8, xs + 8);
    const float sum_lo = sum_of<16>(xs);
    float f_lo[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) f_lo[r] = U::nibble_sum<false>(w[r].qv, xs);
    load8(xu + 32, xs), load8(xu + 40, xs + 8);
    const float sum_hi = sum_of<16>(xs);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (row_valid<kRows, kGated>(r, valid))
        acc[r] += U::scaled(w[r].hdr, sub, f_lo[r], U::nibble_sum<true>(w[r].qv, xs), sum_lo, sum_hi);
  }
};

// Q6_K: 210-byte blocks sit at 2-byte offsets, so a unit's fields (UnitQ6_K) come as the aligned words around
// them (three per 8 bytes), shifted into place at use.
struct StreamQ6_K {
  using U = UnitQ6_K;
  static constexpr bool kPrefetch = false;  // 13 words a row: two buffers spill; more warps hide the latency instead
  struct Row {
    uint32_t ql_a[3], ql_b[3], qh[3], sc[3], d;
  };
  template <int N>
  __device__ static void load_around(const uint8_t* p, uint32_t (&out)[N]) {
    const uint8_t* aligned = p - (reinterpret_cast<uintptr_t>(p) & 3);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = load_streamed_word(aligned + 4 * i);
  }
  __device__ static void load(const uint8_t* block, int sub, Row& w) {
    const int h = sub / 4, l0 = 8 * (sub % 4);
    load_around(block + 64 * h + l0, w.ql_a);
    load_around(block + 64 * h + 32 + l0, w.ql_b);
    load_around(block + 128 + 32 * h + l0, w.qh);
    load_around(block + 192 + 8 * h + l0 / 16, w.sc);  // scales for groups 0..3 at bytes 0, 2, 4, 6
    uint32_t dw[1];
    load_around(block + 208, dw);
    w.d = dw[0];
  }
  __device__ static void shifted(const uint32_t (&raw)[3], uint32_t shift, uint32_t (&out)[2]) {
    out[0] = __funnelshift_r(raw[0], raw[1], shift), out[1] = __funnelshift_r(raw[1], raw[2], shift);
  }
  // Group by group (8 activations in registers at a time), each group's scale applied as UnitQ6_K::dot does.
  template <int kRows, bool kGated>
  __device__ static void add(const Row (&w)[kRows], const uint8_t* const (&blocks)[kRows], const float* xb, int sub,
                             int valid, float (&acc)[kRows]) {
    const int h = sub / 4, l0 = 8 * (sub % 4);
    uint32_t a[kRows][2], b[kRows][2], q[kRows][2];
    float d[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const uint32_t shift = 8 * uint32_t(reinterpret_cast<uintptr_t>(blocks[r]) & 3);  // every field but scales
      shifted(w[r].ql_a, shift, a[r]), shifted(w[r].ql_b, shift, b[r]), shifted(w[r].qh, shift, q[r]);
      d[r] = half_lo(w[r].d >> shift);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float xs[8];
      load8(xb + 128 * h + l0 + 32 * k, xs);
      const float sum = sum_of<8>(xs);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (!row_valid<kRows, kGated>(r, valid)) continue;
        float f = 0.f;  // sum of (1 + q/64) x over the group
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          // Each byte 0x80 | q << 1: the nibble in bits 1-4, the qh pair in bits 5-6 (UnitQ6_K::dot's words).
          const uint32_t nib = k % 2 == 0 ? a[r][i] : b[r][i];
          const uint32_t v = ((k < 2 ? nib << 1 : nib >> 3) & 0x1E1E1E1Eu) |
                             (((k == 0 ? q[r][i] << 5 : k == 1 ? q[r][i] << 3 : k == 2 ? q[r][i] << 1 : q[r][i] >> 1)) &
                              0x60606060u) |
                             0x80808080u;
#pragma unroll
          for (int j = 0; j < 4; ++j) f = fmaf(one_plus(v, j), xs[4 * i + j], f);
        }
        const uint32_t sc_shift = 8 * uint32_t(reinterpret_cast<uintptr_t>(blocks[r] + 192 + 8 * h + l0 / 16) & 3);
        const uint32_t sc_word = __funnelshift_r(w[r].sc[k / 2], w[r].sc[k / 2 + 1], sc_shift);
        const int sc = int(int8_t(uint8_t(sc_word >> (16 * (k % 2)))));
        acc[r] = fmaf(__fmul_rn(d[r], float(sc)), fmaf(64.f, f, -96.f * sum), acc[r]);
      }
    }
  }
};

// The warp's sums for `tile` over its steps of it: stored, or handed to the tile's last warp.
__device__ __forceinline__ int64_t first_step(const StreamArgs& a, int64_t w) { return w * a.steps / a.warps; }
__device__ __forceinline__ int64_t warp_of_step(const StreamArgs& a, int64_t s) {
  return ((s + 1) * a.warps + a.steps - 1) / a.steps - 1;
}

template <int kRows, bool kGated>
__device__ __forceinline__ void store_outputs(const WideArgs& a, const Tile& t, const float (&sum)[kRows]) {
#pragma unroll
  for (int o = 0; o < kOutRows<kRows, kGated>; ++o)
    if (o < t.valid) t.out[o] = kGated ? gated_activate(sum[o], a.act) * sum[o + kOutRows<kRows, kGated>] : sum[o];
}

template <int kRows, bool kGated>
__device__ __forceinline__ void finish_tile(const StreamArgs& sa, int64_t warp, bool warps_first_tile, int lane,
                                            int64_t tile, const Tile& rows, float (&acc)[kRows]) {
  const WideArgs& a = sa.wide;
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = warp_sum(acc[r]);
  const int64_t tile_first = tile * a.passes;
  const int64_t first = warp_of_step(sa, tile_first), last = warp_of_step(sa, tile_first + a.passes - 1);
  if (lane != 0) return;
  if (first == last) return store_outputs<kRows, kGated>(a, rows, acc);
  float* mine = g_stream_partials[warp][warps_first_tile ? 0 : 1];
#pragma unroll
  for (int r = 0; r < kRows; ++r) mine[r] = acc[r];
  __threadfence();
  if (atomicAdd(&g_stream_arrivals[first], 1u) != unsigned(last - first)) return;
  __threadfence();
  float sum[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) sum[r] = 0.f;
  for (int64_t w = first; w <= last; ++w) {
    const float* part = g_stream_partials[w][first_step(sa, w) >= tile_first ? 0 : 1];
#pragma unroll
    for (int r = 0; r < kRows; ++r) sum[r] += __ldcg(part + r);
  }
  store_outputs<kRows, kGated>(a, rows, sum);
  g_stream_arrivals[first] = 0;  // ready for the next launch, which waits for this grid to finish
}

// Where a warp is: a tile, a pass of it, and the tile's rows.
template <int kRows, bool kGated>
struct StreamCursor {
  int64_t tile;
  int pass;
  Tile rows;
  __device__ void advance(const WideArgs& a) {
    if (++pass == a.passes) pass = 0, rows = tile_at<kRows, kGated>(a, ++tile);
  }
  // The lane's unit of this step, or -1 past the row's end.
  __device__ int unit(const WideArgs& a, int lane) const {
    const int u = pass * kWarp + lane;
    return u < a.units_per_row ? u : -1;
  }
};

constexpr int kStreamWarps = 4;  // per block

// The kernel of one type: S is StreamQ4_K or StreamQ6_K. kRows 8 takes up to 255 registers (8 warps an SM),
// kRows 4 up to 128 (16 warps; Q6_K's wider rows: 168, 12 warps).
template <typename S, int kRows, bool kGated>
__global__ void __launch_bounds__(kStreamWarps * kWarp, kRows == 8 ? 2 : (S::kPrefetch ? 4 : 3))
    gemv_stream_kernel(StreamArgs sa, const float* __restrict__ x) {
  using U = typename S::U;
  const WideArgs& a = sa.wide;
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = int64_t(blockIdx.x) * kStreamWarps + threadIdx.x / kWarp;
  if (warp >= sa.warps) return;
  const int64_t s_begin = first_step(sa, warp), s_end = first_step(sa, warp + 1);
  StreamCursor<kRows, kGated> cur{s_begin / a.passes, int(s_begin % a.passes), {}};
  cur.rows = tile_at<kRows, kGated>(a, cur.tile);

  typename S::Row buf[2][kRows];
  auto load = [&](const StreamCursor<kRows, kGated>& c, typename S::Row (&w)[kRows]) {
    const int u = c.unit(a, lane);
    if (u < 0) return;
    const int64_t at = int64_t(u / U::kUnitsPerBlock) * U::kBlockBytes;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (const uint8_t* row = tile_row<kRows, kGated>(c.rows, r, a.row_bytes)) S::load(row + at, u % U::kUnitsPerBlock, w[r]);
  };
  auto add = [&](const StreamCursor<kRows, kGated>& c, const typename S::Row (&w)[kRows], float (&acc)[kRows]) {
    const int u = c.unit(a, lane);
    if (u < 0) return;
    const int block = u / U::kUnitsPerBlock;
    const float* xb = x + int64_t(block) * U::kBlockElems;
    if constexpr (std::is_same_v<S, StreamQ6_K>) {
      const uint8_t* blocks[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const uint8_t* row = tile_row<kRows, kGated>(c.rows, r, a.row_bytes);
        blocks[r] = row ? row + int64_t(block) * U::kBlockBytes : nullptr;
      }
      S::template add<kRows, kGated>(w, blocks, xb, u % U::kUnitsPerBlock, c.rows.valid, acc);
    } else {
      S::template add<kRows, kGated>(w, xb, u % U::kUnitsPerBlock, c.rows.valid, acc);
    }
  };

  load(cur, buf[0]);  // the weights never change: the first step's are loaded before the wait
  wait_for_predecessor();
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
  bool first_tile = true;
  int64_t s = s_begin;
  // Step s with buffer b: load s + 1 into the other buffer (before the sums of s where S prefetches), add s,
  // finish the tile where it ends.
  auto step = [&](int b) {
    StreamCursor<kRows, kGated> next = cur;
    next.advance(a);
    if (S::kPrefetch && s + 1 < s_end) load(next, buf[b ^ 1]);
    add(cur, buf[b], acc);
    if (!S::kPrefetch && s + 1 < s_end) load(next, buf[b ^ 1]);
    if (next.pass == 0 || s + 1 == s_end) {
      finish_tile<kRows, kGated>(sa, warp, first_tile, lane, cur.tile, cur.rows, acc);
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
      first_tile = false;
    }
    cur = next;
    ++s;
  };
  while (s < s_end) {
    step(0);
    if (s < s_end) step(1);
  }
}

template <typename F>
bool with_unit(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::Q4_K: f.template operator()<UnitQ4_K>(); return true;
    case GgmlType::Q6_K: f.template operator()<UnitQ6_K>(); return true;
    case GgmlType::Q8_0: f.template operator()<UnitQ8_0>(); return true;
    default: return false;
  }
}

// Units, passes and row bytes of `cols`-wide rows of U, and each segment's tiles of kRows weight rows.
template <typename U, int kRows, bool kGated>
void set_geometry(WideArgs& a, int64_t cols) {
  a.units_per_row = int(cols / U::kBlockElems * U::kUnitsPerBlock);
  a.passes = (a.units_per_row + kWarp - 1) / kWarp;
  a.row_bytes = cols / U::kBlockElems * U::kBlockBytes;
  a.tiles = 0;
  for (int i = 0; i < a.count; ++i)
    a.tiles += a.seg_tiles[i] = (a.seg[i].n_out + kOutRows<kRows, kGated> - 1) / kOutRows<kRows, kGated>;
}

template <typename U, bool kGated>
void launch_wide(WideArgs& a, const float* x, int64_t cols, cudaStream_t stream) {
  using Plan = WidePlan<U>;
  auto kernel = gemv_wide_kernel<U, kGated>;
  static const int64_t resident = [&] {
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Plan::kSmemBytes)),
               "gemv_wide shared memory");
    int per_sm = 0;
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, Plan::kSmemBytes),
               "gemv_wide occupancy");
    return int64_t(sm_count()) * std::max(per_sm, 1);
  }();
  set_geometry<U, kTileRows, kGated>(a, cols);
  if (a.tiles == 0) return;
  const int64_t blocks = std::min(resident, (a.tiles + kWarps - 1) / kWarps);
  launch_overlapped_smem(kernel, dim3(unsigned(blocks)), dim3(kThreads), Plan::kSmemBytes, stream, "gemv_wide", a, x);
}

template <typename S, int kRows, bool kGated>
void launch_stream(WideArgs& a, const float* x, int64_t cols, cudaStream_t stream) {
  using U = typename S::U;
  auto kernel = gemv_stream_kernel<S, kRows, kGated>;
  static const int64_t resident_warps = [&] {
    int per_sm = 0;
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kStreamWarps * kWarp, 0),
               "gemv_stream occupancy");
    return std::min<int64_t>(int64_t(sm_count()) * std::max(per_sm, 1) * kStreamWarps, kStreamMaxWarps);
  }();
  set_geometry<U, kRows, kGated>(a, cols);
  if (a.tiles == 0) return;
  StreamArgs sa{a, a.tiles * a.passes, 0};
  sa.warps = std::min(resident_warps, sa.steps);
  const int64_t blocks = (sa.warps + kStreamWarps - 1) / kStreamWarps;
  launch_overlapped(kernel, dim3(unsigned(blocks)), dim3(kStreamWarps * kWarp), stream, "gemv_stream", sa, x);
}

// Calls f.template operator()<S>() with the stream policy of `type`; false where there is none.
template <typename F>
bool with_stream(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::Q4_K: f.template operator()<StreamQ4_K>(); return true;
    case GgmlType::Q6_K: f.template operator()<StreamQ6_K>(); return true;
    default: return false;
  }
}

GemvWideKernel pick_kernel(GemvWideKernel k, GgmlType type) { return k == GemvWideKernel::Picked ? gemv_wide_pick(type) : k; }

void check_wide(const char* op, GgmlType type, int64_t cols, const float* x, GemvWideKernel kernel) {
  if (!gemv_wide_supported(type, cols, kernel))
    fail(std::string(op) + ": no wide GEMV for " + std::to_string(cols) + " columns of " + ggml_type_name(uint32_t(type)));
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0) fail(std::string(op) + ": x is not 16-byte aligned");
}

}  // namespace

GemvWideKernel gemv_wide_pick(GgmlType type) {
  // The stream kernels (variants 10, 11) have not run on a GPU yet: the staged kernel stays the default until
  // gemv_bench and the tests have measured and checked them (bench/gemv_notes.md). SWRUN_GEMV_WIDE=stream8|stream4
  // times a whole decode step with them meanwhile.
  static const GemvWideKernel picked = [] {
    const char* env = std::getenv("SWRUN_GEMV_WIDE");
    if (env && std::string(env) == "stream8") return GemvWideKernel::Stream8;
    if (env && std::string(env) == "stream4") return GemvWideKernel::Stream4;
    return GemvWideKernel::Staged;
  }();
  return with_stream(type, []<typename>() {}) ? picked : GemvWideKernel::Staged;
}

bool gemv_wide_supported(GgmlType type, int64_t cols, GemvWideKernel kernel) {
  bool ok = false;
  with_unit(type, [&]<typename U>() { ok = cols > 0 && cols % U::kBlockElems == 0; });
  const bool has_stream = with_stream(type, [&]<typename>() {});
  return ok && (pick_kernel(kernel, type) == GemvWideKernel::Staged || has_stream);
}

// Runs the picked kernel over `a` (its segments and, gated, its up matrix set).
template <bool kGated>
void launch_picked(GgmlType type, WideArgs& a, const float* x, int64_t cols, GemvWideKernel kernel,
                   cudaStream_t stream) {
  switch (pick_kernel(kernel, type)) {
    case GemvWideKernel::Stream8:
      with_stream(type, [&]<typename S>() { launch_stream<S, 8, kGated>(a, x, cols, stream); });
      return;
    case GemvWideKernel::Stream4:
      with_stream(type, [&]<typename S>() { launch_stream<S, 4, kGated>(a, x, cols, stream); });
      return;
    default: with_unit(type, [&]<typename U>() { launch_wide<U, kGated>(a, x, cols, stream); });
  }
}

void gemv_wide(GgmlType type, const GemvWideSeg* segs, int count, const float* x, int64_t cols, cudaStream_t stream,
               GemvWideKernel kernel) {
  check_wide("gemv_wide", type, cols, x, kernel);
  if (count < 1 || count > kGemvWideMaxSegs) fail("gemv_wide: " + std::to_string(count) + " segments");
  WideArgs a{};
  a.count = count;
  for (int i = 0; i < count; ++i) a.seg[i] = segs[i];
  launch_picked<false>(type, a, x, cols, kernel, stream);
}

void gemv_wide_gated(GgmlType type, const uint8_t* w_gate, const uint8_t* w_up, const float* x, float* out,
                     int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream, GemvWideKernel kernel) {
  check_wide("gemv_wide_gated", type, cols, x, kernel);
  WideArgs a{};
  a.count = 1;
  a.seg[0] = {w_gate, out, n_out};
  a.up = w_up;
  a.act = act;
  launch_picked<true>(type, a, x, cols, kernel, stream);
}

}  // namespace swrun::cuda
