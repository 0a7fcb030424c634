// GeGLU / SwiGLU: the activated gate times the up projection, written over the gate in one pass.
#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/activation.cuh"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/elementwise/vec.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

// Each thread handles elements [4i, 4i+4): one float4 when the buffers allow it, else scalars (tail, odd offsets).
__global__ void gated_kernel(float* gate, const float* up, size_t count, GatedActKind act, bool vec) {
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
    *reinterpret_cast<float4*>(gate + i) = g;
    return;
  }
  for (size_t j = i; j < i + 4 && j < count; ++j) gate[j] = gated_activate(gate[j], act) * up[j];
}

}  // namespace

void gated_activation(float* gate, const float* up, size_t count, GatedActKind act, cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(gate, 16) && aligned_to(up, 16);
  launch_overlapped(gated_kernel, grid_for((count + 3) / 4, kThreads), kThreads, stream, "gated_activation", gate, up,
                    count, act, vec);
}

}  // namespace swrun::cuda
