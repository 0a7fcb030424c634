// Decode GEMVs over wide rows (variant 9, bench/gemv_notes.md): one activation row against matrices whose rows are
// longer than the shared-memory row the other variants stage (kStagedRowMaxCols), i.e. every layer matrix of a 7B+
// model. Those variants decode element by element and read each activation from L1 per product, which held a 7B
// decode step to ~15% of the memory bandwidth; here a lane owns a 32-weight unit of 4 rows at once, stages the rows'
// bytes through shared memory (cp.async, two passes in flight per warp), loads its unit's 32 activations once for
// the 4 rows, and turns each quant into a float with one byte permute (Q4_K/Q6_K: the float 1 + q/16 or 1 + q/64,
// exact; Q8_0: 2^23 + q + 128, less a constant), summing before the block's scales:
// sum(d*sc*q_i*x_i - dmin*m*x_i) = d*sc*sum(q_i*x_i) - dmin*m*sum(x_i). The sums are the same values' products to
// fp32 rounding (not bit for bit the block decoders' order), deterministic run to run. Types: Q4_K, Q6_K and Q8_0
// (what Q4_K_M and Q8_0 files hold); others stay on the other variants.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/elementwise/elementwise.cuh"
#include "runtime/ggml_types.h"

namespace swrun::cuda {

// How gemv_wide walks the matrix (bench/gemv_notes.md): Staged (variant 9) stages each warp's 4-row tiles through
// shared memory, a tile per warp; Stream8 and Stream4 (variants 10 and 11, Q4_K and Q6_K) load 8 or 4 rows straight into
// registers and balance equal steps over all warps, a tile split between warps finished by the last of them.
// Launches of the stream kernels on one device must be stream-ordered (they share a partial-sum buffer).
enum class GemvWideKernel { Picked, Staged, Stream8, Stream4 };

// The kernel Picked stands for with `type` (the measured choice).
GemvWideKernel gemv_wide_pick(GgmlType type);

// Whether gemv_wide runs rows of `cols` elements of `type` (whole blocks, a type it decodes) with `kernel`.
bool gemv_wide_supported(GgmlType type, int64_t cols, GemvWideKernel kernel = GemvWideKernel::Picked);

// Matrices of one type and row length against the same x in one launch (a layer's q/k/v of that type).
constexpr int kGemvWideMaxSegs = 3;
struct GemvWideSeg {
  const uint8_t* w;  // n_out rows of `cols`, 16-byte aligned, allocated with gemv_quant_padded_bytes
  float* out;        // [n_out]
  int64_t n_out;
};

// out_i[n] = x . W_i[n] for each of `count` segments; x is one row of `cols` fp32. Launched overlapped.
void gemv_wide(GgmlType type, const GemvWideSeg* segs, int count, const float* x, int64_t cols, cudaStream_t stream,
               GemvWideKernel kernel = GemvWideKernel::Picked);

// out[n] = act(x . w_gate[n]) * (x . w_up[n]) for n < n_out (both matrices of `type`, the same shape).
void gemv_wide_gated(GgmlType type, const uint8_t* w_gate, const uint8_t* w_up, const float* x, float* out,
                     int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream,
                     GemvWideKernel kernel = GemvWideKernel::Picked);

}  // namespace swrun::cuda
