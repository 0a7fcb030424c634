// One thread rotates two neighbouring pairs of one head (a float4 for Normal, two float2 for NeoX). The angle is
// formed in double: at positions in the 100k range an fp32 product already loses ~1e-2 rad. norm_rope_f32 fuses
// the per-head q/k RMSNorm with the rotation of q and k (one launch instead of four).
#include <algorithm>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/rope/rope.cuh"
#include "kernels/rope/rope_rotate.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

template <RopeKind kKind>
__global__ void rope_kernel(float* x, int64_t total, int heads, int head_dim, const int32_t* pos0, RopeFreq freq) {
  wait_for_predecessor();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // one per two pairs
  if (idx >= total) return;
  const int quads_per_head = head_dim / 4;
  const int q = int(idx % quads_per_head);
  const int64_t head_row = idx / quads_per_head;  // t * heads + h
  const int64_t t = head_row / heads;
  const int64_t pos = int64_t(*pos0) + t;
  float* head = x + head_row * head_dim;
  if constexpr (kKind == RopeKind::Normal) {
    float4 v = reinterpret_cast<float4*>(head)[q];
    const float2 r0 = rotate(v.x, v.y, 2 * q, pos, freq);
    const float2 r1 = rotate(v.z, v.w, 2 * q + 1, pos, freq);
    reinterpret_cast<float4*>(head)[q] = make_float4(r0.x, r0.y, r1.x, r1.y);
  } else {
    const int half = head_dim / 2;
    float2* lo = reinterpret_cast<float2*>(head) + q;
    float2* hi = reinterpret_cast<float2*>(head + half) + q;
    const float2 a = *lo, b = *hi;
    const float2 r0 = rotate(a.x, b.x, 2 * q, pos, freq);
    const float2 r1 = rotate(a.y, b.y, 2 * q + 1, pos, freq);
    *lo = make_float2(r0.x, r1.x);
    *hi = make_float2(r0.y, r1.y);
  }
}

constexpr int kNormRopeMaxWarps = 8;

