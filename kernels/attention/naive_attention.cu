// dense-naive: the classic materialized baseline. S = Q K^T per head through cuBLAS into fp32, a masked
// softmax kernel (with the sinks, when given) writes P in the input type, O = P V through cuBLAS. Memory grows
// with n_q * kv_len per head, which is the point of comparing it with the fused kernels.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/attention/attention.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

constexpr int kSoftmaxThreads = 256;

struct NaiveState {
  std::mutex mu;
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

NaiveState& state() {
  static NaiveState s;
  return s;
}

__device__ float block_reduce(float v, bool is_max, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // scratch may still be read by the previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kSoftmaxThreads / 32; ++w) v = is_max ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

// A raw score in log2 units of the softmax: scale * s * log2(e), or with softcapping (cap_in = scale / softcap,
// cap_log2 = softcap * log2(e)) softcap * tanh(scale * s / softcap) * log2(e). Increasing in s either way, so
// the row max can be taken over raw scores.
struct ScoreToLog2 {
  float scale_log2, cap_in, cap_log2;  // cap_in = 0: no softcapping
  __device__ float operator()(float s) const { return cap_in > 0.f ? cap_log2 * tanhf(s * cap_in) : s * scale_log2; }
};

// One block per (query, head) row of S: P = softmax(scale * S, softcapped) over the window, 0 elsewhere. With
// sinks (FlashAttnArgs::sinks), head h's sink joins the row's max (so that no exp overflows) and its denominator,
// never P: the row's weights then sum to less than 1.
template <typename T>
__global__ void masked_softmax_kernel(const float* scores, T* probs, int n_q, int kv_len, int q_pos0, int left,
                                      int right, ScoreToLog2 to_log2, const float* sinks) {
  __shared__ float scratch[kSoftmaxThreads / 32];
  const int i = blockIdx.x, h = blockIdx.y;
  const size_t row = (static_cast<size_t>(h) * n_q + i) * kv_len;
  const float* s = scores + row;
  T* p = probs + row;
  const int pos = q_pos0 + i;
  const int lo = max(0, pos - min(left, kv_len)), hi = min(kv_len - 1, pos + min(right, kv_len));
  float mx = -INFINITY;
  for (int j = lo + threadIdx.x; j <= hi; j += blockDim.x) mx = fmaxf(mx, s[j]);
  mx = block_reduce(mx, true, scratch);
  const float sink = sinks ? sinks[h] * static_cast<float>(M_LOG2E) : -INFINITY;
  float ref = fmaxf(mx == -INFINITY ? -INFINITY : to_log2(mx), sink);
  if (ref == -INFINITY) ref = 0.f;  // no visible key and no sink
  float sum = 0.f;
  for (int j = lo + threadIdx.x; j <= hi; j += blockDim.x) sum += exp2f(to_log2(s[j]) - ref);
  sum = block_reduce(sum, false, scratch);
  if (sinks) sum += exp2f(sink - ref);
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int j = threadIdx.x; j < kv_len; j += blockDim.x)
    p[j] = static_cast<T>(j >= lo && j <= hi ? exp2f(to_log2(s[j]) - ref) * inv : 0.f);
}

size_t score_count(const FlashAttnArgs& a) {
  const int64_t kv_len = int64_t{a.q_pos0} + a.n_q;
  return static_cast<size_t>(a.n_head) * a.n_q * kv_len;
}

// P starts on a 256-byte boundary after S, where cuBLAS reads it at full width.
size_t probs_offset(const FlashAttnArgs& a) { return (score_count(a) * sizeof(float) + 255) / 256 * 256; }

void* reserve_workspace(NaiveState& st, const FlashAttnArgs& a) {
  const size_t needed = naive_attention_workspace_bytes(a);
  if (needed <= st.workspace_bytes) return st.workspace;
  size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "dense-naive: cudaMemGetInfo");
  const int64_t kv_len = int64_t{a.q_pos0} + a.n_q;
  const std::string what = "dense-naive needs " + human_bytes(static_cast<double>(needed)) + " for the " +
                           std::to_string(a.n_q) + " x " + std::to_string(kv_len) + " scores of " +
                           std::to_string(a.n_head) + " heads, ";
  if (needed > free_bytes + st.workspace_bytes) fail(what + human_bytes(static_cast<double>(free_bytes)) + " free");
  check_cuda(cudaFree(st.workspace), "dense-naive: cudaFree");
  st.workspace = nullptr;
  st.workspace_bytes = 0;
  if (cudaMalloc(&st.workspace, needed) != cudaSuccess) {
    (void)cudaGetLastError();  // the failed allocation is reported here, not by the next checked call
    st.workspace = nullptr;
    fail(what + "allocation failed");
  }
  st.workspace_bytes = needed;
  return st.workspace;
}

