#include "kernels/logprob/logprob.cuh"

#include <climits>
#include <cmath>

#include "kernels/common/cuda_check.h"

namespace swrun::cuda {
namespace {

constexpr int kThreads = 512;  // per row; a 262144-token row is 512 entries per thread and pass

// The best entry seen: the higher value, the lower index among equal values (starts at index INT_MAX, so the
// first entry is taken even when it is -inf).
struct ArgMax {
  float value;
  int index;
};
struct MinMax {
  float min, max;
};

__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
  return b.value > a.value || (b.value == a.value && b.index < a.index) ? b : a;
}

__device__ __forceinline__ ArgMax shuffle_down(ArgMax a, int offset) {
  return {__shfl_down_sync(0xffffffffu, a.value, offset), __shfl_down_sync(0xffffffffu, a.index, offset)};
}
__device__ __forceinline__ MinMax shuffle_down(MinMax a, int offset) {
  return {__shfl_down_sync(0xffffffffu, a.min, offset), __shfl_down_sync(0xffffffffu, a.max, offset)};
}
__device__ __forceinline__ double shuffle_down(double a, int offset) {
  return __shfl_down_sync(0xffffffffu, a, offset);
}

// Every thread of the block gets combine() over all threads' values, in the same order on every run.
template <class T, class Combine>
__device__ T block_all_reduce(T v, Combine combine) {
  __shared__ T partial[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, shuffle_down(v, offset));
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  T all = partial[0];
  for (int w = 1; w < kThreads / 32; ++w) all = combine(all, partial[w]);
  __syncthreads();  // the next reduction may overwrite `partial`
  return all;
}

__device__ __forceinline__ double add(double a, double b) { return a + b; }

// sum over the row of exp(x[i] - max), each term in fp32 as the CPU's std::exp(float), summed in double.
__device__ double sum_exp(const float* row, int vocab, float max_logit) {
  double sum = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) sum += expf(row[i] - max_logit);
  return block_all_reduce(sum, add);
}

__global__ void __launch_bounds__(kThreads) score_rows_kernel(const float* x, int vocab, const int32_t* targets,
                                                              const uint16_t* base, int width, RowScore* scores) {
  const int64_t r = blockIdx.x;
  const float* row = x + r * vocab;
  ArgMax best{-INFINITY, INT_MAX};
  for (int i = threadIdx.x; i < vocab; i += kThreads) best = better(best, ArgMax{row[i], i});
  best = block_all_reduce(best, better);
  const float max_logit = best.value;
  const double sum = sum_exp(row, vocab, max_logit);
  const int target = targets[r];
  RowScore s{};
  s.top = best.index;
  if (!base) {
    s.nll = -(row[target] - max_logit - log(sum));
    if (threadIdx.x == 0) scores[r] = s;
    return;
  }
  const float log_sum_exp = static_cast<float>(log(sum));
  const float log_norm = max_logit + log_sum_exp;
  s.nll = log_norm - row[target];
  const uint16_t* b = base + r * width;
  const float scale = reinterpret_cast<const float*>(b)[0];  // rows are an even number of uint16: 4-byte aligned
  const float min_log_prob = reinterpret_cast<const float*>(b)[1];
  const uint16_t* q = b + 4;
  // __fmul_rn / __fadd_rn: no fused multiply-add, which the CPU's scale * q + min_log_prob does not have either.
  s.nll_base = -__fadd_rn(__fmul_rn(scale, float(q[target])), min_log_prob);
  ArgMax best_base{-INFINITY, INT_MAX};
  double kld = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float p_log_base = __fadd_rn(__fmul_rn(scale, float(q[i])), min_log_prob);
    best_base = better(best_base, ArgMax{p_log_base, i});
    if (p_log_base > -16.f) kld += expf(p_log_base) * (p_log_base - row[i] + log_norm);
  }
  best_base = block_all_reduce(best_base, better);
  kld = block_all_reduce(kld, add);
  s.top_base = best_base.index;
  s.kld = kld;
  if (threadIdx.x == 0) scores[r] = s;
}

__device__ __forceinline__ MinMax widen(MinMax a, MinMax b) { return {fminf(a.min, b.min), fmaxf(a.max, b.max)}; }

__global__ void __launch_bounds__(kThreads) compress_rows_kernel(const float* x, int vocab, const int32_t* targets,
                                                                 uint16_t* out, int width, double* nll) {
  const int64_t r = blockIdx.x;
  const float* row = x + r * vocab;
  MinMax range{INFINITY, -INFINITY};
  for (int i = threadIdx.x; i < vocab; i += kThreads) range = widen(range, MinMax{row[i], row[i]});
  range = block_all_reduce(range, widen);
  const float max_logit = range.max;
  const float min_logit = fmaxf(range.min, max_logit - 16);
  const float log_sum_exp = static_cast<float>(log(sum_exp(row, vocab, max_logit)));
  const float min_log_prob = min_logit - max_logit - log_sum_exp;
  const float scale = (max_logit - min_logit) / 65535.f;
  uint16_t* o = out + r * width;
  if (threadIdx.x == 0) {
    reinterpret_cast<float*>(o)[0] = scale;
    reinterpret_cast<float*>(o)[1] = min_log_prob;
    nll[r] = max_logit + log_sum_exp - row[targets[r]];
  }
  uint16_t* q = o + 4;
  const float inv_scale = scale != 0.f ? 1 / scale : 0.f;
  for (int i = threadIdx.x; i < width - 4; i += kThreads) {
    const bool coded = i < vocab && scale != 0.f && row[i] > min_logit;
    q[i] = coded ? static_cast<uint16_t>(__float2int_rn(inv_scale * (row[i] - min_logit))) : 0;
  }
}

}  // namespace

void score_rows_f32(const float* x, int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                    RowScore* scores, cudaStream_t stream) {
  score_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(x, vocab, targets, base, kl_row_width(vocab), scores);
  check_launch("score_rows");
}

void compress_rows_f32(const float* x, int64_t rows, int vocab, const int32_t* targets, uint16_t* out, double* nll,
                       cudaStream_t stream) {
  compress_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(x, vocab, targets, out, kl_row_width(vocab), nll);
  check_launch("compress_rows");
}

}  // namespace swrun::cuda
