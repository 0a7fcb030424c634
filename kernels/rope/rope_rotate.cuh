// The rotation of one RoPE pair, shared by the rope kernels and the persistent decode kernel. The angle is formed
// in double: at positions in the 100k range an fp32 product already loses ~1e-2 rad.
#pragma once
#include <cmath>

#include <cuda_runtime.h>

namespace swrun::cuda {

struct RopeFreq {
  double log2_base_over_half;
  const float* factors;  // per-pair divisors, or null
  float attn_factor;
};

inline RopeFreq rope_freq(float freq_base, int head_dim, const float* factors, float attn_factor) {
  return {std::log2(double(freq_base)) / double(head_dim / 2), factors, attn_factor};
}

// cos and sin of pair `pair`'s angle at position pos, times attn_factor.
__device__ inline float2 rope_cos_sin(int pair, double pos, const RopeFreq& f) {
  // theta = pos * base^(-pair / (head_dim/2)) / factor[pair]
  double theta = pos * exp2(-double(pair) * f.log2_base_over_half);
  if (f.factors) theta /= double(f.factors[pair]);
  double s, c;
  sincos(theta, &s, &c);
  return make_float2(float(c) * f.attn_factor, float(s) * f.attn_factor);
}

// With its roundings spelled out, so that every kernel rotating a pair gets the same bits.
__device__ inline float2 rotate_pair(float a, float b, float2 cs) {
  return make_float2(__fmaf_rn(a, cs.x, -__fmul_rn(b, cs.y)), __fmaf_rn(a, cs.y, __fmul_rn(b, cs.x)));
}

__device__ inline float2 rotate(float a, float b, int pair, double pos, const RopeFreq& f) {
  return rotate_pair(a, b, rope_cos_sin(pair, pos, f));
}

}  // namespace swrun::cuda
