// The rotation of one RoPE pair, shared by the rope kernels, the flash decode kernel's fresh rows and the persistent
// decode kernel. The angle is formed in double: at positions in the 100k range an fp32 product already loses ~1e-2
// rad.
#pragma once
#include <algorithm>
#include <cmath>

#include <cuda_runtime.h>

#include "kernels/rope/rope.cuh"

namespace swrun::cuda {

struct RopeFreq {
  double log2_base_over_half;
  const float* factors;  // per-pair divisors, or null
  float attn_factor;
  float freq_scale;      // linear scaling: the position is multiplied by it
  // YaRN (RopeYarn): pair i's angle is original * freq_scale * (1 - r) + original * r, r = 1 - clamp((i - yarn_low) /
  // yarn_span, 0, 1), and cos/sin are multiplied by yarn_magnitude = attn_factor * (1 + 0.1 ln(1 / freq_scale)).
  bool yarn;
  float yarn_low;
  double yarn_span, yarn_magnitude;
};

inline RopeFreq rope_freq(float freq_base, int head_dim, const float* factors, float attn_factor, float freq_scale,
                          const RopeYarn& yarn) {
  RopeFreq f{std::log2(double(freq_base)) / double(head_dim / 2), factors, attn_factor, freq_scale, yarn.enabled,
             0.f, 1.0, 1.0};
  if (yarn.enabled) {  // the CPU backend's terms (runtime/cpu/cpu_backend.cpp, rope), in its precision
    f.yarn_low = yarn.low;
    f.yarn_span = std::max(0.001, double(yarn.high) - yarn.low);
    f.yarn_magnitude = double(attn_factor) * (1.0 + 0.1 * std::log(1.0 / freq_scale));
  }
  return f;
}

// cos and sin of pair `pair`'s angle at position pos, times attn_factor (with YaRN, its magnitude).
__device__ inline float2 rope_cos_sin(int pair, int64_t pos, const RopeFreq& f) {
  double s, c;
  if (!f.yarn) {
    // theta = (pos * freq_scale) * base^(-pair / (head_dim/2)) / factor[pair]
    double theta = (double(pos) * double(f.freq_scale)) * exp2(-double(pair) * f.log2_base_over_half);
    if (f.factors) theta /= double(f.factors[pair]);
    sincos(theta, &s, &c);
    return make_float2(float(c) * f.attn_factor, float(s) * f.attn_factor);
  }
  double original = double(pos) * exp2(-double(pair) * f.log2_base_over_half);
  if (f.factors) original /= double(f.factors[pair]);
  const double kept = 1.0 - fmin(fmax(double(float(pair) - f.yarn_low) / f.yarn_span, 0.0), 1.0);
  // The CPU's expression, its roundings spelled out (no contraction into fma).
  const double theta =
      __dadd_rn(__dmul_rn(__dmul_rn(original, double(f.freq_scale)), 1.0 - kept), __dmul_rn(original, kept));
  sincos(theta, &s, &c);
  return make_float2(float(__dmul_rn(c, f.yarn_magnitude)), float(__dmul_rn(s, f.yarn_magnitude)));
}

// With its roundings spelled out, so that every kernel rotating a pair gets the same bits.
__device__ inline float2 rotate_pair(float a, float b, float2 cs) {
  return make_float2(__fmaf_rn(a, cs.x, -__fmul_rn(b, cs.y)), __fmaf_rn(a, cs.y, __fmul_rn(b, cs.x)));
}

__device__ inline float2 rotate(float a, float b, int pair, int64_t pos, const RopeFreq& f) {
  return rotate_pair(a, b, rope_cos_sin(pair, pos, f));
}

}  // namespace swrun::cuda