template <typename T>
void run_naive(const FlashAttnArgs& a, cudaStream_t stream) {
  NaiveState& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  if (!st.handle) check_cublas(cublasCreate(&st.handle), "dense-naive: cublasCreate");
  void* ws = reserve_workspace(st, a);
  check_cublas(cublasSetStream(st.handle, stream), "dense-naive: cublasSetStream");

  const cudaDataType_t in_type = a.dtype == AttnDtype::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const int kv_len = a.q_pos0 + a.n_q, d = a.head_dim, group = a.n_head / a.n_head_kv;
  const int64_t head_scores = int64_t{a.n_q} * kv_len;
  float* scores = static_cast<float*>(ws);
  T* probs = reinterpret_cast<T*>(static_cast<char*>(ws) + probs_offset(a));
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const float one = 1.f, zero = 0.f;

  // Column-major view: K_h is d x kv_len (ld kv_stride), Q_h is d x n_q (ld q_stride); S_h^T = K_h^T Q_h is
  // S_h row-major. Batched over KV heads, one batch per position g inside the GQA group.
  for (int g = 0; g < group; ++g)
    check_cublas(cublasGemmStridedBatchedEx(st.handle, CUBLAS_OP_T, CUBLAS_OP_N, kv_len, a.n_q, d, &one, k, in_type,
                                            static_cast<int>(a.kv_stride), d, q + int64_t{g} * d, in_type,
                                            static_cast<int>(a.q_stride), int64_t{group} * d, &zero,
                                            scores + g * head_scores, CUDA_R_32F, kv_len, group * head_scores,
                                            a.n_head_kv, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "dense-naive: S = Q K^T");
  const ScoreToLog2 to_log2{a.scale * static_cast<float>(M_LOG2E), a.softcap > 0.f ? a.scale / a.softcap : 0.f,
                            a.softcap * static_cast<float>(M_LOG2E)};
  masked_softmax_kernel<T><<<dim3(a.n_q, a.n_head), kSoftmaxThreads, 0, stream>>>(
      scores, probs, a.n_q, kv_len, a.q_pos0, a.left, a.right, to_log2, a.sinks);
  check_launch("dense-naive masked_softmax_kernel");
  // O_h^T (d x n_q, ld o_stride) = V_h^T (d x kv_len) P_h^T (kv_len x n_q).
  const cudaDataType_t out_type = a.o_fp32 ? CUDA_R_32F : in_type;
  const size_t out_elem = a.o_fp32 ? sizeof(float) : sizeof(T);
  for (int g = 0; g < group; ++g)
    check_cublas(cublasGemmStridedBatchedEx(st.handle, CUBLAS_OP_N, CUBLAS_OP_N, d, a.n_q, kv_len, &one, v, in_type,
                                            static_cast<int>(a.kv_stride), d, probs + g * head_scores, in_type,
                                            kv_len, group * head_scores, &zero,
                                            static_cast<char*>(a.o) + int64_t{g} * d * out_elem, out_type,
                                            static_cast<int>(a.o_stride), int64_t{group} * d, a.n_head_kv,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "dense-naive: O = P V");
}

}  // namespace

size_t naive_attention_workspace_bytes(const FlashAttnArgs& a) {
  return probs_offset(a) + score_count(a) * 2;  // P is bf16 or fp16
}

void naive_attention(const FlashAttnArgs& a, cudaStream_t stream) {
  auto bad = [](const std::string& what) { fail("dense-naive: " + what); };
  if (!a.q || !a.k || !a.v || !a.o) bad("null q/k/v/o pointer");
  if (a.n_q < 0 || a.q_pos0 < 0) bad("negative n_q or q_pos0");
  if (a.q_pos0_dev) bad("needs q_pos0 on the host (no device position)");
  if (a.o16) bad("writes no bf16 copy of its output (o16)");
  if (a.head_dim <= 0 || a.n_head <= 0 || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0)
    bad("n_head " + std::to_string(a.n_head) + " is not a positive multiple of n_head_kv " +
        std::to_string(a.n_head_kv));
  if (a.left < 0 || a.right < 0) bad("negative window");
  if (!valid_softcap(a.softcap))
    bad("softcap " + std::to_string(a.softcap) + " must be 0 (none) or positive and finite");
  const int64_t kv_len = int64_t{a.q_pos0} + a.n_q;
  if (a.capacity < kv_len)
    bad("needs contiguous keys: capacity " + std::to_string(a.capacity) + " < kv_len " + std::to_string(kv_len));
  if (kv_len > INT32_MAX / 2) bad("kv_len " + std::to_string(kv_len) + " too large");
  if (a.n_q == 0) return;
  if (a.dtype == AttnDtype::BF16)
    run_naive<__nv_bfloat16>(a, stream);
  else
    run_naive<__half>(a, stream);
}

void naive_attention_release_workspace() {
  NaiveState& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  check_cuda(cudaFree(st.workspace), "dense-naive: cudaFree");
  st.workspace = nullptr;
  st.workspace_bytes = 0;
}

}  // namespace swrun::cuda
