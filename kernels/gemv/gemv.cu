// One warp per output row at a time, 16-byte weight loads (8 bf16 per lane). A warp keeps the same columns of x
// for every row it visits, so for rows up to 2048 long x sits in registers and the weights are the only memory
// traffic; the grid is sized to the resident warps and strides over the rows. Launched overlapped
// (kernels/common/launch.cuh).
#include <algorithm>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/gemv/gemv.cuh"

namespace swrun::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kMaxRegisterChunks = 8;  // 8 chunks of 8 floats per lane: rows of up to 2048 columns

__device__ inline float dot8(uint4 raw, float4 a, float4 b, float acc) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
  const float2 w0 = __bfloat1622float2(h[0]), w1 = __bfloat1622float2(h[1]);
  const float2 w2 = __bfloat1622float2(h[2]), w3 = __bfloat1622float2(h[3]);
  acc = fmaf(w0.x, a.x, acc);
  acc = fmaf(w0.y, a.y, acc);
  acc = fmaf(w1.x, a.z, acc);
  acc = fmaf(w1.y, a.w, acc);
  acc = fmaf(w2.x, b.x, acc);
  acc = fmaf(w2.y, b.y, acc);
  acc = fmaf(w3.x, b.z, acc);
  return fmaf(w3.y, b.w, acc);
}

// kChunks > 0: lane l holds x chunks l, l + 32, ... (kChunks of them) in registers, and the weights of the next
// row are in flight while the current one is reduced; 0: x re-read (from L1) per row.
template <int kChunks>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const float4* x, const uint4* __restrict__ w,
                                                        float* __restrict__ out, int64_t rows, int chunks) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x / kWarp;
  if constexpr (kChunks > 0) {
    uint4 wv[kChunks];
    auto load_row = [&](int64_t n) {
      const uint4* wr = w + n * chunks;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) {
        const int c = lane + j * kWarp;
        wv[j] = c < chunks ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
      }
    };
    // No kernel writes weights, so the first row is fetched while the previous kernel is still finishing.
    if (first < rows) load_row(first);
    wait_for_predecessor();
    float4 xa[kChunks], xb[kChunks];
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int c = lane + j * kWarp;
      xa[j] = c < chunks ? x[2 * c] : make_float4(0.f, 0.f, 0.f, 0.f);
      xb[j] = c < chunks ? x[2 * c + 1] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    for (int64_t n = first; n < rows; n += stride) {
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) acc = dot8(wv[j], xa[j], xb[j], acc);
      if (n + stride < rows) load_row(n + stride);
      acc = warp_sum(acc);
      if (lane == 0) out[n] = acc;
    }
  } else {
    wait_for_predecessor();
    for (int64_t n = first; n < rows; n += stride) {
      const uint4* wr = w + n * chunks;
      float acc = 0.f;
#pragma unroll 4
      for (int c = lane; c < chunks; c += kWarp) acc = dot8(__ldg(wr + c), x[2 * c], x[2 * c + 1], acc);
      acc = warp_sum(acc);
      if (lane == 0) out[n] = acc;
    }
  }
}

template <int kChunks>
void launch(const float* x, const __nv_bfloat16* w, float* out, int64_t rows, int chunks, cudaStream_t stream) {
  // Resident blocks only: a warp that stays keeps its x registers for all the rows it strides over.
  static const int64_t max_blocks = resident_blocks(gemv_kernel<kChunks>, kThreads, "gemv_bf16: occupancy");
  const int64_t warps_per_block = kThreads / kWarp;
  const int64_t blocks = std::min(max_blocks, (rows + warps_per_block - 1) / warps_per_block);
  launch_overlapped(gemv_kernel<kChunks>, unsigned(blocks), kThreads, stream, "gemv_bf16",
                    reinterpret_cast<const float4*>(x), reinterpret_cast<const uint4*>(w), out, rows, chunks);
}

}  // namespace

bool gemv_bf16_supported(const float* x, const __nv_bfloat16* w, int64_t cols) {
  return cols > 0 && cols % 8 == 0 && cols / 8 <= INT32_MAX && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

void gemv_bf16(const float* x, const __nv_bfloat16* w, float* out, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (!gemv_bf16_supported(x, w, cols)) fail("gemv_bf16: columns must be a multiple of 8, x and w 16-byte aligned");
  if (rows <= 0) return;
  const int chunks = static_cast<int>(cols / 8);
  const int per_lane = (chunks + kWarp - 1) / kWarp;
  if (per_lane <= 1) launch<1>(x, w, out, rows, chunks, stream);
  else if (per_lane <= 2) launch<2>(x, w, out, rows, chunks, stream);
  else if (per_lane <= 4) launch<4>(x, w, out, rows, chunks, stream);
  else if (per_lane <= kMaxRegisterChunks) launch<kMaxRegisterChunks>(x, w, out, rows, chunks, stream);
  else launch<0>(x, w, out, rows, chunks, stream);
}

}  // namespace swrun::cuda
