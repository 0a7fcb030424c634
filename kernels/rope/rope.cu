// One thread rotates two neighbouring pairs of one head (a float4 for Normal, two float2 for NeoX). The angle is
// formed in double: at positions in the 100k range an fp32 product already loses ~1e-2 rad. norm_rope_f32 fuses
// the per-head q/k RMSNorm with the rotation of q and k (one launch instead of four).
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/rope/rope.cuh"
#include "kernels/rope/rope_rotate.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

template <RopeKind kKind>
__global__ void rope_kernel(float* x, int64_t total, int heads, int head_dim, const int32_t* pos0,
                            float freq_scale, RopeFreq freq) {
  wait_for_predecessor();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // one per two pairs
  if (idx >= total) return;
  const int quads_per_head = head_dim / 4;
  const int q = int(idx % quads_per_head);
  const int64_t head_row = idx / quads_per_head;  // t * heads + h
  const int64_t t = head_row / heads;
  const double pos = double(int64_t(*pos0) + t) * double(freq_scale);
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

constexpr int kNormRopeWarps = 4;

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per head row of q (rows < q_rows) or k: the row's RMSNorm (when its norm weight is given; the sum of
// squares taken in rmsnorm_f32's warp-per-row order) into shared memory, then its rotation as rope_kernel turns it,
// and the staging of AttnStage when stage.q16 is set. Every operand is loaded before the reduction.
template <RopeKind kKind>
__global__ void norm_rope_kernel(float* q, float* k, const float* q_norm, const float* k_norm, int64_t q_rows,
                                 int64_t rows, int q_heads, int k_heads, int head_dim, float eps, const int32_t* pos0,
                                 float freq_scale, RopeFreq freq, AttnStage stage) {
  constexpr int kQuadsPerLane = kNormRopeMaxHeadDim / 4 / 32;
  __shared__ float4 staged[kNormRopeWarps][kNormRopeMaxHeadDim / 4];  // float4: 16-byte aligned rows
  wait_for_predecessor();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kNormRopeWarps + warp;
  if (row >= rows) return;
  const bool is_q = row < q_rows;
  const int64_t head_row = is_q ? row : row - q_rows;  // t * heads + h
  float* head = (is_q ? q : k) + head_row * head_dim;
  const float* g = is_q ? q_norm : k_norm;
  const int64_t t = head_row / (is_q ? q_heads : k_heads);
  const bool staging = stage.q16 != nullptr;
  const float* v = staging && !is_q ? stage.v + head_row * head_dim : nullptr;
  float* h = reinterpret_cast<float*>(staged[warp]);
  const int quads = head_dim / 4;
  float4 hv[kQuadsPerLane], gv[kQuadsPerLane], vv[kQuadsPerLane];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kQuadsPerLane; ++j) {
    const int c = lane + j * 32;
    if (c >= quads) break;
    hv[j] = reinterpret_cast<const float4*>(head)[c];
    if (g) gv[j] = reinterpret_cast<const float4*>(g)[c];
    if (v) vv[j] = reinterpret_cast<const float4*>(v)[c];
    ss += hv[j].x * hv[j].x + hv[j].y * hv[j].y + hv[j].z * hv[j].z + hv[j].w * hv[j].w;
  }
  const float scale = g ? rsqrtf(warp_sum(ss) * (1.f / float(head_dim)) + eps) : 1.f;
#pragma unroll
  for (int j = 0; j < kQuadsPerLane; ++j) {
    const int c = lane + j * 32;
    if (c >= quads) break;
    const float4 x = hv[j];
    reinterpret_cast<float4*>(h)[c] =
        g ? make_float4(x.x * scale * gv[j].x, x.y * scale * gv[j].y, x.z * scale * gv[j].z, x.w * scale * gv[j].w)
          : x;
  }
  __syncwarp();
  const int64_t pos = int64_t(*pos0) + t;
  // Staging targets: the bf16 query row, or this position's cache rows of k and v.
  __nv_bfloat16* out16 = nullptr;
  __nv_bfloat16* v_row = nullptr;
  if (staging) {
    const int64_t cache_row = ((pos % stage.capacity) * k_heads + head_row % k_heads) * head_dim;
    out16 = is_q ? stage.q16 + head_row * head_dim : stage.k_cache + cache_row;
    if (!is_q) v_row = stage.v_cache + cache_row;
  }
  const double angle_pos = double(pos) * double(freq_scale);
  const int half = head_dim / 2;
  for (int i = lane; i < half; i += 32) {
    const int a = kKind == RopeKind::Normal ? 2 * i : i, b = kKind == RopeKind::Normal ? 2 * i + 1 : i + half;
    const float2 r = rotate(h[a], h[b], i, angle_pos, freq);
    head[a] = r.x;
    head[b] = r.y;
    if (out16) {
      out16[a] = __float2bfloat16_rn(r.x);
      out16[b] = __float2bfloat16_rn(r.y);
    }
  }
  if (v_row) {
#pragma unroll
    for (int j = 0; j < kQuadsPerLane; ++j) {
      const int c = lane + j * 32;
      if (c >= quads) break;
      v_row[4 * c] = __float2bfloat16_rn(vv[j].x);
      v_row[4 * c + 1] = __float2bfloat16_rn(vv[j].y);
      v_row[4 * c + 2] = __float2bfloat16_rn(vv[j].z);
      v_row[4 * c + 3] = __float2bfloat16_rn(vv[j].w);
    }
  }
}

}  // namespace

