#include "engine/prefill_study.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "runtime/common.h"
#include "engine/generate.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

namespace swrun {
ProfileResult profile_prefill(Model& m, const std::vector<int32_t>& tokens, const ProfileOptions& opt) {
  if (opt.repeat < 1) fail("--repeat must be >= 1");
  const ModelConfig& c = m.config();
  Backend& be = m.backend();
  std::vector<AttnPolicy> policies;
  for (const LayerConfig& l : c.layers) policies.push_back(l.policy);
  Profiler prof(policies);
  std::vector<double> ttft;
  be.attach_profiler(&prof);
  prefill(m, tokens, opt.ubatch, opt.progress);  // warm-up: module loads, cuBLAS heuristics, caches
  prof.discard_run();
  for (int r = 0; r < opt.repeat; ++r) {
    const double t0 = now_ms();
    const std::vector<float> logits = prefill(m, tokens, opt.ubatch, false);
    const double ms = now_ms() - t0;
    argmax(logits.data(), c.vocab);
    ttft.push_back(now_ms() - t0);
    prof.end_run(ms);
  }
  be.attach_profiler(nullptr);
  std::vector<double> plain;
  for (int r = 0; r < opt.repeat; ++r) {
    const double t0 = now_ms();
    prefill(m, tokens, opt.ubatch, false);
    plain.push_back(now_ms() - t0);
  }

  RunInfo info;
  info.model = opt.model_path;
  info.backend = be.name();
  info.device = be.device_name();
  info.attn_spec = opt.attn_spec;
  info.n_tokens = static_cast<int64_t>(tokens.size());
  info.ubatch = opt.ubatch;
  info.chunks = static_cast<int>((tokens.size() + opt.ubatch - 1) / opt.ubatch);
  info.ttft_ms = median(ttft);
  info.peak_memory_bytes = be.peak_memory_bytes();
  // Every layer's cache row has the same width, so rows split the bytes exactly.
  int64_t dense_rows = 0, all_rows = 0;
  for (size_t l = 0; l < m.kv_layers().size(); ++l) {
    all_rows += m.kv_layers()[l].capacity;
    if (!c.layers[l].policy.windowed()) dense_rows += m.kv_layers()[l].capacity;
  }
  const double total = static_cast<double>(be.kv_bytes());
  info.kv_bytes_dense = all_rows ? static_cast<size_t>(total * dense_rows / all_rows) : 0;
  info.kv_bytes_ring = static_cast<size_t>(total) - info.kv_bytes_dense;
  return {prof.finish(info), median(plain)};
}

AbQuality compare_quality(Model& a, Model& b, const Tokenizer& tok, const std::vector<int32_t>& tokens, int ubatch,
                          int n_predict, bool progress) {
  const int vocab = a.config().vocab;
  if (b.config().vocab != vocab) fail("A/B models have different vocabularies");
  AbMetrics metrics(vocab);
  const int n = static_cast<int>(tokens.size());
  std::vector<float> la(static_cast<size_t>(ubatch) * vocab), lb(la.size());
  const double t0 = now_ms();
  for (int pos0 = 0; pos0 < n; pos0 += ubatch) {
    const int len = std::min(ubatch, n - pos0);
    a.forward(tokens.data() + pos0, pos0, len, LogitsMode::All, la.data());
    b.forward(tokens.data() + pos0, pos0, len, LogitsMode::All, lb.data());
    for (int i = 0; i < len; ++i) {
      const int p = pos0 + i;
      metrics.add_position(&la[static_cast<size_t>(i) * vocab], &lb[static_cast<size_t>(i) * vocab],
                           p + 1 < n ? tokens[p + 1] : -1);
    }
    if (progress)
      std::fprintf(stderr, "\rA/B quality: %d/%d positions, %.0f tok/s ", pos0 + len, n,
                   (pos0 + len) / std::max((now_ms() - t0) / 1e3, 1e-9));
  }
  if (progress) std::fputc('\n', stderr);
  AbQuality q = metrics.result();
  GenerateOptions go;
  go.n_predict = n_predict;
  go.ubatch = ubatch;
  go.sampler.temperature = 0;
  const int ctx = n + n_predict;
  generate(a, tok, tokens, ctx, go, [&](int32_t id) { q.greedy_a.push_back(id); });
  generate(b, tok, tokens, ctx, go, [&](int32_t id) { q.greedy_b.push_back(id); });
  q.greedy_text_a = tok.decode(q.greedy_a);
  q.greedy_text_b = tok.decode(q.greedy_b);
  return q;
}

}  // namespace swrun