// One block per token: its threads first turn the token's angles into cos/sin once (one pair per thread; in double,
// as rope_kernel does per element), then each warp takes head rows of q and k in turn: the row's RMSNorm (when its
// norm weight is given; the sum of squares taken in rmsnorm_f32's warp-per-row order) into shared memory, its
// rotation, written back to q or k, or with stage.q16 set, staged for the attention instead (the bf16 query and
// the cache rows of k and v: nothing reads the fp32 rows after it). Every operand of a row is loaded before its
// reduction. The angles are shared by the token's q_heads + k_heads rows, which a warp per row computed that many
// times each (5 for Gemma 3, 40 for Llama 3 8B). A lane holds kQuadsPerLane float4 of a row (head_dim <= 128 *
// kQuadsPerLane) in registers: sized for the largest head_dim, the registers alone held occupancy to 10 warps per SM.
// Shared memory (dynamic): the cos/sin pairs, then one staged row per warp.
template <RopeKind kKind, int kQuadsPerLane>
__global__ void norm_rope_kernel(float* q, float* k, const float* q_norm, const float* k_norm, int q_heads,
                                 int k_heads, int head_dim, float eps, const int32_t* pos0, RopeFreq freq,
                                 AttnStage stage) {
  extern __shared__ float4 smem[];
  float2* cos_sin = reinterpret_cast<float2*>(smem);
  float4* staged_rows = smem + head_dim / 4;  // after head_dim / 2 float2
  const int64_t t = blockIdx.x;
  const int64_t pos = int64_t(*pos0) + t;
  const int half = head_dim / 2;
  // The angles (double-precision exp2 and sincos: microseconds of latency) are formed while the kernel before
  // still runs: no kernel writes the position, which the step uploads before its first kernel starts, and a
  // kernel here starts only after the one two places before it has completed.
  for (int i = threadIdx.x; i < half; i += blockDim.x) cos_sin[i] = rope_cos_sin(i, pos, freq);
  wait_for_predecessor();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const bool staging = stage.q16 != nullptr;
  const int quads = head_dim / 4;
  float* h = reinterpret_cast<float*>(staged_rows + warp * (head_dim / 4));
  for (int r = warp; r < q_heads + k_heads; r += warps) {
    const bool is_q = r < q_heads;
    const int head_index = is_q ? r : r - q_heads;
    const int64_t head_row = t * (is_q ? q_heads : k_heads) + head_index;
    float* head = (is_q ? q : k) + head_row * head_dim;
    const float* g = is_q ? q_norm : k_norm;
    const float* v = staging && !is_q ? stage.v + head_row * head_dim : nullptr;
    float4 hv[kQuadsPerLane], gv[kQuadsPerLane], vv[kQuadsPerLane];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < kQuadsPerLane; ++j) {
      const int c = lane + j * 32;
      if (c >= quads) break;
      hv[j] = reinterpret_cast<const float4*>(head)[c];
      if (g) gv[j] = reinterpret_cast<const float4*>(g)[c];
      if (v) vv[j] = reinterpret_cast<const float4*>(v)[c];
      ss += sum_of_squares(hv[j]);
    }
    const float scale = g ? rms_scale(warp_sum(ss), 1.f / float(head_dim), eps) : 1.f;
#pragma unroll
    for (int j = 0; j < kQuadsPerLane; ++j) {
      const int c = lane + j * 32;
      if (c >= quads) break;
      const float4 x = hv[j];
      reinterpret_cast<float4*>(h)[c] = g ? scaled(x, scale, gv[j]) : x;
    }
    __syncwarp();
    // Staging targets: the bf16 query row, or this position's cache rows of k and v.
    __nv_bfloat16* out16 = nullptr;
    __nv_bfloat16* v_row = nullptr;
    if (staging) {
      const int64_t cache_row = ((pos % stage.capacity) * k_heads + head_index) * head_dim;
      out16 = is_q ? stage.q16 + head_row * head_dim : stage.k_cache + cache_row;
      if (!is_q) v_row = stage.v_cache + cache_row;
    }
    for (int i = lane; i < half; i += 32) {
      const int a = kKind == RopeKind::Normal ? 2 * i : i, b = kKind == RopeKind::Normal ? 2 * i + 1 : i + half;
      const float2 rot = rotate_pair(h[a], h[b], cos_sin[i]);
      if constexpr (kKind == RopeKind::Normal) {
        if (out16) reinterpret_cast<__nv_bfloat162*>(out16)[i] = __floats2bfloat162_rn(rot.x, rot.y);
        else reinterpret_cast<float2*>(head)[i] = rot;
      } else if (out16) {
        out16[a] = __float2bfloat16_rn(rot.x);
        out16[b] = __float2bfloat16_rn(rot.y);
      } else {
        head[a] = rot.x;
        head[b] = rot.y;
      }
    }
    if (v_row) {
#pragma unroll
      for (int j = 0; j < kQuadsPerLane; ++j) {
        const int c = lane + j * 32;
        if (c >= quads) break;
        reinterpret_cast<__nv_bfloat162*>(v_row)[2 * c] = __floats2bfloat162_rn(vv[j].x, vv[j].y);
        reinterpret_cast<__nv_bfloat162*>(v_row)[2 * c + 1] = __floats2bfloat162_rn(vv[j].z, vv[j].w);
      }
    }
    __syncwarp();  // the next row reuses h
  }
}

using NormRopeKernel = void (*)(float*, float*, const float*, const float*, int, int, int, float, const int32_t*,
                                RopeFreq, AttnStage);

template <int kQuadsPerLane>
NormRopeKernel norm_rope_instance(RopeKind kind) {
  return kind == RopeKind::Normal ? norm_rope_kernel<RopeKind::Normal, kQuadsPerLane>
                                  : norm_rope_kernel<RopeKind::NeoX, kQuadsPerLane>;
}

}  // namespace

