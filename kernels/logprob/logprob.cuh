// Log-probability statistics of rows of logits on the device (perplexity and KL divergence against a base), so a
// scored row sends a few numbers to the host instead of its vocabulary, and the KL-divergence base rows of
// llama.cpp's format computed where the logits are. The arithmetic is runtime/logprob.cpp's, term for term (fp32
// differences from the row's maximum, sums in double, no fused multiply-adds where the CPU has none), so the two
// agree to rounding; one block per row, deterministic.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "runtime/logprob.h"

namespace swrun::cuda {

// scores[r] = score_row(vocab, x row r, targets[r], base row r) for r < rows: x [rows, vocab], targets [rows],
// base ([rows, kl_row_width(vocab)] or null) and scores [rows] in device memory.
void score_rows_f32(const float* x, int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                    RowScore* scores, cudaStream_t stream);

// out row r and nll[r] as compress_row(vocab, x row r, targets[r], out row r) for r < rows: x [rows, vocab],
// targets [rows], out [rows, kl_row_width(vocab)] and nll [rows] in device memory.
void compress_rows_f32(const float* x, int64_t rows, int vocab, const int32_t* targets, uint16_t* out, double* nll,
                       cudaStream_t stream);

}  // namespace swrun::cuda
