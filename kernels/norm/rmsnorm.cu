// One pass over x: each thread keeps its share of the row in registers across the reduction, so x is read
// once and out written once (also for the fused residual step: post-norm, residual add, next pre-norm), plus
// its bf16 rounding when a GEMM reads it next. Short rows (per-head norms, small models) take one warp per row and
// several rows per block; long rows take a whole block.
#include <initializer_list>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/norm/rmsnorm.cuh"

namespace swrun::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpRowsPerBlock = 4;

// blockDim = (threads per row, rows per block); rows per block > 1 only when threads per row == 32, so the
// block-wide reduction below is taken by whole blocks or not at all.
template <int kVec>
__global__ void rmsnorm_kernel(const float4* x, const float4* w, float4* out, Bf16x4* out16, int64_t rows,
                               int cols4, float inv_cols, float eps) {
  __shared__ float partial[1024 / kWarp];
  wait_for_predecessor();
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  const float4* xr = x + row * cols4;
  float4 v[kVec], g[kVec];  // the weights too are loaded before the reduction: no load after it
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      v[i] = xr[c];
      g[i] = w[c];
      ss += sum_of_squares(v[i]);
    }
  }
  ss = warp_sum(ss);
  if (blockDim.x > kWarp) {
    if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = ss;
    __syncthreads();
    ss = 0.f;
    for (int i = 0; i < int(blockDim.x / kWarp); ++i) ss += partial[i];
  }
  const float scale = rms_scale(ss, inv_cols, eps);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      const float4 o = scaled(v[i], scale, g[i]);
      out[row * cols4 + c] = o;
      if (out16) out16[row * cols4 + c] = to_bf16x4(o);
    }
  }
}

// The residual step of a decoder block in one pass over its rows, with the thread layout of rmsnorm_kernel (so
// every norm reduces in the same order as the plain kernel): y = rmsnorm(y) * w_post (when given), x += y, then
// xn = rmsnorm(x) * w_next (when given). y is left unchanged.
template <int kVec>
__global__ void residual_norm_kernel(const float4* y, const float4* w_post, float4* x, const float4* w_next,
                                     float4* xn, Bf16x4* xn16, int64_t rows, int cols4, float inv_cols,
                                     float eps) {
  __shared__ float partial[1024 / kWarp];
  wait_for_predecessor();
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  // The inverse RMS of this thread's share v of the row (the row's sum of squares reduced like rmsnorm_kernel).
  auto inv_rms = [&](const float4(&v)[kVec]) {
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < kVec; ++i)
      if (threadIdx.x + i * blockDim.x < cols4)
        ss += sum_of_squares(v[i]);
    ss = warp_sum(ss);
    if (blockDim.x > kWarp) {
      __syncthreads();  // an earlier reduction's readers are done with partial
      if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = ss;
      __syncthreads();
      ss = 0.f;
      for (int i = 0; i < int(blockDim.x / kWarp); ++i) ss += partial[i];
    }
    return rms_scale(ss, inv_cols, eps);
  };
  // Every operand first (y, the residual, both norm weights): a load after a reduction would add its latency.
  float4 v[kVec], r[kVec], gp[kVec], gn[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      v[i] = y[row * cols4 + c];
      r[i] = x[row * cols4 + c];
      if (w_post) gp[i] = w_post[c];
      if (w_next) gn[i] = w_next[c];
    }
  }
  if (w_post) {
    const float scale = inv_rms(v);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const int c = threadIdx.x + i * blockDim.x;
      if (c < cols4) v[i] = scaled(v[i], scale, gp[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      v[i] = make_float4(r[i].x + v[i].x, r[i].y + v[i].y, r[i].z + v[i].z, r[i].w + v[i].w);
      x[row * cols4 + c] = v[i];
    }
  }
  if (!w_next) return;
  const float scale = inv_rms(v);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < cols4) {
      const float4 o = scaled(v[i], scale, gn[i]);
      xn[row * cols4 + c] = o;
      if (xn16) xn16[row * cols4 + c] = to_bf16x4(o);
    }
  }
}

