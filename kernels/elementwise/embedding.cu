// Token embedding lookup with the model's scale folded in (one pass: bf16 row in, scaled fp32 row out).
#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/elementwise/vec.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

// Each thread converts kVec consecutive elements of one row; kVec = 8 reads 16 bytes at once.
template <int kVec>
__global__ void embed_kernel(const __nv_bfloat16* table, const int32_t* tokens, int64_t chunks_per_row,
                             int64_t total_chunks, int64_t cols, float scale, float* out) {
  wait_for_predecessor();
  const int64_t chunk = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (chunk >= total_chunks) return;
  const int64_t t = chunk / chunks_per_row;
  const int64_t c = (chunk % chunks_per_row) * kVec;
  const __nv_bfloat16* src = table + int64_t(tokens[t]) * cols + c;
  float* dst = out + t * cols + c;
  if constexpr (kVec == 8) {
    const uint4 raw = *reinterpret_cast<const uint4*>(src);
    const Bf16x4* h = reinterpret_cast<const Bf16x4*>(&raw);
    float4 a = to_float4(h[0]), b = to_float4(h[1]);
    a.x *= scale; a.y *= scale; a.z *= scale; a.w *= scale;
    b.x *= scale; b.y *= scale; b.z *= scale; b.w *= scale;
    reinterpret_cast<float4*>(dst)[0] = a;
    reinterpret_cast<float4*>(dst)[1] = b;
  } else {
    dst[0] = __bfloat162float(src[0]) * scale;
  }
}

}  // namespace

void embed_rows_bf16(const __nv_bfloat16* table, const int32_t* tokens, int n, int64_t cols, float scale,
                     float* out, cudaStream_t stream) {
  if (n <= 0 || cols <= 0) return;
  const bool vec = cols % 8 == 0 && aligned_to(table, 16) && aligned_to(out, 16);
  const int64_t per_row = vec ? cols / 8 : cols;
  const int64_t total = per_row * n;
  launch_overlapped(vec ? embed_kernel<8> : embed_kernel<1>, grid_for(total, kThreads), kThreads, stream,
                    "embed_rows_bf16", table, tokens, per_row, total, cols, scale, out);
}

}  // namespace swrun::cuda
