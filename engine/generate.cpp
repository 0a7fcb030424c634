#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "runtime/common.h"
#include "runtime/load_log.h"
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

bool decode_step(Model& model, int32_t token, int32_t pos, int top, bool use_graph, int32_t* ids, float* values) {
  auto step = [&] {
    if (top > 0) model.forward_top(&token, pos, 1, top, ids, values);
    else model.forward(&token, pos, 1, LogitsMode::Last, values);
  };
  if (!use_graph) {
    step();
    return false;
  }
  return model.backend().run_captured(top, step);  // one graph per step shape
}

void warm_up(Model& model, int batch, const SamplerParams& sampler, bool use_graph, LoadLog* log) {
  const int vocab = model.config().vocab;
  const std::vector<int32_t> tokens(static_cast<size_t>(batch), 0);
  std::vector<float> logits(static_cast<size_t>(vocab));
  double t = now_ms();
  auto phase_done = [&](const std::string& name, const std::string& detail) {
    const double now = now_ms();
    if (log) log->add(name, now - t, detail);
    t = now;
  };
  model.forward(tokens.data(), 0, batch, LogitsMode::Last, logits.data());  // returns when the GPU is done
  phase_done("warm-up prefill", std::to_string(batch) + " tokens: kernel loading, GEMM planning");
  const int top = Sampler(sampler).candidates_needed(vocab);
  std::vector<int32_t> ids(static_cast<size_t>(top));
  if (log && use_graph) {
    decode_step(model, 0, batch, top, /*use_graph=*/false, ids.data(), logits.data());
    phase_done("warm-up decode step", "plain launches: decode kernels' loading (-v only)");
  }
  // The same graph key as generate()'s decode steps: they replay this graph instead of capturing their own.
  const bool graph = decode_step(model, 0, batch, top, use_graph, ids.data(), logits.data());
  phase_done(log && use_graph ? "warm-up decode graph" : "warm-up decode step",
             graph ? "capture, instantiation, first launch" : "plain launches");
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
  int32_t next = sampler.sample(logits.data(), vocab);
  // Decode steps hand the sampler only the candidates it looks at (the argmax when greedy), reduced on the
  // backend, unless it needs every logit.
  const int top = sampler.candidates_needed(vocab);
  std::vector<int32_t> top_ids(static_cast<size_t>(top));
  std::vector<float> step_logits(static_cast<size_t>(top > 0 ? top : vocab));
  for (int i = 0; i < opt.n_predict; ++i) {
    if (tok.is_end_of_generation(next)) break;
    on_token(next);
    ++st.n_generated;
    if (opt.stop_after && opt.stop_after(next)) break;
    if (i + 1 == opt.n_predict || pos >= ctx) break;  // the last token needs no forward pass
    st.graph_used = decode_step(model, next, pos, top, opt.use_graph, top_ids.data(), step_logits.data());
    next = top > 0 ? sampler.sample_top(top_ids.data(), step_logits.data(), top)
                   : sampler.sample(step_logits.data(), vocab);
    ++pos;
  }
  st.generate_ms = now_ms() - t0;
  return st;
}

}  // namespace swrun
