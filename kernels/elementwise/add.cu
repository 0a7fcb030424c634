// Residual add, bias add and softcapping, in place.
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

__global__ void add_bias_kernel(float* x, const float* bias, size_t count, int64_t cols) {
  wait_for_predecessor();
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] += bias[i % size_t(cols)];
}

__global__ void softcap_kernel(float* x, size_t count, float cap, float inv_cap) {
  wait_for_predecessor();
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] = cap * tanhf(x[i] * inv_cap);
}

}  // namespace

void add_bias_rows(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const size_t count = size_t(rows) * size_t(cols);
  if (count == 0) return;
  launch_overlapped(add_bias_kernel, grid_for(count, kThreads), kThreads, stream, "add_bias_rows", x, bias, count,
                    cols);
}

void softcap_inplace(float* x, size_t count, float cap, cudaStream_t stream) {
  if (count == 0) return;
  launch_overlapped(softcap_kernel, grid_for(count, kThreads), kThreads, stream, "softcap_inplace", x, count, cap,
                    1.f / cap);
}

void add_inplace(float* x, const float* y, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(x, 16) && aligned_to(y, 16);
  launch_overlapped(add_kernel, grid_for((count + 3) / 4, kThreads), kThreads, stream, "add_inplace", x, y, count, vec);
}

}  // namespace swrun::cuda
