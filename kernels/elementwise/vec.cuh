// Small helpers shared by the element-wise, norm, RoPE and GEMV kernels: 4-wide fp32 <-> bf16 conversion, a
// warp's sum, the RMSNorm arithmetic, and alignment tests.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

namespace swrun::cuda {

// Four consecutive bf16 values as one 8-byte word.
struct alignas(8) Bf16x4 {
  __nv_bfloat162 lo, hi;
};

__device__ inline Bf16x4 to_bf16x4(float4 v) {
  return {__floats2bfloat162_rn(v.x, v.y), __floats2bfloat162_rn(v.z, v.w)};
}

__device__ inline float4 to_float4(Bf16x4 v) {
  const float2 a = __bfloat1622float2(v.lo), b = __bfloat1622float2(v.hi);
  return make_float4(a.x, a.y, b.x, b.y);
}

// The sum of v over a warp's lanes, in the same butterfly order everywhere.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The RMSNorm arithmetic, written once and with its roundings spelled out (the compiler chooses where to fuse a
// multiply and an add by context): every kernel that norms a row (rmsnorm, the residual step and its GEMV fold, the
// q/k norm + RoPE, the persistent program) rounds the same way from the same inputs.
__device__ __forceinline__ float sum_of_squares(float4 v) {
  return __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.y, v.y, __fmul_rn(v.x, v.x))));
}
// 1 / sqrt(mean + eps) for a row whose squares sum to `sum`, inv_n being 1 / its length.
__device__ __forceinline__ float rms_scale(float sum, float inv_n, float eps) {
  return rsqrtf(__fmaf_rn(sum, inv_n, eps));
}
// v * scale * g, element by element.
__device__ __forceinline__ float4 scaled(float4 v, float scale, float4 g) {
  return make_float4(v.x * scale * g.x, v.y * scale * g.y, v.z * scale * g.z, v.w * scale * g.w);
}

inline bool aligned_to(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace swrun::cuda
