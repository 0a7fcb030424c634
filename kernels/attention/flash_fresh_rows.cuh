// Decode with the new position's inputs as the q/k/v projection wrote them (fp32): the flash kernel does the work
// of norm_rope_f32 with an AttnStage itself, so a decode step's layer has one launch fewer (FlashAttnArgs::fresh).
// Each block RMSNorms and rotates its query rows straight into its shared Q tile; the block whose key range ends
// at the new position writes that position's rotated k and its v into the cache, then reads them back as part of
// its last key tile. The arithmetic is norm_rope_kernel's, lane for lane (the same float4 chunks per lane, the
// same sum order, the same rotation operands), so the bits staged are the ones the separate launch stages.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/attention/mma_sm80.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/rope/rope_rotate.cuh"

namespace swrun::cuda::attn {

struct FreshRows {
  const float* q;  // [n_head, D]; null: the kernel loads an already staged q
  const float* k;  // [n_head_kv, D]
  const float* v;
  const float* q_norm;  // [D] each, or null: no norm
  const float* k_norm;
  void* k_cache;  // FlashParams::k and v, written at the new position's ring slot
  void* v_cache;
  float eps;
  RopeFreq freq;  // with the position's scale and YaRN (rope_freq)
  bool neox;
};

// A row of D floats as norm_rope_kernel holds it: float4 chunk c = lane + 32 j, j < kChunksPerLane.
template <int D> struct FreshLayout {
  static constexpr int kChunks = D / 4, kChunksPerLane = (kChunks + 31) / 32;
  static_assert(D == 64 || D == 128 || D == 256, "the flash kernels' head dims");
};

// The new position's cos/sin of every pair into cos_sin (D/2 entries in shared memory), a pair per thread. Formed
// before the kernel waits for its predecessor: a double exp2 and sincos each, microseconds of latency the kernel
// before can hide. The block synchronizes before they are read.
template <int D>
__device__ __forceinline__ void fresh_angles(float2* cos_sin, const FreshRows& f, int pos) {
  for (int i = threadIdx.x; i < D / 2; i += blockDim.x) cos_sin[i] = rope_cos_sin(i, int64_t(pos), f.freq);
}

// One head row through the RMSNorm (when g is given) and the rotation: out[j] is chunk lane + 32 j of the result.
// The whole warp calls it (shuffles); lanes past the row's chunks return nothing useful.
template <int D>
__device__ __forceinline__ void norm_rotate_row(float4 (&out)[FreshLayout<D>::kChunksPerLane], const float* row,
                                                const float* g, float eps, const float2* cos_sin, bool neox) {
  using L = FreshLayout<D>;
  const int lane = threadIdx.x & 31;
  float4 h[L::kChunksPerLane] = {}, gv[L::kChunksPerLane];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < L::kChunksPerLane; ++j) {
    const int c = lane + 32 * j;
    if (c >= L::kChunks) break;
    h[j] = reinterpret_cast<const float4*>(row)[c];
    if (g) gv[j] = reinterpret_cast<const float4*>(g)[c];
    ss += sum_of_squares(h[j]);
  }
  const float scale = g ? rms_scale(warp_sum(ss), 1.f / float(D), eps) : 1.f;
#pragma unroll
  for (int j = 0; j < L::kChunksPerLane; ++j) {
    const int c = lane + 32 * j;
    if (c >= L::kChunks) break;
    if (g) h[j] = scaled(h[j], scale, gv[j]);
  }
  if (!neox) {  // chunk c holds pairs 2c and 2c + 1
#pragma unroll
    for (int j = 0; j < L::kChunksPerLane; ++j) {
      const int c = min(lane + 32 * j, L::kChunks - 1);
      const float2 r0 = rotate_pair(h[j].x, h[j].y, cos_sin[2 * c]);
      const float2 r1 = rotate_pair(h[j].z, h[j].w, cos_sin[2 * c + 1]);
      out[j] = make_float4(r0.x, r0.y, r1.x, r1.y);
    }
    return;
  }
  // NeoX pairs element i with i + D/2, so chunk c of the first half with chunk c of the second: pairs 4c .. 4c + 3.
  // At D 256 both chunks are this lane's (j = 0 and 1); below, the partner chunk is D/8 lanes away.
  constexpr int kHalfChunks = L::kChunks / 2;
  float4 lo, hi;
  bool low_half;
  if constexpr (L::kChunksPerLane == 2) {
    lo = h[0], hi = h[1], low_half = true;
  } else {
    const float4 other = make_float4(__shfl_xor_sync(0xffffffffu, h[0].x, kHalfChunks),
                                     __shfl_xor_sync(0xffffffffu, h[0].y, kHalfChunks),
                                     __shfl_xor_sync(0xffffffffu, h[0].z, kHalfChunks),
                                     __shfl_xor_sync(0xffffffffu, h[0].w, kHalfChunks));
    low_half = (lane & kHalfChunks) == 0;
    lo = low_half ? h[0] : other;
    hi = low_half ? other : h[0];
  }
  const float2* cs = cos_sin + 4 * (lane % kHalfChunks);
  const float2 r0 = rotate_pair(lo.x, hi.x, cs[0]), r1 = rotate_pair(lo.y, hi.y, cs[1]);
  const float2 r2 = rotate_pair(lo.z, hi.z, cs[2]), r3 = rotate_pair(lo.w, hi.w, cs[3]);
  const float4 first = make_float4(r0.x, r1.x, r2.x, r3.x), second = make_float4(r0.y, r1.y, r2.y, r3.y);
  if constexpr (L::kChunksPerLane == 2) {
    out[0] = first;
    out[1] = second;
  } else {
    out[0] = low_half ? first : second;
  }
}

