// Small helpers shared by the element-wise kernels: 4-wide fp32 <-> bf16 conversion and alignment tests.
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

inline bool aligned_to(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace swrun::cuda