// Threads per row and float4 per thread for rows of cols4 float4: up to 8 float4 per thread, a warp covering rows
// of up to 1024 floats, 1024 threads rows of up to 32768.
struct RowLayout {
  int threads, per_thread;
};
RowLayout row_layout(int cols4) {
  int threads = kWarp;
  while (threads * 8 < cols4) threads *= 2;
  return {threads, (cols4 + threads - 1) / threads};
}

void check_row(const char* op, int64_t cols, std::initializer_list<const void*> buffers) {
  if (cols <= 0 || cols % 4 != 0 || cols > kRmsNormMaxCols)
    fail(std::string(op) + ": row length " + std::to_string(cols) + " must be a positive multiple of 4 up to " +
         std::to_string(kRmsNormMaxCols));
  for (const void* p : buffers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail(std::string(op) + ": buffers must be 16-byte aligned");
}

template <int kVec>
void launch_residual(const float* y, const float* w_post, float* x, const float* w_next, float* xn,
                     __nv_bfloat16* xn16, int64_t rows, int cols4, int threads_per_row, float eps,
                     cudaStream_t stream) {
  const int rows_per_block = threads_per_row == kWarp ? kWarpRowsPerBlock : 1;
  launch_overlapped(residual_norm_kernel<kVec>, grid_for(static_cast<size_t>(rows), rows_per_block),
                    dim3(threads_per_row, rows_per_block), stream, "residual_norm_f32",
                    reinterpret_cast<const float4*>(y), reinterpret_cast<const float4*>(w_post),
                    reinterpret_cast<float4*>(x), reinterpret_cast<const float4*>(w_next),
                    reinterpret_cast<float4*>(xn), reinterpret_cast<Bf16x4*>(xn16), rows, cols4,
                    1.f / float(cols4 * 4), eps);
}

template <int kVec>
void launch(const float* x, const float* w, float* out, __nv_bfloat16* out16, int64_t rows, int cols4,
            int threads_per_row, float eps, cudaStream_t stream) {
  const int rows_per_block = threads_per_row == kWarp ? kWarpRowsPerBlock : 1;
  const dim3 block(threads_per_row, rows_per_block);
  const unsigned blocks = grid_for(static_cast<size_t>(rows), rows_per_block);
  launch_overlapped(rmsnorm_kernel<kVec>, blocks, block, stream, "rmsnorm_f32", reinterpret_cast<const float4*>(x),
                    reinterpret_cast<const float4*>(w), reinterpret_cast<float4*>(out),
                    reinterpret_cast<Bf16x4*>(out16), rows, cols4, 1.f / float(cols4 * 4), eps);
}

}  // namespace

void rmsnorm_f32(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps,
                 cudaStream_t stream, __nv_bfloat16* out16) {
  check_row("rmsnorm", cols, {x, w, out, out16});
  if (rows <= 0) return;
  const int cols4 = static_cast<int>(cols / 4);
  const auto [threads, per_thread] = row_layout(cols4);
  if (per_thread <= 1) launch<1>(x, w, out, out16, rows, cols4, threads, eps, stream);
  else if (per_thread <= 2) launch<2>(x, w, out, out16, rows, cols4, threads, eps, stream);
  else if (per_thread <= 4) launch<4>(x, w, out, out16, rows, cols4, threads, eps, stream);
  else launch<8>(x, w, out, out16, rows, cols4, threads, eps, stream);
}

void residual_norm_f32(const float* y, const float* w_post, float* x, const float* w_next, float* xn, int64_t rows,
                       int64_t cols, float eps, cudaStream_t stream, __nv_bfloat16* xn16) {
  check_row("residual_norm", cols, {y, w_post, x, w_next, xn, xn16});
  if (rows <= 0) return;
  const int cols4 = static_cast<int>(cols / 4);
  const auto [threads, per_thread] = row_layout(cols4);
  if (per_thread <= 1) launch_residual<1>(y, w_post, x, w_next, xn, xn16, rows, cols4, threads, eps, stream);
  else if (per_thread <= 2) launch_residual<2>(y, w_post, x, w_next, xn, xn16, rows, cols4, threads, eps, stream);
  else if (per_thread <= 4) launch_residual<4>(y, w_post, x, w_next, xn, xn16, rows, cols4, threads, eps, stream);
  else launch_residual<8>(y, w_post, x, w_next, xn, xn16, rows, cols4, threads, eps, stream);
}

}  // namespace swrun::cuda
