// Matrix-vector product for decode steps: one fp32 activation row times a bf16 weight matrix, fp32 accumulation.
// A decode step's projections (and the logits) are pure weight streaming; this reads the fp32 row directly, so a
// step needs no separate cast kernel and no cuBLAS call per projection.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace swrun::cuda {

// Whether gemv_bf16 takes these operands: cols a multiple of 8 and 16-byte aligned x and w.
bool gemv_bf16_supported(const float* x, const __nv_bfloat16* w, int64_t cols);

// out[n] = sum_k x[k] * w[n, k] for n < rows; w is row-major [rows, cols].
void gemv_bf16(const float* x, const __nv_bfloat16* w, float* out, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace swrun::cuda
