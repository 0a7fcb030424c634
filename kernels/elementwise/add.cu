// Residual add in place.
#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/elementwise/vec.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

__global__ void add_kernel(float* x, const float* y, size_t count, bool vec) {
  wait_for_predecessor();
  const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= count) return;
  if (vec && i + 4 <= count) {
    float4 a = *reinterpret_cast<const float4*>(x + i);
    const float4 b = *reinterpret_cast<const float4*>(y + i);
    a.x += b.x; a.y += b.y; a.z += b.z; a.w += b.w;
    *reinterpret_cast<float4*>(x + i) = a;
    return;
  }
  for (size_t j = i; j < i + 4 && j < count; ++j) x[j] += y[j];
}

}  // namespace

void add_inplace(float* x, const float* y, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(x, 16) && aligned_to(y, 16);
  launch_overlapped(add_kernel, grid_for((count + 3) / 4, kThreads), kThreads, stream, "add_inplace", x, y, count, vec);
}

}  // namespace swrun::cuda
