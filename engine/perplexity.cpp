#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include "models/model.h"
#include "runtime/common.h"

namespace swrun {
namespace {

std::pair<double, double> mean_and_uncertainty(double sum, double sum2, size_t count) {
  if (count < 1) return {0., 0.};
  const double f = sum / count;
  double df = sum2 / count - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / (count - 1)) : 0.;
  return {f, df};
}

double covariance(double suma, double sumb, double sumab, size_t count) {
  if (count < 10) return 0.0;
  double var = sumab / count - (suma / count) * (sumb / count);
  return var / (count - 1);
}

// Linear interpolation between the sorted values around fraction * (n - 1), as llama-perplexity's percentile.
float percentile(const std::vector<float>& values, float fraction) {
  if (fraction <= 0) return values.front();
  if (fraction >= 1) return values.back();
  float p = fraction * (values.size() - 1);
  const size_t ip = size_t(p);
  p -= ip;
  return (1 - p) * values[ip] + p * values[std::min(ip + 1, values.size() - 1)];
}

float median(const std::vector<float>& v) {
  const size_t n = v.size();
  return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}


}  // namespace

void check_tokens(const Model& model, const std::vector<int32_t>& tokens, size_t n) {
  const int vocab = model.config().vocab;
  for (size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      fail("token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
           " is outside the model's vocabulary of " + std::to_string(vocab));
}

void run_chunk(Model& model, const std::vector<int32_t>& tokens, int c, int32_t bos, const PerplexityOptions& opt,
               const std::function<void(Buffer, int, int)>& on_rows) {
  const int n_ctx = opt.n_ctx, first = n_ctx / 2;
  std::vector<int32_t> chunk(tokens.begin() + size_t(c) * n_ctx, tokens.begin() + size_t(c + 1) * n_ctx);
  if (bos >= 0) chunk[0] = bos;
  for (int p0 = 0; p0 < n_ctx; p0 += opt.ubatch) {
    const int len = std::min(opt.ubatch, n_ctx - p0);
    const int lo = std::max(p0, first), hi = std::min(p0 + len, n_ctx - 1);  // scored positions [lo, hi)
    if (hi > lo)
      on_rows(model.forward_logits(chunk.data() + p0, p0, len, lo - p0, hi - lo), lo - first, hi - lo);
    else
      model.forward(chunk.data() + p0, p0, len, LogitsMode::None, nullptr);
  }
}

void print_eta(const char* who, double chunk_ms, int n_chunk) {
  const double t_total = chunk_ms / 1e3;
  std::fprintf(stderr, "%s: %.2f seconds per pass - ETA ", who, t_total);
  int total_seconds = static_cast<int>(t_total * n_chunk);
  if (total_seconds >= 60 * 60) {
    std::fprintf(stderr, "%d hours ", total_seconds / (60 * 60));
    total_seconds %= 60 * 60;
  }
  std::fprintf(stderr, "%.2f minutes\n", total_seconds / 60.0);
}

std::pair<double, float> add_scored_row(const RowScore& row, KlSums& k) {
  const float nll = static_cast<float>(row.nll), nll_base = row.nll_base;  // float terms, as llama.cpp's
  k.sum_nll += nll;
  k.sum_nll2 += nll * nll;
  k.sum_nll_base += nll_base;
  k.sum_nll_base2 += nll_base * nll_base;
  k.sum_nll_nll_base += nll * nll_base;
  k.sum_kld += row.kld;
  k.sum_kld2 += row.kld * row.kld;
  ++k.count;
  if (row.top == row.top_base) ++k.n_same_top;

  const float p_diff = std::exp(-nll) - std::exp(-nll_base);
  k.sum_p_diff += p_diff;
  const double p_diff2 = p_diff * p_diff;
  k.sum_p_diff2 += p_diff2;
  k.sum_p_diff4 += p_diff2 * p_diff2;
  k.max_p_diff = std::max(k.max_p_diff, std::fabs(p_diff));
  return {row.kld, p_diff};
}

KlSummary summarize(const KlSums& k) {
  KlSummary s;
  const auto log_ppl = mean_and_uncertainty(k.sum_nll, k.sum_nll2, k.count);
  s.ppl = std::exp(log_ppl.first);
  s.ppl_err = s.ppl * log_ppl.second;
  const auto log_ppl_base = mean_and_uncertainty(k.sum_nll_base, k.sum_nll_base2, k.count);
  s.ppl_base = std::exp(log_ppl_base.first);
  s.ppl_base_err = s.ppl_base * log_ppl_base.second;
  const double cov = covariance(k.sum_nll, k.sum_nll_base, k.sum_nll_nll_base, k.count);
  s.ln_ratio = log_ppl.first - log_ppl_base.first;
  s.ln_ratio_err =
      std::sqrt(log_ppl.second * log_ppl.second + log_ppl_base.second * log_ppl_base.second - 2.0 * cov);
  const auto kl_div = mean_and_uncertainty(k.sum_kld, k.sum_kld2, k.count);
  s.kld = kl_div.first;
  s.kld_err = kl_div.second;
  const auto mse = mean_and_uncertainty(k.sum_p_diff2, k.sum_p_diff4, k.count);
  s.rms_dp = std::sqrt(mse.first);
  s.rms_dp_err = 0.5 / s.rms_dp * mse.second;
  s.same_top = 1. * k.n_same_top / k.count;
  s.same_top_err = std::sqrt(s.same_top * (1 - s.same_top) / (k.count - 1));
  return s;
}

void print_kl_chunk_line(int chunk, const KlSums& k, FILE* out) {
  const KlSummary s = summarize(k);
  std::fprintf(out, "%4d", chunk);
  std::fprintf(out, "    %9.4lf ± %9.4lf", s.ppl, s.ppl_err);
  std::fprintf(out, "    %10.5lf ± %10.5lf", s.ln_ratio, s.ln_ratio_err);
  std::fprintf(out, "    %10.5lf ± %10.5lf", s.kld, s.kld_err);
  std::fprintf(out, "    %6.3lf ± %6.3lf %%", 100.0 * s.rms_dp, 100.0 * s.rms_dp_err);
  std::fprintf(out, "    %6.3lf ± %6.3lf %%", 100.0 * s.same_top, 100.0 * s.same_top_err);
  std::fprintf(out, "\n");
  std::fflush(out);
}

void print_kl_statistics(const KlSums& k, std::vector<float> kld_values, std::vector<float> p_diff_values, FILE* out) {
  if (k.count < 100) return;  // llama.cpp: no statistics on so few values
  std::sort(kld_values.begin(), kld_values.end());
  std::sort(p_diff_values.begin(), p_diff_values.end());

  std::fprintf(out, "====== Perplexity statistics ======\n");
  const auto log_ppl = mean_and_uncertainty(k.sum_nll, k.sum_nll2, k.count);
  const double ppl_val = std::exp(log_ppl.first), ppl_unc = ppl_val * log_ppl.second;
  std::fprintf(out, "Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", ppl_val, ppl_unc);
  const auto log_ppl_base = mean_and_uncertainty(k.sum_nll_base, k.sum_nll_base2, k.count);
  const double ppl_base_val = std::exp(log_ppl_base.first), ppl_base_unc = ppl_base_val * log_ppl_base.second;
  std::fprintf(out, "Mean PPL(base)                : %10.6lf ± %10.6lf\n", ppl_base_val, ppl_base_unc);
  const double log_ppl_cov = covariance(k.sum_nll, k.sum_nll_base, k.sum_nll_nll_base, k.count);
  const double log_ppl_cor = log_ppl_cov / (log_ppl.second * log_ppl_base.second);
  std::fprintf(out, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * log_ppl_cor);
  const double ratio_log = log_ppl.first - log_ppl_base.first;
  const double ratio_log_unc = std::sqrt(log_ppl.second * log_ppl.second +
                                         log_ppl_base.second * log_ppl_base.second - 2.0 * log_ppl_cov);
  std::fprintf(out, "Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", ratio_log, ratio_log_unc);
  const double ratio = std::exp(ratio_log);
  std::fprintf(out, "Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", ratio, ratio * ratio_log_unc);
  const double ppl_cov = ppl_val * ppl_base_val * log_ppl_cov;
  std::fprintf(out, "Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n", ppl_val - ppl_base_val,
               std::sqrt(ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov));
  std::fprintf(out, "\n");

  std::fprintf(out, "====== KL divergence statistics ======\n");
  const auto kl_div = mean_and_uncertainty(k.sum_kld, k.sum_kld2, k.count);
  std::fprintf(out, "Mean    KLD: %10.6lf ± %10.6lf\n", kl_div.first, kl_div.second);
  std::fprintf(out, "Maximum KLD: %10.6f\n", kld_values.back());
  std::fprintf(out, "99.9%%   KLD: %10.6f\n", percentile(kld_values, 0.999f));
  std::fprintf(out, "99.0%%   KLD: %10.6f\n", percentile(kld_values, 0.990f));
  std::fprintf(out, "95.0%%   KLD: %10.6f\n", percentile(kld_values, 0.950f));
  std::fprintf(out, "90.0%%   KLD: %10.6f\n", percentile(kld_values, 0.900f));
  std::fprintf(out, "Median  KLD: %10.6f\n", median(kld_values));
  std::fprintf(out, "10.0%%   KLD: %10.6f\n", percentile(kld_values, 0.100f));
  std::fprintf(out, " 5.0%%   KLD: %10.6f\n", percentile(kld_values, 0.050f));
  std::fprintf(out, " 1.0%%   KLD: %10.6f\n", percentile(kld_values, 0.010f));
  std::fprintf(out, " 0.1%%   KLD: %10.6f\n", percentile(kld_values, 0.001f));
  std::fprintf(out, "Minimum KLD: %10.6f\n", kld_values.front());
  std::fprintf(out, "\n");

  std::fprintf(out, "====== Token probability statistics ======\n");
  const auto p_diff = mean_and_uncertainty(k.sum_p_diff, k.sum_p_diff2, k.count);
  std::fprintf(out, "Mean    Δp: %6.3lf ± %5.3lf %%\n", 100.0 * p_diff.first, 100.0 * p_diff.second);
  std::fprintf(out, "Maximum Δp: %6.3lf%%\n", 100.0 * p_diff_values.back());
  const std::pair<const char*, float> levels[] = {{"99.9%   Δp", 0.999f}, {"99.0%   Δp", 0.990f},
                                                  {"95.0%   Δp", 0.950f}, {"90.0%   Δp", 0.900f},
                                                  {"75.0%   Δp", 0.750f}};
  for (const auto& [label, f] : levels) {
    std::fprintf(out, "%s: %6.3lf%%\n", label, 100.0 * percentile(p_diff_values, f));
  }
  std::fprintf(out, "Median  Δp: %6.3lf%%\n", 100.0 * median(p_diff_values));
  const std::pair<const char*, float> low[] = {{"25.0%   Δp", 0.250f}, {"10.0%   Δp", 0.100f},
                                               {" 5.0%   Δp", 0.050f}, {" 1.0%   Δp", 0.010f},
                                               {" 0.1%   Δp", 0.001f}};
  for (const auto& [label, f] : low) {
    std::fprintf(out, "%s: %6.3lf%%\n", label, 100.0 * percentile(p_diff_values, f));
  }
  std::fprintf(out, "Minimum Δp: %6.3lf%%\n", 100.0 * p_diff_values.front());
  const auto mse = mean_and_uncertainty(k.sum_p_diff2, k.sum_p_diff4, k.count);
  const double rms = std::sqrt(mse.first);
  std::fprintf(out, "RMS Δp    : %6.3lf ± %5.3lf %%\n", 100.0 * rms, 100.0 * 0.5 / rms * mse.second);
  const double same_top = 1.0 * k.n_same_top / k.count;
  std::fprintf(out, "Same top p: %6.3lf ± %5.3lf %%\n", 100.0 * same_top,
               100.0 * std::sqrt(same_top * (1.0 - same_top) / (k.count - 1)));
}

KlBase read_kl_base_header(FILE* in, const std::string& path) {
  char magic[8];
  if (std::fread(magic, 1, 8, in) != 8 || std::memcmp(magic, "_logits_", 8) != 0)
    fail(path + " is not a KL-divergence base file (no \"_logits_\" header)");
  KlBase b;
  if (std::fread(&b.n_ctx, 4, 1, in) != 1 || std::fread(&b.n_vocab, 4, 1, in) != 1 ||
      std::fread(&b.n_chunk, 4, 1, in) != 1)
    fail(path + ": truncated header (n_ctx, n_vocab, n_chunk)");
  if (b.n_ctx < 8 || b.n_ctx > (1u << 24) || b.n_vocab <= 0 || b.n_chunk <= 0)
    fail(path + ": implausible header (n_ctx " + std::to_string(b.n_ctx) + ", n_vocab " + std::to_string(b.n_vocab) +
         ", n_chunk " + std::to_string(b.n_chunk) + ")");
  b.tokens.resize(size_t(b.n_ctx) * b.n_chunk);
  if (std::fread(b.tokens.data(), 4, b.tokens.size(), in) != b.tokens.size())
    fail(path + ": truncated token list (" + std::to_string(b.tokens.size()) + " tokens expected)");
  return b;
}

KlBaseWriter::KlBaseWriter(const std::string& path, int n_ctx, int n_vocab, int n_chunk,
                           const std::vector<int32_t>& tokens)
    : path_(path), f_(std::fopen(path.c_str(), "wb")) {
  if (!f_) fail("cannot open KL-divergence base file '" + path + "' for writing");
  const uint32_t header[] = {uint32_t(n_ctx), uint32_t(n_vocab), uint32_t(n_chunk)};
  std::fwrite("_logits_", 1, 8, f_);
  std::fwrite(header, 4, 3, f_);
  std::fwrite(tokens.data(), 4, size_t(n_chunk) * n_ctx, f_);
  std::fprintf(stderr, "perplexity: saving all logits to %s\n", path.c_str());
}

KlBaseWriter::~KlBaseWriter() {
  if (f_) std::fclose(f_);
}

void KlBaseWriter::write_rows(const uint16_t* rows, size_t count) {
  if (std::fwrite(rows, 2, count, f_) != count)
    fail("cannot write KL-divergence base file '" + path_ + "'");
}

void KlBaseWriter::close() {
  FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) fail("cannot write KL-divergence base file '" + path_ + "'");
}

