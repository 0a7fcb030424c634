// Rows of logits scored against their next token with llama-perplexity's arithmetic (tools/perplexity of
// llama.cpp), and the rows of its KL-divergence base files. The reference of Backend::score_rows and
// Backend::compress_rows: the CPU backend runs these functions, the CUDA kernels (kernels/logprob) are checked
// against them.
//
// A base row (llama.cpp's format) is kl_row_width(n_vocab) uint16: the first four hold two floats, scale and
// min_log_prob, then n_vocab codes q with log p = scale * q + min_log_prob (log-probabilities more than 16 below
// the maximum logit are clamped to min_log_prob, q = 0), then zero padding.
#pragma once
#include <cstdint>

namespace swrun {

// uint16 values per row of a KL-divergence base.
inline int kl_row_width(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

// What a row of logits gives against its target token (and a base row, when scored against one).
struct RowScore {
  // -log p(target): without a base in double as llama-perplexity's plain run; with one in float terms as its
  // KL-divergence run (log-sum-exp rounded to float first).
  double nll = 0;
  double kld = 0;        // KL(base || this), summed over the base's entries with log p > -16 as llama.cpp does
  float nll_base = 0;    // -log p_base(target) from the base row's codes
  int32_t top = 0;       // the highest logit's token, the lower index among equal logits
  int32_t top_base = 0;  // the base row's highest log-probability's token, the lower index among equal ones
  int32_t unused = 0;    // keeps the size a whole number of 8-byte words on every compiler
};
static_assert(sizeof(RowScore) == 32, "RowScore is copied between devices as 8 words");

// Scores one row of n_vocab logits against `target`; `base` (kl_row_width values, or null) adds kld, nll_base and
// top_base. Log-sum-exp over float differences from the maximum, summed in double.
RowScore score_row(int n_vocab, const float* logits, int target, const uint16_t* base);

// Writes the base row of `logits` (kl_row_width values) and returns -log p(target) as llama.cpp computes it while
// writing a base file (float terms).
double compress_row(int n_vocab, const float* logits, int target, uint16_t* out);

}  // namespace swrun
