// The gated MLP activations on the device, shared by the element-wise kernel and the fused gate/up GEMV so that
// both compute the same values.
#pragma once
#include "kernels/elementwise/elementwise.cuh"

namespace swrun::cuda {

__device__ inline float gated_activate(float g, GatedActKind act) {
  if (act == GatedActKind::Silu) return g / (1.f + expf(-g));
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
}

}  // namespace swrun::cuda
