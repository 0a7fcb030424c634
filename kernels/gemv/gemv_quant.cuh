// Matrix-vector products straight from GGUF blocks, for decode steps (and any matmul of a few rows): the weights
// stay in the file's format on the device, so a step reads each weight byte once, at the file's size, and the
// activations stay fp32 (never quantized); products accumulate in fp32.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/elementwise/elementwise.cuh"
#include "runtime/ggml_types.h"

namespace swrun::cuda {

constexpr int kGemvQuantMaxRows = 8;  // activation rows per launch

// Bytes a weight of `bytes` must be allocated with for gemv_quant: it stages rows with 16-byte loads that may
// run up to 15 bytes past the last row.
inline size_t gemv_quant_padded_bytes(size_t bytes) { return (bytes + 15) / 16 * 16; }

// Whether gemv_quant reads rows of `cols` elements of `type`: a type with a block decoder
// (kernels/dequant/block_decode.cuh) and whole blocks per row.
bool gemv_quant_supported(GgmlType type, int64_t cols);

// out[r, n] = sum_k x[r, k] * W[n, k] for r < x_rows (1..kGemvQuantMaxRows) and n < n_out. W is n_out rows of
// `cols` elements of `type`, row-major, 16-byte aligned and allocated with gemv_quant_padded_bytes; x is
// [x_rows, cols] fp32, out [x_rows, n_out] fp32. Launched overlapped (kernels/common/launch.cuh).
void gemv_quant(GgmlType type, const void* w, const float* x, float* out, int x_rows, int64_t n_out, int64_t cols,
                cudaStream_t stream);

// A decoder block's residual step on one row (residual_norm_f32 with rows = 1 and a next norm: y' = rmsnorm(y) *
// w_post or y itself, x += y', xn = rmsnorm(x) * w_next), folded into the GEMV that reads xn: each block of the
// GEMV computes the row into shared memory after it waits for its predecessor, and the last block to get there
// writes x and xn. In a decode step this saves the residual step's own launch (two per layer). The norms' sums
// are reduced over the GEMV's block, not as residual_norm_f32 reduces them: the same values to rounding.
struct GemvResidualFold {
  const float* y = nullptr;
  const float* w_post = nullptr;  // null: no post-norm
  float* x = nullptr;             // the residual row, updated in place
  const float* w_next = nullptr;
  float* xn = nullptr;            // also the GEMV's x
  float eps = 0.f;
  int* arrivals = nullptr;        // a device counter at 0, left at 0
};
// The step of `f` on its own launch (residual_norm_f32 on its one row of `cols`), for where it cannot be folded.
void gemv_residual_step(const GemvResidualFold& f, int64_t cols, cudaStream_t stream);
// Widest row a fold takes: each of the block's 256 threads holds two float4 of each of the step's four vectors.
constexpr int64_t kGemvFoldMaxCols = 2048;
// Whether a residual step over rows of `cols` floats can be folded into the GEMVs below (cols a multiple of 4).
bool gemv_fold_supported(int64_t cols);

// The gated MLP's two projections and activation in one pass: out[r, n] = act(x[r] . w_gate[n]) * (x[r] . w_up[n]),
// each dot computed exactly as gemv_quant computes it. w_gate and w_up share type and shape.
// With `fold` (x_rows = 1, x = fold->xn, gemv_fold_supported(cols)), the residual step that writes x runs first:
// folded into this launch, or as its own launch just before when the blocks' re-reads of the row would pass 8 MiB.
void gemv_quant_gated(GgmlType type, const void* w_gate, const void* w_up, const float* x, float* out, int x_rows,
                      int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream,
                      const GemvResidualFold* fold = nullptr);

// Several matrices with the same row length against the same x in one launch (a layer's q, k and v
// projections): out[i][r, n] = x[r] . w[i][n] for i < count, r < x_rows, n < n_out[i]; types may differ.
constexpr int kGemvMultiMax = 3;
struct GemvMultiArgs {
  const uint8_t* w[kGemvMultiMax];
  float* out[kGemvMultiMax];
  int64_t n_out[kGemvMultiMax];
  GgmlType type[kGemvMultiMax];
  int count;
};
// `fold` as for gemv_quant_gated.
void gemv_quant_multi(const GemvMultiArgs& a, const float* x, int x_rows, int64_t cols, cudaStream_t stream,
                      const GemvResidualFold* fold = nullptr);

// out[t, :] = table[tokens[t], :] * scale for t < n, dequantized from the table's GGUF rows of `cols` elements
// (gemv_quant_supported(type, cols) must hold). Tokens are read on the device and must be valid rows.
void embed_rows_quant(GgmlType type, const void* table, const int32_t* tokens, int n, int64_t cols, float scale,
                      float* out, cudaStream_t stream);

}  // namespace swrun::cuda
