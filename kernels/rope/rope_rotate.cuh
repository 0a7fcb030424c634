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

__device__ inline float2 rotate(float a, float b, int pair, double pos, const RopeFreq& f) {
  // theta = pos * base^(-pair / (head_dim/2)) / factor[pair]
  double theta = pos * exp2(-double(pair) * f.log2_base_over_half);
  if (f.factors) theta /= double(f.factors[pair]);
  double s, c;
  sincos(theta, &s, &c);
  const float cf = float(c) * f.attn_factor, sf = float(s) * f.attn_factor;
  return make_float2(a * cf - b * sf, a * sf + b * cf);
}

}  // namespace swrun::cuda
