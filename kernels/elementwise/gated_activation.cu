// GeGLU / SwiGLU: the activated gate times the up projection in one pass, written over the gate or, for the
// down projection's GEMM, as bf16.
#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/activation.cuh"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/elementwise/vec.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

// Each thread handles elements [4i, 4i+4): one float4 when the buffers allow it, else scalars (tail, odd offsets).
// The product goes to out (fp32; may be gate) or, for a GEMM that reads it as bf16 next, to out16 only.
template <bool kBf16Out>
__global__ void gated_kernel(const float* gate, const float* up, float* out, __nv_bfloat16* out16, size_t count,
                             GatedActKind act, bool vec) {
  wait_for_predecessor();
  const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= count) return;
  if (vec && i + 4 <= count) {
    float4 g = *reinterpret_cast<const float4*>(gate + i);
    const float4 u = *reinterpret_cast<const float4*>(up + i);
    g.x = gated_activate(g.x, act) * u.x;
    g.y = gated_activate(g.y, act) * u.y;
    g.z = gated_activate(g.z, act) * u.z;
    g.w = gated_activate(g.w, act) * u.w;
    if constexpr (kBf16Out) *reinterpret_cast<Bf16x4*>(out16 + i) = to_bf16x4(g);
    else *reinterpret_cast<float4*>(out + i) = g;
    return;
  }
  for (size_t j = i; j < i + 4 && j < count; ++j) {
    const float product = gated_activate(gate[j], act) * up[j];
    if constexpr (kBf16Out) out16[j] = __float2bfloat16_rn(product);
    else out[j] = product;
  }
}

}  // namespace

void gated_activation(float* gate, const float* up, size_t count, GatedActKind act, cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(gate, 16) && aligned_to(up, 16);
  launch_overlapped(gated_kernel<false>, grid_for((count + 3) / 4, kThreads), kThreads, stream, "gated_activation",
                    gate, up, gate, nullptr, count, act, vec);
}

void gated_activation_bf16(const float* gate, const float* up, __nv_bfloat16* out, size_t count, GatedActKind act,
                           cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(gate, 16) && aligned_to(up, 16) && aligned_to(out, 8);
  launch_overlapped(gated_kernel<true>, grid_for((count + 3) / 4, kThreads), kThreads, stream,
                    "gated_activation_bf16", gate, up, nullptr, out, count, act, vec);
}

}  // namespace swrun::cuda
