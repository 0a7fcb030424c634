// One pass over x: each thread keeps its share of the row in registers across the reduction, so x is read
// once and out written once. Short rows (per-head norms, small models) take one warp per row and several
// rows per block; long rows take a whole block.
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/norm/rmsnorm.cuh"

namespace swrun::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpRowsPerBlock = 4;

__device__ inline float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// blockDim = (threads per row, rows per block); rows per block > 1 only when threads per row == 32, so the
// block-wide reduction below is taken by whole blocks or not at all.
template <int kVec>
__global__ void rmsnorm_kernel(const float4* x, const float4* w, float4* out, int64_t rows, int cols4,
                               float inv_cols, float eps) {
  __shared__ float partial[1024 / kWarp];
  wait_for_predecessor();
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  const float4* xr = x + row * cols4;
  float4 v[kVec];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      v[i] = xr[c];
      ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
    }
  }
  ss = warp_sum(ss);
  if (blockDim.x > kWarp) {
    if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = ss;
    __syncthreads();
    ss = 0.f;
    for (int i = 0; i < int(blockDim.x / kWarp); ++i) ss += partial[i];
  }
  const float scale = rsqrtf(ss * inv_cols + eps);
  float4* outr = out + row * cols4;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      const float4 g = w[c];
      outr[c] = make_float4(v[i].x * scale * g.x, v[i].y * scale * g.y, v[i].z * scale * g.z, v[i].w * scale * g.w);
    }
  }
}

template <int kVec>
void launch(const float* x, const float* w, float* out, int64_t rows, int cols4, int threads_per_row, float eps,
            cudaStream_t stream) {
  const int rows_per_block = threads_per_row == kWarp ? kWarpRowsPerBlock : 1;
  const dim3 block(threads_per_row, rows_per_block);
  const unsigned blocks = grid_for(static_cast<size_t>(rows), rows_per_block);
  launch_overlapped(rmsnorm_kernel<kVec>, blocks, block, stream, "rmsnorm_f32", reinterpret_cast<const float4*>(x),
                    reinterpret_cast<const float4*>(w), reinterpret_cast<float4*>(out), rows, cols4,
                    1.f / float(cols4 * 4), eps);
}

}  // namespace

void rmsnorm_f32(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps,
                 cudaStream_t stream) {
  if (cols <= 0 || cols % 4 != 0 || cols > kRmsNormMaxCols)
    fail("rmsnorm: row length " + std::to_string(cols) + " must be a positive multiple of 4 up to " +
         std::to_string(kRmsNormMaxCols));
  auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (misaligned(x) || misaligned(w) || misaligned(out)) fail("rmsnorm: buffers must be 16-byte aligned");
  if (rows <= 0) return;
  const int cols4 = static_cast<int>(cols / 4);
  // Up to 8 float4 per thread: a warp covers rows of up to 1024 floats, 1024 threads rows of up to 32768.
  int threads = kWarp;
  while (threads * 8 < cols4) threads *= 2;
  const int per_thread = (cols4 + threads - 1) / threads;
  if (per_thread <= 1) launch<1>(x, w, out, rows, cols4, threads, eps, stream);
  else if (per_thread <= 2) launch<2>(x, w, out, rows, cols4, threads, eps, stream);
  else if (per_thread <= 4) launch<4>(x, w, out, rows, cols4, threads, eps, stream);
  else launch<8>(x, w, out, rows, cols4, threads, eps, stream);
}

}  // namespace swrun::cuda
