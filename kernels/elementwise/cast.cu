// fp32 <-> bf16 casts, and the cast that stages attention inputs: bf16 queries and the batch's new K/V rows in
// the ring-shaped bf16 cache.
#include <algorithm>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/elementwise/vec.cuh"

namespace swrun::cuda {
namespace {

constexpr unsigned kThreads = 256;

// Each thread casts elements [4i, 4i+4): one 16-byte load and 8-byte store when aligned, else scalars.
__global__ void f32_to_bf16_kernel(const float* src, __nv_bfloat16* dst, size_t count, bool vec) {
  wait_for_predecessor();
  const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= count) return;
  if (vec && i + 4 <= count) {
    *reinterpret_cast<Bf16x4*>(dst + i) = to_bf16x4(*reinterpret_cast<const float4*>(src + i));
    return;
  }
  for (size_t j = i; j < i + 4 && j < count; ++j) dst[j] = __float2bfloat16_rn(src[j]);
}

__global__ void bf16_to_f32_kernel(const __nv_bfloat16* src, float* dst, size_t count, bool vec) {
  wait_for_predecessor();
  const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= count) return;
  if (vec && i + 4 <= count) {
    *reinterpret_cast<float4*>(dst + i) = to_float4(*reinterpret_cast<const Bf16x4*>(src + i));
    return;
  }
  for (size_t j = i; j < i + 4 && j < count; ++j) dst[j] = __bfloat162float(src[j]);
}

// Thread i casts elements [4i, 4i+4) of the query batch to bf16, and of the n x row_elems batch of both K and V
// into their cache rows: one launch stages everything the attention kernel reads. kv_vec needs
// row_elems % 4 == 0 so that a group of four never straddles two rows (whose cache slots are not adjacent).
__global__ void stage_attention_kernel(const float* q, __nv_bfloat16* q16, size_t q_count, bool q_vec,
                                       const float* k, const float* v, __nv_bfloat16* k_cache,
                                       __nv_bfloat16* v_cache, size_t kv_count, int64_t row_elems,
                                       int32_t capacity, const int32_t* pos0, bool kv_vec) {
  wait_for_predecessor();
  const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i < q_count) {
    if (q_vec && i + 4 <= q_count)
      *reinterpret_cast<Bf16x4*>(q16 + i) = to_bf16x4(*reinterpret_cast<const float4*>(q + i));
    else
      for (size_t j = i; j < i + 4 && j < q_count; ++j) q16[j] = __float2bfloat16_rn(q[j]);
  }
  if (i >= kv_count) return;
  const int64_t first_pos = *pos0;
  if (kv_vec) {
    const int64_t row = int64_t(i) / row_elems, col = int64_t(i) % row_elems;
    const int64_t dst = ((first_pos + row) % capacity) * row_elems + col;
    *reinterpret_cast<Bf16x4*>(k_cache + dst) = to_bf16x4(*reinterpret_cast<const float4*>(k + i));
    *reinterpret_cast<Bf16x4*>(v_cache + dst) = to_bf16x4(*reinterpret_cast<const float4*>(v + i));
    return;
  }
  for (size_t j = i; j < i + 4 && j < kv_count; ++j) {
    const int64_t row = int64_t(j) / row_elems, col = int64_t(j) % row_elems;
    const int64_t dst = ((first_pos + row) % capacity) * row_elems + col;
    k_cache[dst] = __float2bfloat16_rn(k[j]);
    v_cache[dst] = __float2bfloat16_rn(v[j]);
  }
}

}  // namespace

void cast_f32_to_bf16(const float* src, __nv_bfloat16* dst, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(src, 16) && aligned_to(dst, 8);
  launch_overlapped(f32_to_bf16_kernel, grid_for((count + 3) / 4, kThreads), kThreads, stream, "cast_f32_to_bf16", src,
                    dst, count, vec);
}

void cast_bf16_to_f32(const __nv_bfloat16* src, float* dst, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const bool vec = aligned_to(src, 8) && aligned_to(dst, 16);
  launch_overlapped(bf16_to_f32_kernel, grid_for((count + 3) / 4, kThreads), kThreads, stream, "cast_bf16_to_f32", src,
                    dst, count, vec);
}

void stage_attention_bf16(const float* q, __nv_bfloat16* q16, size_t q_count, const float* k, const float* v,
                          __nv_bfloat16* k_cache, __nv_bfloat16* v_cache, int n, int64_t row_elems,
                          int32_t capacity, const int32_t* pos0, cudaStream_t stream) {
  const size_t kv_count = size_t(n) * size_t(row_elems);
  const size_t count = std::max(q_count, kv_count);
  if (count == 0) return;
  const bool q_vec = aligned_to(q, 16) && aligned_to(q16, 8);
  const bool kv_vec = row_elems % 4 == 0 && aligned_to(k, 16) && aligned_to(v, 16) && aligned_to(k_cache, 8) &&
                      aligned_to(v_cache, 8);
  launch_overlapped(stage_attention_kernel, grid_for((count + 3) / 4, kThreads), kThreads, stream,
                    "stage_attention_bf16", q, q16, q_count, q_vec, k, v, k_cache, v_cache, kv_count, row_elems,
                    capacity, pos0, kv_vec);
}

}  // namespace swrun::cuda
