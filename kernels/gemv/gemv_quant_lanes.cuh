// Row-per-lane core of the quantized GEMV, for matrices with many rows (output projections over a vocabulary):
// lane l of a warp owns output row n0 + l, so the 32 lanes walk the same blocks of 32 different rows in step.
// Each lane loads a span of whole blocks of its own row into registers with 16-byte loads (all of them issued
// before any decode), realigns them in registers (GGUF rows sit at any even offset, MXFP4 rows at any offset) and decodes every item of
// every block with the shared block decoders at compile-time byte offsets, so the bytes never go through shared
// memory. The activations the lanes need are then the same element at the same moment: one broadcast load serves
// all 32 rows. Warp-row staging (gemv_quant_warp.cuh) instead spends a shared-memory byte load per weight byte
// and an activation load per element and row, which caps it well below HBM bandwidth.
#pragma once
#include <cstdint>
#include <type_traits>

#include <cuda_fp16.h>

#include "kernels/attention/mma_sm80.cuh"  // cp_async_16
#include "kernels/dequant/block_decode.cuh"

namespace swrun::cuda::gemv {

// Whole blocks of one row a lane holds at once: about 160 bytes, ten 16-byte loads in flight per lane.
template <typename D>
struct LaneSpan {
  static constexpr int kBlocks = D::kBytes >= 160 ? 1 : 160 / D::kBytes;
  static constexpr int kBytes = kBlocks * D::kBytes;
  // A span of even-sized blocks starts at an even offset (up to 14 bytes of skew); MXFP4's 17-byte blocks put it
  // anywhere (up to 15).
  static constexpr int kMaxSkew = D::kBytes % 2 ? 15 : 14;
  static constexpr int kVecs = (kBytes + kMaxSkew + 15) / 16;
  static constexpr int kWords = (kBytes + 3) / 4;
};

// How the streamed weights are loaded: through L1 (a lane's next span reuses the rest of the 32-byte sector its
// last 16-byte load fetched), optionally marked evict-first in L2 so a matrix larger than L2 does not push out
// what the rest of the step keeps there.
enum class WeightLoad { Cached, EvictFirst };

__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

template <WeightLoad kLoad>
__device__ __forceinline__ uint4 load_weight_vec(const uint4* p, uint64_t policy) {
  if constexpr (kLoad == WeightLoad::Cached) {
    return __ldg(p);
  } else {
    uint4 v;
    asm("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p), "l"(policy));
    return v;
  }
}

// Realigns a span's 16-byte vectors (raw, from the vector holding its first byte on; the words from kVecs * 4
// on zero) into words, so that words[0] holds the span's first byte, which sat `skew` bytes into raw.
template <typename D>
__device__ __forceinline__ void realign_span(uint32_t (&raw)[LaneSpan<D>::kVecs * 4 + 3], int skew,
                                             uint32_t (&words)[LaneSpan<D>::kWords]) {
  constexpr int kRaw = LaneSpan<D>::kVecs * 4 + 3;
  // Shift down by skew / 4 words in two selects of fixed distance (a run-time index would send raw to local
  // memory), then by the remaining 0 or 2 bytes.
  const int word_shift = skew >> 2;
#pragma unroll
  for (int i = 0; i + 1 < kRaw; ++i) raw[i] = (word_shift & 1) ? raw[i + 1] : raw[i];
#pragma unroll
  for (int i = 0; i + 2 < kRaw; ++i) raw[i] = (word_shift & 2) ? raw[i + 2] : raw[i];
  const unsigned bit_shift = unsigned(skew & 3) * 8;
#pragma unroll
  for (int i = 0; i < LaneSpan<D>::kWords; ++i) words[i] = __funnelshift_r(raw[i], raw[i + 1], bit_shift);
}

// Vectors of `nb` whole blocks starting at `src` (0 when nb is 0): the 16-byte vectors that hold any of their
// bytes, and no more (the last row's span ends inside the padded allocation).
template <typename D>
__device__ __forceinline__ int span_vecs(const uint8_t* src, int nb) {
  return nb > 0 ? (int(reinterpret_cast<uintptr_t>(src) & 15) + nb * D::kBytes + 15) / 16 : 0;
}

// Loads `nb` (0..kBlocks) whole blocks at `src` into words, realigned so that words[0] holds
// the first byte; words past the blocks are zero. load_vec(p) reads the 16-byte vector at p (global or shared).
template <typename D, typename LoadVec>
__device__ __forceinline__ void gather_span(const uint8_t* src, int nb, LoadVec&& load_vec,
                                            uint32_t (&words)[LaneSpan<D>::kWords]) {
  using S = LaneSpan<D>;
  const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
  const uint4* aligned = reinterpret_cast<const uint4*>(src - skew);
  const int vecs = span_vecs<D>(src, nb);
  uint32_t raw[S::kVecs * 4 + 3];
#pragma unroll
  for (int v = 0; v < S::kVecs; ++v) {
    const uint4 q = v < vecs ? load_vec(aligned + v) : make_uint4(0, 0, 0, 0);
    raw[4 * v] = q.x, raw[4 * v + 1] = q.y, raw[4 * v + 2] = q.z, raw[4 * v + 3] = q.w;
  }
#pragma unroll
  for (int i = S::kVecs * 4; i < S::kVecs * 4 + 3; ++i) raw[i] = 0;
  realign_span<D>(raw, skew, words);
}

// gather_span straight from global memory.
template <typename D, WeightLoad kLoad>
__device__ __forceinline__ void load_span(const uint8_t* src, int nb, uint64_t policy,
                                          uint32_t (&words)[LaneSpan<D>::kWords]) {
  gather_span<D>(src, nb, [&](const uint4* p) { return load_weight_vec<kLoad>(p, policy); }, words);
}

// The staged path: a warp copies the spans of its 32 rows into shared memory together, consecutive lanes taking
// consecutive vectors of the same row (a few cache lines per copy instruction, where load_span's lanes touch 32
// lines per load), then each lane reads its own row's vectors back. Row l's vectors sit at stage[l * kPitch]:
// an odd pitch puts the 8 lanes of each quarter-warp read on different banks.
template <typename D>
struct StagedSpan {
  static constexpr int kPitch = LaneSpan<D>::kVecs | 1;
  static constexpr int kStageVecs = 32 * kPitch;
};

// Copies (cp.async, 16-byte zero-fill when not valid) the span of `nb` blocks starting at block b0 of each row
// n0 + l, l < 32 and n0 + l < n_out, into stage; the caller commits and waits.
template <typename D>
__device__ __forceinline__ void stage_spans(const uint8_t* w, int64_t row_bytes, int64_t n0, int64_t n_out, int b0,
                                            int nb, uint4* stage) {
  constexpr int kVecs = LaneSpan<D>::kVecs;
  const int lane = threadIdx.x % 32;
  for (int idx = lane; idx < 32 * kVecs; idx += 32) {
    const int l = idx / kVecs, v = idx % kVecs;
    const bool live = n0 + l < n_out;
    const uint8_t* src = w + (live ? n0 + l : 0) * row_bytes + int64_t(b0) * D::kBytes;
    const uint8_t* aligned = src - (reinterpret_cast<uintptr_t>(src) & 15);
    const bool valid = live && v < span_vecs<D>(src, nb);
    attn::cp_async_16(stage + l * StagedSpan<D>::kPitch + v, valid ? aligned + 16 * v : aligned, valid);
  }
}

// This lane's row's span from a stage filled by stage_spans; `src` is where the span starts in global memory.
template <typename D>
__device__ __forceinline__ void read_staged_span(const uint4* stage, const uint8_t* src,
                                                 uint32_t (&words)[LaneSpan<D>::kWords]) {
  using S = LaneSpan<D>;
  const uint4* mine = stage + (threadIdx.x % 32) * StagedSpan<D>::kPitch;
  uint32_t raw[S::kVecs * 4 + 3];
#pragma unroll
  for (int v = 0; v < S::kVecs; ++v) {
    const uint4 q = mine[v];
    raw[4 * v] = q.x, raw[4 * v + 1] = q.y, raw[4 * v + 2] = q.z, raw[4 * v + 3] = q.w;
  }
#pragma unroll
  for (int i = S::kVecs * 4; i < S::kVecs * 4 + 3; ++i) raw[i] = 0;
  realign_span<D>(raw, int(reinterpret_cast<uintptr_t>(src) & 15), words);
}

// Adds the products of one decoded block with the activations x_at(r, i) (element i of the block, row r) to
// acc[r], item by item in the decoder's order.
template <typename D, int kRows, typename XAt>
__device__ __forceinline__ void lane_block_dots(const uint8_t* block, int x_rows, XAt&& x_at, float (&acc)[kRows]) {
#pragma unroll
  for (int t = 0; t < D::kItems; ++t)
    D::item(block, t, [&](int i, float v) {
#pragma unroll
      for (int r = 0; r < kRows; ++r)
        if (kRows == 1 || r < x_rows) acc[r] = fmaf(v, x_at(r, i), acc[r]);
    });
}

// One Q8_0 block at byte `at` of a lane's span (words, realigned) against its 32 activations: the products are
// summed before the block's scale, d * sum(q * x), and each int8 becomes a float through the exponent: with its
// sign bit flipped, the byte is the low mantissa byte of 2^23 (0x4B000000: 2^23 + q + 128, exact), and one
// subtraction leaves q. Three full-rate instructions per weight (PRMT, FADD, FFMA), where the decoder's path
// spends a quarter-rate int-to-float conversion and a multiply by d on every weight (the sums differ from it by
// rounding only). `at` is a compile-time offset once the caller's loops unroll, so every byte's word and lane
// within it are fixed.
__device__ __forceinline__ float q8_0_block_dot(const uint32_t* words, int at, const float (&x)[32]) {
  const int q0 = at + 2;  // the 32 quants follow the fp16 scale
  uint32_t flipped[9];
#pragma unroll
  for (int i = 0; i < 9; ++i) flipped[i] = words[q0 / 4 + i] ^ 0x80808080u;
  float sum[2] = {0.f, 0.f};  // two chains of 16 products
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const int byte = q0 % 4 + i;
    const float biased = __uint_as_float(__byte_perm(flipped[byte / 4], 0x4B000000u, 0x7440u | unsigned(byte % 4)));
    sum[i / 16] = fmaf(biased - 8388736.f, x[i], sum[i / 16]);  // 2^23 + 128
  }
  const float d = __half2float(__ushort_as_half(uint16_t(words[at / 4] >> (8 * (at % 4)))));
  return d * (sum[0] + sum[1]);
}

// Adds x[r] . (the span's nb blocks) to acc[r] for r < x_rows; xs points at x[0] at the span's first element.
// Every lane of the warp passes the same nb and xs, so each activation load is one broadcast. With one
// activation row and 32-element blocks, a block's 32 activations are loaded as eight 16-byte vectors first when x
// is 16-byte aligned (the same values in the same order: the same sums).
template <typename D, int kRows>
__device__ __forceinline__ void lane_span_dots(const uint32_t (&words)[LaneSpan<D>::kWords], int nb,
                                               const float* xs, int64_t cols, int x_rows, float (&acc)[kRows]) {
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(words);
  const bool x_vectors = kRows == 1 && D::kElems == 32 && (reinterpret_cast<uintptr_t>(xs) & 15) == 0;
#pragma unroll
  for (int k = 0; k < LaneSpan<D>::kBlocks; ++k) {
    if (k >= nb) break;
    const float* xb = xs + k * D::kElems;
    if constexpr (kRows == 1 && D::kElems == 32) {
      if (x_vectors) {
        float xr[32];
#pragma unroll
        for (int q = 0; q < 8; ++q) {
          const float4 v = reinterpret_cast<const float4*>(xb)[q];
          xr[4 * q] = v.x, xr[4 * q + 1] = v.y, xr[4 * q + 2] = v.z, xr[4 * q + 3] = v.w;
        }
        if constexpr (std::is_same_v<D, DecodeQ8_0>) acc[0] += q8_0_block_dot(words, k * D::kBytes, xr);
        else lane_block_dots<D, kRows>(bytes + k * D::kBytes, x_rows, [&](int, int i) { return xr[i]; }, acc);
        continue;
      }
    }
    lane_block_dots<D, kRows>(bytes + k * D::kBytes, x_rows, [&](int r, int i) { return xb[r * cols + i]; }, acc);
  }
}

}  // namespace swrun::cuda::gemv