template <typename T>
__device__ __forceinline__ uint2 pack4(const float4& v) {
  return make_uint2(MmaOp<T>::pack(v.x, v.y), MmaOp<T>::pack(v.z, v.w));
}

// The block's query rows (one per head: n_q is 1) into the Q tile sQ of BM rows (the swizzled layout load_q_tile
// writes), its padding rows up to the warpgroup's 64 zeroed; with owns_new, the new position's k and v rows into
// the cache at element offset cache_off. Every thread of the block calls it; the caller synchronizes the block
// before the rows are read.
template <typename T, int D, int BM>
__device__ __forceinline__ void stage_fresh_rows(const FreshRows& f, int heads, int head_first, int kv_head,
                                                 bool owns_new, int64_t cache_off, T* sQ, const float2* cos_sin) {
  using L = FreshLayout<D>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int rows = heads + (owns_new ? 2 : 0);  // the q rows, then k, then v
  for (int r = warp; r < rows; r += warps) {
    float4 out[L::kChunksPerLane];
    if (r <= heads) {
      const bool is_q = r < heads;
      norm_rotate_row<D>(out, is_q ? f.q + (head_first + r) * D : f.k + kv_head * D, is_q ? f.q_norm : f.k_norm,
                         f.eps, cos_sin, f.neox);
    } else {
#pragma unroll
      for (int j = 0; j < L::kChunksPerLane; ++j) {
        const int c = lane + 32 * j;
        if (c < L::kChunks) out[j] = reinterpret_cast<const float4*>(f.v + kv_head * D)[c];
      }
    }
#pragma unroll
    for (int j = 0; j < L::kChunksPerLane; ++j) {
      const int c = lane + 32 * j;
      if (c >= L::kChunks) break;
      if (r < heads) {  // 4 elements: half of the 16-byte chunk c / 2
        *reinterpret_cast<uint2*>(sQ + tile_offset<BM>(r, c >> 1) + (c & 1) * 4) = pack4<T>(out[j]);
      } else {
        T* dst = static_cast<T*>(r == heads ? f.k_cache : f.v_cache) + cache_off;
        *reinterpret_cast<uint2*>(dst + 4 * c) = pack4<T>(out[j]);
      }
    }
  }
  const int pad_end = min(BM, (heads + 63) / 64 * 64);
  for (int i = threadIdx.x; i < (pad_end - heads) * (D / 8); i += blockDim.x)
    *reinterpret_cast<uint4*>(sQ + tile_offset<BM>(heads + i / (D / 8), i % (D / 8))) = make_uint4(0, 0, 0, 0);
}

}  // namespace swrun::cuda::attn
