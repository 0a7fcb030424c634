#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "runtime/common.h"
#include "runtime/tokenizer.h"

namespace swrun {
std::vector<float> prefill(Model& model, const std::vector<int32_t>& prompt, int ubatch, bool progress,
                           int32_t pos0) {
  if (prompt.empty()) fail("empty prompt");
  std::vector<float> logits(static_cast<size_t>(model.config().vocab));
  const int n = static_cast<int>(prompt.size());
  const int chunks = (n + ubatch - 1) / ubatch;
  const double t0 = now_ms();
  for (int c = 0; c < chunks; ++c) {
    const int done = c * ubatch;
    const int len = std::min(ubatch, n - done);
    const bool last = c == chunks - 1;
    model.forward(prompt.data() + done, pos0 + done, len, last ? LogitsMode::Last : LogitsMode::None, logits.data());
    if (progress && chunks > 1) {
      model.backend().synchronize();
      const double s = (now_ms() - t0) / 1e3;
      std::fprintf(stderr, "\rprefill: chunk %d/%d, %d tokens, %.0f tok/s ", c + 1, chunks, done + len,
                   (done + len) / std::max(s, 1e-9));
      if (last) std::fputc('\n', stderr);
    }
  }
  return logits;
}

bool decode_step(Model& model, int32_t token, int32_t pos, bool use_graph, float* logits) {
  auto step = [&] { model.forward(&token, pos, 1, LogitsMode::Last, logits); };
  if (!use_graph) {
    step();
    return false;
  }
  return model.backend().run_captured(0, step);
}

GenerateStats generate(Model& model, const Tokenizer& tok, const std::vector<int32_t>& prompt, int ctx,
                       const GenerateOptions& opt, const std::function<void(int32_t)>& on_token) {
  GenerateStats st;
  st.n_prompt = static_cast<int>(prompt.size());
  if (st.n_prompt > ctx)
    fail("prompt has " + std::to_string(st.n_prompt) + " tokens, longer than the context of " + std::to_string(ctx) +
         " (raise -c)");
  const int vocab = model.config().vocab;
  Sampler sampler(opt.sampler);
  double t0 = now_ms();
  std::vector<float> logits = prefill(model, prompt, opt.ubatch, opt.progress);
  st.prompt_ms = now_ms() - t0;

  t0 = now_ms();
  int32_t pos = st.n_prompt;
  int32_t next = 0;
  std::vector<float> step_logits(static_cast<size_t>(vocab));
  for (int i = 0; i < opt.n_predict; ++i) {
    next = sampler.sample(logits.data(), vocab);
    if (tok.is_end_of_generation(next)) break;
    on_token(next);
    ++st.n_generated;
    if (i + 1 == opt.n_predict || pos >= ctx) break;  // the last token needs no forward pass
    st.graph_used = decode_step(model, next, pos, opt.use_graph, step_logits.data());
    logits.swap(step_logits);
    ++pos;
  }
  st.generate_ms = now_ms() - t0;
  return st;
}

}  // namespace swrun