PerplexityResult run_perplexity(Model& model, const std::vector<int32_t>& tokens, int32_t bos,
                                const PerplexityOptions& opt) {
  const int n_ctx = opt.n_ctx, first = n_ctx / 2, n_vocab = model.config().vocab;
  if (int64_t(tokens.size()) < 2 * int64_t(n_ctx))
    fail("the text tokenizes to only " + std::to_string(tokens.size()) + " tokens; perplexity with a context of " +
         std::to_string(n_ctx) + " needs at least " + std::to_string(2 * n_ctx) + " (as llama-perplexity)");
  const int n_chunk_max = static_cast<int>(tokens.size() / n_ctx);
  const int n_chunk = opt.n_chunks < 0 ? n_chunk_max : std::min(opt.n_chunks, n_chunk_max);
  check_tokens(model, tokens, size_t(n_chunk) * n_ctx);
  const int nv = kl_row_width(n_vocab), n_scored = n_ctx - 1 - first;

  std::unique_ptr<KlBaseWriter> base;
  if (!opt.kl_base.empty()) base = std::make_unique<KlBaseWriter>(opt.kl_base, n_ctx, n_vocab, n_chunk, tokens);
  std::fprintf(stderr, "perplexity: calculating perplexity over %d chunks, n_ctx=%d, batch_size=%d, n_seq=1\n",
               n_chunk, n_ctx, opt.ubatch);

  Backend& be = model.backend();
  const int batch_rows = std::min(opt.ubatch, n_scored);  // the most scored rows one forward call gives
  std::vector<uint16_t> rows(base ? size_t(batch_rows) * nv : 0);  // one batch's base rows on their way to the file
  std::vector<RowScore> scores(n_scored);
  std::vector<double> nll_rows(n_scored);
  double nll = 0, nll2 = 0;
  size_t count = 0;
  for (int c = 0; c < n_chunk; ++c) {
    const double t0 = now_ms();
    const int32_t* next = tokens.data() + size_t(c) * n_ctx + first + 1;  // next[i]: the target of scored row i
    run_chunk(model, tokens, c, bos, opt, [&](Buffer logits, int row0, int n) {
      if (base) {
        be.compress_rows(logits, n, n_vocab, next + row0, rows.data(), nll_rows.data() + row0);
        be.synchronize();
        base->write_rows(rows.data(), size_t(n) * nv);
        return;
      }
      be.score_rows(logits, n, n_vocab, next + row0, nullptr, scores.data() + row0);
      be.synchronize();
      for (int r = row0; r < row0 + n; ++r) nll_rows[r] = scores[r].nll;
    });
    for (double v : nll_rows) {
      nll += v;
      nll2 += v * v;
    }
    count += n_scored;
    if (c == 0) print_eta("perplexity", now_ms() - t0, n_chunk);
    std::printf("[%d]%.4lf,", c + 1, std::exp(nll / count));
    std::fflush(stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
  if (base) base->close();

  PerplexityResult res;
  res.count = count;
  res.n_chunk = n_chunk;
  nll2 /= count;
  nll /= count;
  res.ppl = std::exp(nll);
  nll2 -= nll * nll;
  if (nll2 > 0) {
    res.ppl_err = std::sqrt(nll2 / (count - 1)) * res.ppl;
    std::fprintf(stderr, "Final estimate: PPL = %.4lf +/- %.5lf\n", res.ppl, res.ppl_err);
  } else {
    std::fprintf(stderr, "Unexpected negative standard deviation of log(prob)\n");
  }
  return res;
}

PerplexityResult run_kl_divergence(Model& model, const KlBase& base, FILE* in, int32_t bos,
                                   const PerplexityOptions& opt) {
  const int n_vocab = model.config().vocab;
  if (base.n_vocab != n_vocab)
    fail(opt.kl_base + ": written with a vocabulary of " + std::to_string(base.n_vocab) + ", the model has " +
         std::to_string(n_vocab));
  const int n_ctx = static_cast<int>(base.n_ctx), first = n_ctx / 2, n_scored = n_ctx - 1 - first;
  const int n_chunk = opt.n_chunks < 0 ? base.n_chunk : std::min(opt.n_chunks, base.n_chunk);
  check_tokens(model, base.tokens, base.tokens.size());
  PerplexityOptions o = opt;
  o.n_ctx = n_ctx;
  const int nv = kl_row_width(n_vocab);
  std::fprintf(stderr, "kl_divergence: computing over %d chunks, n_ctx=%d, batch_size=%d, n_seq=1\n", n_chunk, n_ctx,
               o.ubatch);

  Backend& be = model.backend();
  std::vector<uint16_t> rows(size_t(std::min(o.ubatch, n_scored)) * nv);  // one batch's base rows from the file
  std::vector<float> kld_values(size_t(n_scored) * n_chunk), p_diff_values(size_t(n_scored) * n_chunk);
  std::vector<RowScore> scores(n_scored);
  KlSums k;
  for (int c = 0; c < n_chunk; ++c) {
    const double t0 = now_ms();
    const int32_t* next = base.tokens.data() + size_t(c) * n_ctx + first + 1;
    run_chunk(model, base.tokens, c, bos, o, [&](Buffer logits, int row0, int n) {
      if (std::fread(rows.data(), 2, size_t(n) * nv, in) != size_t(n) * nv)
        fail(opt.kl_base + ": truncated: no log-probabilities for chunk " + std::to_string(c + 1));
      be.score_rows(logits, n, n_vocab, next + row0, rows.data(), scores.data() + row0);
      be.synchronize();
    });
    for (int i = 0; i < n_scored; ++i) {
      const auto v = add_scored_row(scores[i], k);
      kld_values[size_t(c) * n_scored + i] = static_cast<float>(v.first);
      p_diff_values[size_t(c) * n_scored + i] = v.second;
    }
    if (c == 0) {
      print_eta("kl_divergence", now_ms() - t0, n_chunk);
      std::printf("\nchunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
                  "Δp RMS            Same top p\n");
    }
    print_kl_chunk_line(c + 1, k, stdout);
  }
  std::printf("\n");
  print_kl_statistics(k, kld_values, p_diff_values, stdout);
  std::printf("\n");
  std::fflush(stdout);
  PerplexityResult res;
  res.kl = k;
  res.count = k.count;
  res.n_chunk = n_chunk;
  const auto log_ppl = mean_and_uncertainty(k.sum_nll, k.sum_nll2, k.count);
  res.ppl = std::exp(log_ppl.first);
  res.ppl_err = res.ppl * log_ppl.second;
  return res;
}

}  // namespace swrun
