// Row-per-lane core of the quantized GEMV, for matrices with many rows (output projections over a vocabulary):
// lane l of a warp owns output row n0 + l, so the 32 lanes walk the same blocks of 32 different rows in step.
// Each lane loads a span of whole blocks of its own row into registers with 16-byte loads (all of them issued
// before any decode), realigns them in registers (GGUF rows sit at any even offset) and decodes every item of
// every block with the shared block decoders at compile-time byte offsets, so the bytes never go through shared
// memory. The activations the lanes need are then the same element at the same moment: one broadcast load serves
// all 32 rows. Warp-row staging (gemv_quant_warp.cuh) instead spends a shared-memory byte load per weight byte
// and an activation load per element and row, which caps it well below HBM bandwidth.
#pragma once
#include <cstdint>

#include "kernels/dequant/block_decode.cuh"

namespace swrun::cuda::gemv {

// Whole blocks of one row a lane holds at once: about 160 bytes, ten 16-byte loads in flight per lane.
template <typename D>
struct LaneSpan {
  static constexpr int kBlocks = D::kBytes >= 160 ? 1 : 160 / D::kBytes;
  static constexpr int kBytes = kBlocks * D::kBytes;
  static constexpr int kVecs = (kBytes + 14 + 15) / 16;  // a span starts at an even offset: up to 14 bytes of skew
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

// Loads `nb` (0..kBlocks) whole blocks at `src` (an even address) into words, realigned so that words[0] holds
// the first byte; words past the blocks are zero. Reads no 16-byte vector that holds none of the blocks' bytes
// (the last row's span ends inside the padded allocation).
template <typename D, WeightLoad kLoad>
__device__ __forceinline__ void load_span(const uint8_t* src, int nb, uint64_t policy,
                                          uint32_t (&words)[LaneSpan<D>::kWords]) {
  using S = LaneSpan<D>;
  constexpr int kRaw = S::kVecs * 4 + 3;  // + room for the word shift below
  const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
  const uint4* aligned = reinterpret_cast<const uint4*>(src - skew);
  const int vecs = nb > 0 ? (skew + nb * D::kBytes + 15) / 16 : 0;
  uint32_t raw[kRaw];
#pragma unroll
  for (int v = 0; v < S::kVecs; ++v) {
    const uint4 q = v < vecs ? load_weight_vec<kLoad>(aligned + v, policy) : make_uint4(0, 0, 0, 0);
    raw[4 * v] = q.x, raw[4 * v + 1] = q.y, raw[4 * v + 2] = q.z, raw[4 * v + 3] = q.w;
  }
#pragma unroll
  for (int i = S::kVecs * 4; i < kRaw; ++i) raw[i] = 0;
  // Shift down by skew / 4 words in two selects of fixed distance (a run-time index would send raw to local
  // memory), then by the remaining 0 or 2 bytes.
  const int word_shift = skew >> 2;
#pragma unroll
  for (int i = 0; i + 1 < kRaw; ++i) raw[i] = (word_shift & 1) ? raw[i + 1] : raw[i];
#pragma unroll
  for (int i = 0; i + 2 < kRaw; ++i) raw[i] = (word_shift & 2) ? raw[i + 2] : raw[i];
  const unsigned bit_shift = unsigned(skew & 3) * 8;
#pragma unroll
  for (int i = 0; i < S::kWords; ++i) words[i] = __funnelshift_r(raw[i], raw[i + 1], bit_shift);
}

// Adds x[r] . (the span's nb blocks) to acc[r] for r < x_rows; xs points at x[0] at the span's first element.
// Every lane of the warp passes the same nb and xs, so each activation load is one broadcast.
template <typename D, int kRows>
__device__ __forceinline__ void lane_span_dots(const uint32_t (&words)[LaneSpan<D>::kWords], int nb,
                                               const float* xs, int64_t cols, int x_rows, float (&acc)[kRows]) {
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(words);
#pragma unroll
  for (int k = 0; k < LaneSpan<D>::kBlocks; ++k) {
    if (k >= nb) break;
    const float* xb = xs + k * D::kElems;
#pragma unroll
    for (int t = 0; t < D::kItems; ++t)
      D::item(bytes + k * D::kBytes, t, [&](int i, float v) {
#pragma unroll
        for (int r = 0; r < kRows; ++r)
          if (kRows == 1 || r < x_rows) acc[r] = fmaf(v, xb[r * cols + i], acc[r]);
      });
  }
}

}  // namespace swrun::cuda::gemv
