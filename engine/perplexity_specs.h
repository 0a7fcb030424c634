// `swrun perplexity --attn A,B,...`: several attention specs over the same chunks, reported side by side. The base
// every spec is held against is a KL-divergence base file when one is given (--kl-divergence), else the first spec,
// whose scored rows are kept in memory in the file's compressed form (and written to --kl-divergence-base when it
// names a file to write), so that "what does sliding:512 cost against dense" is one command and no file.
//
// Chunk-major: every chunk runs under each spec in turn, switching the model's policy between them over KV caches
// sized once for all of them (Model::init_kv_for_specs), so only one chunk's base rows are held at a time, and
// those compactly (engine/kl_base_rows.h): the entries llama.cpp's statistics read, 8 + 6 bytes per entry with
// log p > -16, never more than the file format's (n_ctx/2 - 1) * kl_row_width(n_vocab) * 2 bytes (8.6 GB at -c
// 32768 with Gemma 3's 262144-token vocabulary). The base spec's rows are compressed on the backend and the other
// specs' rows scored there (Backend::compress_rows, score_rows): no row of logits comes to the host.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "engine/perplexity.h"

namespace swrun {

class Model;

struct SpecPerplexity {
  std::string attn;
  bool is_base = false;  // the first spec, the base of the others (no base file)
  double ppl = 0, ppl_err = 0;
  KlSums kl;             // against the base (every spec but the in-memory base itself)
  std::vector<float> kld_values, p_diff_values;  // per scored row, for llama.cpp's percentiles
};

// Runs `specs` over the chunks. With `base` (its header read from `in`, positioned after its tokens) the chunks and
// tokens are the file's and every spec is compared against it; without, `tokens` are cut into chunks as
// run_perplexity does and specs[0] is the base. The model's KV caches must hold every spec (init_kv_for_specs with
// them, opt.n_ctx and opt.ubatch). Progress and the ETA go to stderr; nothing to stdout.
std::vector<SpecPerplexity> run_perplexity_specs(Model& model, const std::vector<std::string>& specs,
                                                 const std::vector<int32_t>& tokens, int32_t bos,
                                                 const PerplexityOptions& opt, const KlBase* base, FILE* in);

// The report on stdout: llama-perplexity's KL-divergence statistics for each compared spec, then one row per spec
// (PPL +/- err; against the base: ln(PPL/PPL(base)), KLD mean, RMS Δp, same top p). `base_name` names the base
// file, "" when the first spec is the base.
void print_spec_report(const std::vector<SpecPerplexity>& results, const std::string& base_name, FILE* out);

}  // namespace swrun