void norm_rope_f32(float* q, float* k, const float* q_norm, const float* k_norm, int n, int q_heads, int k_heads,
                   int head_dim, float eps, const int32_t* pos0, float freq_base, float freq_scale,
                   const float* freq_factors, float attn_factor, RopeKind kind, cudaStream_t stream,
                   const AttnStage* stage, const RopeYarn& yarn) {
  if (head_dim <= 0 || head_dim % 4 != 0 || head_dim > kNormRopeMaxHeadDim)
    fail("norm_rope: head_dim " + std::to_string(head_dim) + " must be a positive multiple of 4 up to " +
         std::to_string(kNormRopeMaxHeadDim));
  for (const void* p : {static_cast<const void*>(q), static_cast<const void*>(k), static_cast<const void*>(q_norm),
                        static_cast<const void*>(k_norm)})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("norm_rope: buffers must be 16-byte aligned");
  if (!(freq_base > 0.f)) fail("norm_rope: freq_base must be positive");
  if (yarn.enabled && !(freq_scale > 0.f)) fail("norm_rope: YaRN needs a positive freq_scale");
  if (stage && (!stage->q16 || !stage->v || !stage->k_cache || !stage->v_cache || stage->capacity <= 0 ||
                reinterpret_cast<uintptr_t>(stage->v) % 16 != 0))
    fail("norm_rope: incomplete attention staging (q16, v 16-byte aligned, both caches, a positive capacity)");
  if (n <= 0 || q_heads + k_heads <= 0) return;
  const RopeFreq freq = rope_freq(freq_base, head_dim, freq_factors, attn_factor, freq_scale, yarn);
  const int warps = std::min(q_heads + k_heads, kNormRopeMaxWarps);
  const int quads_per_lane = (head_dim / 4 + 31) / 32;
  static_assert(kNormRopeMaxHeadDim <= 8 * 4 * 32, "the widest instance holds 8 float4 per lane");
  const NormRopeKernel kernel = quads_per_lane <= 1   ? norm_rope_instance<1>(kind)
                                : quads_per_lane <= 2 ? norm_rope_instance<2>(kind)
                                : quads_per_lane <= 4 ? norm_rope_instance<4>(kind)
                                                      : norm_rope_instance<8>(kind);
  const size_t smem = size_t(head_dim / 2) * sizeof(float2) + size_t(warps) * head_dim * sizeof(float);
  launch_overlapped_smem(kernel, unsigned(n), warps * 32, smem, stream, "norm_rope_f32", q, k, q_norm, k_norm,
                         q_heads, k_heads, head_dim, eps, pos0, freq, stage ? *stage : AttnStage{});
}

void rope_f32(float* x, int n, int heads, int head_dim, const int32_t* pos0, float freq_base, float freq_scale,
              const float* freq_factors, float attn_factor, RopeKind kind, cudaStream_t stream,
              const RopeYarn& yarn) {
  if (head_dim <= 0 || head_dim % 4 != 0)
    fail("rope: head_dim " + std::to_string(head_dim) + " must be a positive multiple of 4");
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0) fail("rope: buffer must be 16-byte aligned");
  if (!(freq_base > 0.f)) fail("rope: freq_base must be positive");
  if (yarn.enabled && !(freq_scale > 0.f)) fail("rope: YaRN needs a positive freq_scale");
  const int64_t total = int64_t(n) * heads * (head_dim / 4);
  if (total <= 0) return;
  const RopeFreq freq = rope_freq(freq_base, head_dim, freq_factors, attn_factor, freq_scale, yarn);
  const unsigned blocks = grid_for(static_cast<size_t>(total), kThreads);
  launch_overlapped(kind == RopeKind::Normal ? rope_kernel<RopeKind::Normal> : rope_kernel<RopeKind::NeoX>, blocks,
                    kThreads, stream, "rope_f32", x, total, heads, head_dim, pos0, freq);
}

}  // namespace swrun::cuda