void norm_rope_f32(float* q, float* k, const float* q_norm, const float* k_norm, int n, int q_heads, int k_heads,
                   int head_dim, float eps, const int32_t* pos0, float freq_base, float freq_scale,
                   const float* freq_factors, float attn_factor, RopeKind kind, cudaStream_t stream,
                   const AttnStage* stage) {
  if (head_dim <= 0 || head_dim % 4 != 0 || head_dim > kNormRopeMaxHeadDim)
    fail("norm_rope: head_dim " + std::to_string(head_dim) + " must be a positive multiple of 4 up to " +
         std::to_string(kNormRopeMaxHeadDim));
  for (const void* p : {static_cast<const void*>(q), static_cast<const void*>(k), static_cast<const void*>(q_norm),
                        static_cast<const void*>(k_norm)})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("norm_rope: buffers must be 16-byte aligned");
  if (!(freq_base > 0.f)) fail("norm_rope: freq_base must be positive");
  if (stage && (!stage->q16 || !stage->v || !stage->k_cache || !stage->v_cache || stage->capacity <= 0 ||
                reinterpret_cast<uintptr_t>(stage->v) % 16 != 0))
    fail("norm_rope: incomplete attention staging (q16, v 16-byte aligned, both caches, a positive capacity)");
  const int64_t q_rows = int64_t(n) * q_heads, rows = q_rows + int64_t(n) * k_heads;
  if (rows <= 0) return;
  const RopeFreq freq = rope_freq(freq_base, head_dim, freq_factors, attn_factor);
  const unsigned blocks = grid_for(static_cast<size_t>(rows), kNormRopeWarps);
  launch_overlapped(kind == RopeKind::Normal ? norm_rope_kernel<RopeKind::Normal> : norm_rope_kernel<RopeKind::NeoX>,
                    blocks, kNormRopeWarps * 32, stream, "norm_rope_f32", q, k, q_norm, k_norm, q_rows, rows,
                    q_heads, k_heads, head_dim, eps, pos0, freq_scale, freq, stage ? *stage : AttnStage{});
}

void rope_f32(float* x, int n, int heads, int head_dim, const int32_t* pos0, float freq_base, float freq_scale,
              const float* freq_factors, float attn_factor, RopeKind kind, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 4 != 0)
    fail("rope: head_dim " + std::to_string(head_dim) + " must be a positive multiple of 4");
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0) fail("rope: buffer must be 16-byte aligned");
  if (!(freq_base > 0.f)) fail("rope: freq_base must be positive");
  const int64_t total = int64_t(n) * heads * (head_dim / 4);
  if (total <= 0) return;
  const RopeFreq freq = rope_freq(freq_base, head_dim, freq_factors, attn_factor);
  const unsigned blocks = grid_for(static_cast<size_t>(total), kThreads);
  launch_overlapped(kind == RopeKind::Normal ? rope_kernel<RopeKind::Normal> : rope_kernel<RopeKind::NeoX>, blocks,
                    kThreads, stream, "rope_f32", x, total, heads, head_dim, pos0, freq_scale, freq);
}

}  // namespace swrun::cuda
