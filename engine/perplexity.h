// Perplexity and KL divergence over a text, with llama.cpp's llama-perplexity method, output and KL-divergence
// file format (tools/perplexity/perplexity.cpp of llama.cpp), on any Model.
//
// Method: the whole text is tokenized once (BOS first when the vocabulary adds one); it is cut into n_chunk
// non-overlapping chunks of n_ctx tokens (n_chunk = tokens / n_ctx, or fewer with --chunks); each chunk runs from
// position 0 with its first token replaced by BOS when the vocabulary adds one, and only the second half is scored:
// the logits at positions first = n_ctx/2 .. n_ctx-2 predict tokens first+1 .. n_ctx-1 (n_ctx - 1 - first per
// chunk). The scored rows' logits stay on the backend, which reduces each to a few numbers (Backend::score_rows,
// with llama.cpp's arithmetic: runtime/logprob.h); only a base file being written brings whole rows to the host,
// compressed on the backend (Backend::compress_rows). After each chunk the running `[i]ppl,` goes to stdout;
// `Final estimate: PPL = exp(mean nll) +/- ppl * sqrt(var(nll) / (count - 1))` to stderr.
//
// KL-divergence base file (llama.cpp's, read and written byte for byte): "_logits_" (8 bytes), n_ctx (uint32),
// n_vocab (int32), n_chunk (int32), the n_chunk * n_ctx tokens (int32, as tokenized: not BOS-replaced), then for
// every chunk, for every scored row, the kl_row_width(n_vocab) uint16 of a base row (runtime/logprob.h). It is
// read a batch of rows at a time.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/backend.h"
#include "runtime/logprob.h"

namespace swrun {

class Model;

struct PerplexityOptions {
  int n_ctx = 512;
  int n_chunks = -1;    // -1: every whole chunk of the text
  int ubatch = 512;     // tokens per forward call
  std::string kl_base;  // with kl_divergence: the base file to read; without: the base file to write ("": none)
  bool kl_divergence = false;
};

// Sums over scored rows of a KL-divergence run (llama.cpp's kl_divergence_result).
struct KlSums {
  double sum_nll = 0, sum_nll2 = 0, sum_nll_base = 0, sum_nll_base2 = 0, sum_nll_nll_base = 0;
  double sum_kld = 0, sum_kld2 = 0, sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  float max_p_diff = 0;
  size_t n_same_top = 0, count = 0;
};

// One scored row against its base row (Backend::score_rows with a base): adds it to `sums` as llama.cpp's
// KL-divergence run does, returns (KL(base || this), p(tok) - p_base(tok)).
std::pair<double, float> add_scored_row(const RowScore& row, KlSums& sums);

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

// The numbers of llama-perplexity's per-chunk KL-divergence line (and of `swrun perplexity`'s side-by-side table)
// for `sums`: PPL and PPL(base), ln(PPL/PPL(base)), KLD mean, RMS Δp and same top p, each with its uncertainty.
struct KlSummary {
  double ppl = 0, ppl_err = 0, ppl_base = 0, ppl_base_err = 0, ln_ratio = 0, ln_ratio_err = 0, kld = 0, kld_err = 0;
  double rms_dp = 0, rms_dp_err = 0, same_top = 0, same_top_err = 0;
};
KlSummary summarize(const KlSums& sums);

// A KL-divergence base file being written: header and tokens when opened, then each chunk's rows in turn. An Error
// names the file when a write fails.
class KlBaseWriter {
 public:
  KlBaseWriter(const std::string& path, int n_ctx, int n_vocab, int n_chunk, const std::vector<int32_t>& tokens);
  ~KlBaseWriter();
  KlBaseWriter(const KlBaseWriter&) = delete;
  KlBaseWriter& operator=(const KlBaseWriter&) = delete;
  void write_rows(const uint16_t* rows, size_t count);  // the next `count` uint16 of scored rows, in order
  void close();

 private:
  std::string path_;
  FILE* f_;
};

// Fails naming the first token at or past the model's vocabulary among tokens[0 .. n).
void check_tokens(const Model& model, const std::vector<int32_t>& tokens, size_t n);

// Runs chunk `c` of `tokens` (opt.n_ctx tokens from c * n_ctx, the first replaced by bos when bos >= 0) through the
// model in batches of opt.ubatch, and calls on_rows(logits, row0, rows) for each batch's scored rows: the logits of
// positions n_ctx/2 + row0 .. n_ctx/2 + row0 + rows - 1 ([rows, vocab]), left on the backend
// (Model::forward_logits) until the next batch.
void run_chunk(Model& model, const std::vector<int32_t>& tokens, int c, int32_t bos, const PerplexityOptions& opt,
               const std::function<void(Buffer, int, int)>& on_rows);

// llama-perplexity's "N seconds per pass - ETA M minutes" on stderr, after the first chunk.
void print_eta(const char* who, double chunk_ms, int n_chunk);

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
