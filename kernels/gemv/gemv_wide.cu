// Variant 9 of the decode GEMV (gemv_wide.cuh): units of 32 weights, 4 rows per warp, rows staged by cp.async.
#include "kernels/gemv/gemv_wide.cuh"

#include <algorithm>
#include <string>

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
    const uint4 hdr = *reinterpret_cast<const uint4*>(block);  // d, dmin | the 12 scale bytes (quant::k_scale_min)
    const uint4 qv = *reinterpret_cast<const uint4*>(block + 16 + 16 * u);
    const uint32_t qs[4] = {qv.x, qv.y, qv.z, qv.w};
    float f_lo = 0.f, f_hi = 0.f;  // sums of (1 + q/16) x
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const uint32_t lo = ((qs[w] << 3) & 0x78787878u) | 0x80808080u, hi = ((qs[w] >> 1) & 0x78787878u) | 0x80808080u;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        f_lo = fmaf(one_plus(lo, k), x.lo[4 * w + k], f_lo);
        f_hi = fmaf(one_plus(hi, k), x.hi[4 * w + k], f_hi);
      }
    }
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
    const float lo = fmaf(s_lo, f_lo, -(s_lo + __fmul_rn(dmin, float(m_lo))) * x.sum_lo);
    return lo + fmaf(s_hi, f_hi, -(s_hi + __fmul_rn(dmin, float(m_hi))) * x.sum_hi);
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

template <bool kGated>
constexpr int kOutRows = kGated ? kTileRows / 2 : kTileRows;

template <bool kGated>
__device__ __forceinline__ Tile tile_at(const WideArgs& a, int64_t t) {
  int s = 0;
  while (s + 1 < a.count && t >= a.seg_tiles[s]) t -= a.seg_tiles[s++];
  const int64_t first = t * kOutRows<kGated>;
  return {a.seg[s].w + first * a.row_bytes, kGated ? a.up + first * a.row_bytes : nullptr, a.seg[s].out + first,
          int(min(int64_t(kOutRows<kGated>), a.seg[s].n_out - first))};
}

// Row r of a tile, or null past its valid rows.
template <bool kGated>
__device__ __forceinline__ const uint8_t* tile_row(const Tile& t, int r, int64_t row_bytes) {
  const int o = r % kOutRows<kGated>;
  if (o >= t.valid) return nullptr;
  return (kGated && r >= kOutRows<kGated> ? t.up : t.w) + o * row_bytes;
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
  auto start = [&](int64_t tile) { return Cursor{tile, 0, 0, tile < a.tiles ? tile_at<kGated>(a, tile) : Tile{}}; };
  auto advance = [&](Cursor& c) {
    c.stage = c.stage + 1 == kStages ? 0 : c.stage + 1;
    if (++c.pass == a.passes) {
      c.pass = 0;
      c.tile += warp_stride;
      if (c.tile < a.tiles) c.rows = tile_at<kGated>(a, c.tile);
    }
  };
  auto issue = [&](const Cursor& c) {
    if (c.tile < a.tiles) {
      const int b0 = c.pass * Plan::kPassBlocks;
      const int bytes = min(Plan::kPassBlocks, blocks_per_row - b0) * U::kBlockBytes;
      uint4* stage = stages + c.stage * kTileRows * Plan::kRowVecs;
#pragma unroll
      for (int r = 0; r < kTileRows; ++r) {
        const uint8_t* row = tile_row<kGated>(c.rows, r, a.row_bytes);
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
        const uint8_t* row = tile_row<kGated>(c.rows, r, a.row_bytes);
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
        for (int o = 0; o < kOutRows<kGated>; ++o)
          if (o < c.rows.valid)
            c.rows.out[o] = kGated ? gated_activate(acc[o], a.act) * acc[o + kOutRows<kGated>] : acc[o];
      }
    }
  }
  attn::cp_async_wait<0>();
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
  a.units_per_row = int(cols / U::kBlockElems * U::kUnitsPerBlock);
  a.passes = (a.units_per_row + kWarp - 1) / kWarp;
  a.row_bytes = cols / U::kBlockElems * U::kBlockBytes;
  a.tiles = 0;
  for (int i = 0; i < a.count; ++i)
    a.tiles += a.seg_tiles[i] = (a.seg[i].n_out + kOutRows<kGated> - 1) / kOutRows<kGated>;
  if (a.tiles == 0) return;
  const int64_t blocks = std::min(resident, (a.tiles + kWarps - 1) / kWarps);
  launch_overlapped_smem(kernel, dim3(unsigned(blocks)), dim3(kThreads), Plan::kSmemBytes, stream, "gemv_wide", a, x);
}

void check_wide(const char* op, GgmlType type, int64_t cols, const float* x) {
  if (!gemv_wide_supported(type, cols))
    fail(std::string(op) + ": no wide GEMV for " + std::to_string(cols) + " columns of " + ggml_type_name(uint32_t(type)));
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0) fail(std::string(op) + ": x is not 16-byte aligned");
}

}  // namespace

bool gemv_wide_supported(GgmlType type, int64_t cols) {
  bool ok = false;
  with_unit(type, [&]<typename U>() { ok = cols > 0 && cols % U::kBlockElems == 0; });
  return ok;
}

void gemv_wide(GgmlType type, const GemvWideSeg* segs, int count, const float* x, int64_t cols, cudaStream_t stream) {
  check_wide("gemv_wide", type, cols, x);
  if (count < 1 || count > kGemvWideMaxSegs) fail("gemv_wide: " + std::to_string(count) + " segments");
  WideArgs a{};
  a.count = count;
  for (int i = 0; i < count; ++i) a.seg[i] = segs[i];
  with_unit(type, [&]<typename U>() { launch_wide<U, false>(a, x, cols, stream); });
}

void gemv_wide_gated(GgmlType type, const uint8_t* w_gate, const uint8_t* w_up, const float* x, float* out,
                     int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream) {
  check_wide("gemv_wide_gated", type, cols, x);
  WideArgs a{};
  a.count = 1;
  a.seg[0] = {w_gate, out, n_out};
  a.up = w_up;
  a.act = act;
  with_unit(type, [&]<typename U>() { launch_wide<U, true>(a, x, cols, stream); });
}

}  // namespace swrun::cuda
