#include "engine/perplexity_specs.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "engine/kl_base_rows.h"
#include "models/model.h"
#include "runtime/common.h"

namespace swrun {

std::vector<SpecPerplexity> run_perplexity_specs(Model& model, const std::vector<std::string>& specs,
                                                 const std::vector<int32_t>& tokens, int32_t bos,
                                                 const PerplexityOptions& opt, const KlBase* base, FILE* in) {
  const int n_vocab = model.config().vocab;
  const std::vector<int32_t>& text = base ? base->tokens : tokens;
  int n_ctx = opt.n_ctx, n_chunk_max = 0;
  if (base) {
    if (base->n_vocab != n_vocab)
      fail(opt.kl_base + ": written with a vocabulary of " + std::to_string(base->n_vocab) + ", the model has " +
           std::to_string(n_vocab));
    n_ctx = static_cast<int>(base->n_ctx);
    n_chunk_max = base->n_chunk;
  } else {
    if (int64_t(tokens.size()) < 2 * int64_t(n_ctx))
      fail("the text tokenizes to only " + std::to_string(tokens.size()) + " tokens; perplexity with a context of " +
           std::to_string(n_ctx) + " needs at least " + std::to_string(2 * n_ctx) + " (as llama-perplexity)");
    n_chunk_max = static_cast<int>(tokens.size() / n_ctx);
  }
  const int n_chunk = opt.n_chunks < 0 ? n_chunk_max : std::min(opt.n_chunks, n_chunk_max);
  check_tokens(model, text, size_t(n_chunk) * n_ctx);
  PerplexityOptions o = opt;
  o.n_ctx = n_ctx;
  const int first = n_ctx / 2, n_scored = n_ctx - 1 - first, nv = kl_row_width(n_vocab);

  std::vector<AttnSpec> parsed;
  std::vector<SpecPerplexity> results(specs.size());
  for (size_t s = 0; s < specs.size(); ++s) {
    parsed.push_back(AttnSpec::parse(specs[s]));
    results[s].attn = specs[s];
    results[s].is_base = !base && s == 0;
    if (!results[s].is_base) {
      results[s].kld_values.resize(size_t(n_chunk) * n_scored);
      results[s].p_diff_values.resize(size_t(n_chunk) * n_scored);
    }
  }
  std::unique_ptr<KlBaseWriter> writer;
  if (!base && !opt.kl_base.empty())
    writer = std::make_unique<KlBaseWriter>(opt.kl_base, n_ctx, n_vocab, n_chunk, tokens);
  std::fprintf(stderr, "perplexity: %zu attention specs over %d chunks, n_ctx=%d, batch_size=%d, base: %s\n",
               specs.size(), n_chunk, n_ctx, o.ubatch, base ? opt.kl_base.c_str() : specs[0].c_str());

  Backend& be = model.backend();
  const int batch_rows = std::min(o.ubatch, n_scored);       // the most scored rows one forward call gives
  std::vector<uint16_t> rows(size_t(batch_rows) * nv);        // one batch of base rows, as the file has them
  CompactBaseRows base_rows(n_vocab);                         // this chunk's base rows
  std::vector<RowScore> scores(n_scored);
  std::vector<double> nll_rows(n_scored);
  double base_nll = 0, base_nll2 = 0;  // the in-memory base's own -log p sums
  size_t base_count = 0, base_bytes_max = 0;
  for (int c = 0; c < n_chunk; ++c) {
    const double t0 = now_ms();
    const int32_t* next = text.data() + size_t(c) * n_ctx + first + 1;  // next[i]: the target of scored row i
    for (int row0 = 0; base && row0 < n_scored; row0 += batch_rows) {
      const int n = std::min(batch_rows, n_scored - row0);
      if (std::fread(rows.data(), 2, size_t(n) * nv, in) != size_t(n) * nv)
        fail(opt.kl_base + ": truncated: no log-probabilities for chunk " + std::to_string(c + 1));
      base_rows.store(row0, n, rows.data(), next + row0);
    }
    std::string running;
    for (size_t s = 0; s < specs.size(); ++s) {
      model.set_attention(parsed[s]);  // the caches were sized for every spec (Model::init_kv_for_specs)
      SpecPerplexity& r = results[s];
      if (r.is_base) {
        run_chunk(model, text, c, bos, o, [&](Buffer logits, int row0, int n) {
          be.compress_rows(logits, n, n_vocab, next + row0, rows.data(), nll_rows.data() + row0);
          be.synchronize();
          if (writer) writer->write_rows(rows.data(), size_t(n) * nv);
          base_rows.store(row0, n, rows.data(), next + row0);
        });
        for (double v : nll_rows) {
          base_nll += v;
          base_nll2 += v * v;
        }
        base_count += n_scored;
        running += " " + r.attn + " " + std::to_string(std::exp(base_nll / base_count));
        continue;
      }
      run_chunk(model, text, c, bos, o, [&](Buffer logits, int row0, int n) {
        base_rows.expand(row0, n, rows.data());
        be.score_rows(logits, n, n_vocab, next + row0, rows.data(), scores.data() + row0);
        be.synchronize();
      });
      for (int i = 0; i < n_scored; ++i) {
        const auto v = add_scored_row(scores[i], r.kl);
        r.kld_values[size_t(c) * n_scored + i] = static_cast<float>(v.first);
        r.p_diff_values[size_t(c) * n_scored + i] = v.second;
      }
      running += " " + r.attn + " " + std::to_string(std::exp(r.kl.sum_nll / r.kl.count));
    }
    base_bytes_max = std::max(base_bytes_max, base_rows.bytes());
    const double chunk_ms = now_ms() - t0;
    if (c == 0) print_eta("perplexity", chunk_ms, n_chunk);
    std::fprintf(stderr, "perplexity: [%d/%d] PPL so far:%s (ETA %.1f min)\n", c + 1, n_chunk, running.c_str(),
                 chunk_ms * (n_chunk - c - 1) / 60e3);
  }
  if (writer) writer->close();
  std::fprintf(stderr, "perplexity: base rows held in memory: %.0f bytes per scored row in the largest chunk (%zu in "
               "llama.cpp's format)\n", double(base_bytes_max) / n_scored, size_t(nv) * 2);

  for (SpecPerplexity& r : results) {
    if (r.is_base) {
      const double mean = base_nll / base_count, var = base_nll2 / base_count - mean * mean;
      r.ppl = std::exp(mean);
      r.ppl_err = var > 0 ? std::sqrt(var / (base_count - 1)) * r.ppl : 0;
    } else {
      const KlSummary s = summarize(r.kl);
      r.ppl = s.ppl;
      r.ppl_err = s.ppl_err;
    }
  }
  return results;
}

void print_spec_report(const std::vector<SpecPerplexity>& results, const std::string& base_name, FILE* out) {
  const std::string against = base_name.empty() ? results[0].attn : base_name;
  for (const SpecPerplexity& r : results) {
    if (r.is_base) continue;
    std::fprintf(out, "\n############ attn %s against %s ############\n", r.attn.c_str(), against.c_str());
    print_kl_statistics(r.kl, r.kld_values, r.p_diff_values, out);
  }

  size_t name_w = std::string("attn").size();
  for (const SpecPerplexity& r : results) name_w = std::max(name_w, r.attn.size() + (r.is_base ? 7 : 0));
  if (!base_name.empty()) name_w = std::max(name_w, base_name.size() + 6);
  const int w = static_cast<int>(name_w);
  // Widths in bytes: "Δ" takes two for one column.
  std::fprintf(out, "\n%-*s  %21s  %25s  %25s  %18s  %17s\n", w, "attn", "PPL", "ln(PPL/PPL(base))", "KLD mean",
               "RMS Δp", "same top p");
  if (!base_name.empty() && !results.empty()) {  // the base file's own PPL, over the same tokens
    const KlSummary s = summarize(results[0].kl);
    std::fprintf(out, "%-*s  %9.4f ± %9.4f\n", w, ("file: " + base_name).c_str(), s.ppl_base, s.ppl_base_err);
  }
  for (const SpecPerplexity& r : results) {
    if (r.is_base) {
      std::fprintf(out, "%-*s  %9.4f ± %9.4f\n", w, (r.attn + " (base)").c_str(), r.ppl, r.ppl_err);
      continue;
    }
    const KlSummary s = summarize(r.kl);
    std::fprintf(out, "%-*s  %9.4f ± %9.4f  %11.5f ± %11.5f  %11.5f ± %11.5f  %6.3f ± %6.3f %%  %6.3f ± %6.3f %%\n",
                 w, r.attn.c_str(), r.ppl, r.ppl_err, s.ln_ratio, s.ln_ratio_err, s.kld, s.kld_err, 100 * s.rms_dp,
                 100 * s.rms_dp_err, 100 * s.same_top, 100 * s.same_top_err);
  }
  std::fflush(out);
}

}  // namespace swrun
