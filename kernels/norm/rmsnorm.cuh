// Row-wise RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w. Also serves per-head q/k norms
// (rows = tokens * heads, cols = head_dim). Device pointers; out may alias x.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace swrun::cuda {

// Largest row the kernel holds in registers (one read of x per element).
constexpr int64_t kRmsNormMaxCols = 32768;

// cols must be a multiple of 4 and at most kRmsNormMaxCols; x, w, out (and out16) 16-byte aligned (throws Error
// otherwise). With out16, out's bf16 rounding (round to nearest even) is written there too: a GEMM's operand.
void rmsnorm_f32(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps,
                 cudaStream_t stream, __nv_bfloat16* out16 = nullptr);

// A decoder block's residual step in one launch, for `rows` rows of `cols` floats: y' = rmsnorm(y) * w_post
// (y' = y when w_post is null), x += y', then xn = rmsnorm(x) * w_next unless w_next is null. y is not written.
// Each norm is computed as rmsnorm_f32 computes it; with xn16, xn's bf16 rounding is written there too.
void residual_norm_f32(const float* y, const float* w_post, float* x, const float* w_next, float* xn, int64_t rows,
                       int64_t cols, float eps, cudaStream_t stream, __nv_bfloat16* xn16 = nullptr);

}  // namespace swrun::cuda
