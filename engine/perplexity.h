// Perplexity and KL divergence over a text, with llama.cpp's llama-perplexity method, output and KL-divergence
// file format (tools/perplexity/perplexity.cpp of llama.cpp), on any Model.
//
// Method: the whole text is tokenized once (BOS first when the vocabulary adds one); it is cut into n_chunk
// non-overlapping chunks of n_ctx tokens (n_chunk = tokens / n_ctx, or fewer with --chunks); each chunk runs from
// position 0 with its first token replaced by BOS when the vocabulary adds one, and only the second half is scored:
// the logits at positions first = n_ctx/2 .. n_ctx-2 predict tokens first+1 .. n_ctx-1 (n_ctx - 1 - first per
// chunk). Log-softmax sums exp in double over float differences, as llama.cpp does. After each chunk the running
// `[i]ppl,` goes to stdout; `Final estimate: PPL = exp(mean nll) +/- ppl * sqrt(var(nll) / (count - 1))` to stderr.
//
// KL-divergence base file (llama.cpp's, read and written byte for byte): "_logits_" (8 bytes), n_ctx (uint32),
// n_vocab (int32), n_chunk (int32), the n_chunk * n_ctx tokens (int32, as tokenized: not BOS-replaced), then for
// every chunk, for every scored row, nv = 2*((n_vocab+1)/2) + 4 uint16: the first four hold two floats, scale and
// min_log_prob, then n_vocab codes q with log p = scale * q + min_log_prob (log-probabilities more than 16 below
// the maximum logit are clamped to min_log_prob, q = 0), then zero padding to nv.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace swrun {

class Model;

struct PerplexityOptions {
  int n_ctx = 512;
  int n_chunks = -1;    // -1: every whole chunk of the text
  int ubatch = 512;     // tokens per forward call
  std::string kl_base;  // with kl_divergence: the base file to read; without: the base file to write ("": none)
  bool kl_divergence = false;
};

// uint16 values per scored row in a KL-divergence base file.
inline int kl_row_width(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

// llama-perplexity's scoring of one row without a base file: -log p(tok) in double.
double row_nll(int n_vocab, const float* logits, int tok);

// One row of a base file: writes the compressed log-probabilities of `logits` (kl_row_width values) and returns
// -log p(tok) as llama.cpp computes it for that file (float terms).
double compress_row(int n_vocab, const float* logits, int tok, uint16_t* out);

// Sums over scored rows of a KL-divergence run (llama.cpp's kl_divergence_result).
struct KlSums {
  double sum_nll = 0, sum_nll2 = 0, sum_nll_base = 0, sum_nll_base2 = 0, sum_nll_nll_base = 0;
  double sum_kld = 0, sum_kld2 = 0, sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  float max_p_diff = 0;
  size_t n_same_top = 0, count = 0;
  void add(const KlSums& o);
};

// One scored row against its base row: adds to `sums`, returns (KL(base || this), p(tok) - p_base(tok)).
std::pair<double, float> kl_row(int n_vocab, const float* logits, const uint16_t* base, int tok, KlSums& sums);

// The statistics llama-perplexity prints at the end of a KL-divergence run, for `sums` and the per-row KLD and Δp
// values; written to `out` in llama.cpp's layout ("====== Perplexity statistics ======" ...). Needs count >= 100,
// as llama.cpp's (prints nothing below).
void print_kl_statistics(const KlSums& sums, std::vector<float> kld_values, std::vector<float> p_diff_values,
                         FILE* out);

// The table row llama-perplexity prints after each chunk of a KL-divergence run (chunk is 1-based).
void print_kl_chunk_line(int chunk, const KlSums& sums, FILE* out);

// The header of a KL-divergence base file; throws Error naming the file when it is not one.
struct KlBase {
  uint32_t n_ctx = 0;
  int32_t n_vocab = 0, n_chunk = 0;
  std::vector<int32_t> tokens;  // n_chunk * n_ctx
};
KlBase read_kl_base_header(FILE* in, const std::string& path);

struct PerplexityResult {
  double ppl = 0, ppl_err = 0;
  size_t count = 0;  // scored tokens
  int n_chunk = 0;
  KlSums kl;         // KL-divergence runs only
};

// Perplexity of `tokens` (the whole text, tokenized with BOS as the vocabulary asks) with llama-perplexity's method;
// bos >= 0 replaces each chunk's first token. Writes the base file when opt.kl_base is set. The model's KV cache must
// hold opt.n_ctx tokens in batches of opt.ubatch. Throws Error when the text is shorter than 2 * n_ctx tokens.
PerplexityResult run_perplexity(Model& model, const std::vector<int32_t>& tokens, int32_t bos,
                                const PerplexityOptions& opt);

// KL divergence of the model against the base file opt.kl_base, over the file's own chunks and tokens (its header
// already read by read_kl_base_header from `in`, which is positioned after the tokens).
PerplexityResult run_kl_divergence(Model& model, const KlBase& base, FILE* in, int32_t bos,
                                   const PerplexityOptions& opt);

}  // namespace swrun
