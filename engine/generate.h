// Prefill in chunks, then decode token by token, streaming text as it is produced.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/sampler.h"

namespace swrun {

class LoadLog;
class Tokenizer;

struct GenerateOptions {
  int n_predict = 128;
  int ubatch = 512;
  bool use_graph = true;  // decode steps through Backend::run_captured
  bool progress = false;  // a progress line on stderr during long prefills
  SamplerParams sampler;
  // When set, generation ends after a token for which it returns true (on_token still receives that token): a
  // short answer stops at its newline instead of running to n_predict.
  std::function<bool(int32_t)> stop_after;
};

struct GenerateStats {
  int n_prompt = 0, n_generated = 0;
  double prompt_ms = 0, generate_ms = 0;
  bool graph_used = false;
  double prompt_tok_s() const { return prompt_ms > 0 ? n_prompt / (prompt_ms / 1e3) : 0; }
  double generate_tok_s() const { return generate_ms > 0 ? n_generated / (generate_ms / 1e3) : 0; }
};

// Runs the prompt through the model in chunks of ubatch tokens at positions pos0 .. pos0+n-1, computing logits
// only for the last position, and returns them (host, [vocab]).
std::vector<float> prefill(Model& model, const std::vector<int32_t>& prompt, int ubatch, bool progress,
                           int32_t pos0 = 0);

// One decode step, the one generation and `swrun bench` both time: runs `token` at position `pos`. With top > 0
// the backend reduces the next-token logits to the `top` best candidates and only those come back (ids and values,
// host, [top]; top = 1 is greedy's argmax); with top == 0 all logits come back in `values` ([vocab]). With
// use_graph it runs through Backend::run_captured (a CUDA graph per value of top where the backend has one).
// Returns true when the step ran from a graph.
bool decode_step(Model& model, int32_t token, int32_t pos, int top, bool use_graph, int32_t* ids, float* values);

// Runs one forward of `batch` tokens and one decode step as generate() would for `sampler` (token 0 at positions
// 0 .. batch; the step captured as generate()'s graph when use_graph), so the first real prefill and decode find
// their kernels loaded, their GEMM shapes planned and their graph built (a GPU otherwise spends tens of
// milliseconds on them in the first calls). The KV cache rows it writes are overwritten by the real prompt before
// anything reads them. Needs a context of at least batch + 1. With a log, its parts are added to it as phases
// (and the step is first run once without a graph, so that the graph's own cost shows apart from kernel loading).
void warm_up(Model& model, int batch, const SamplerParams& sampler, bool use_graph, LoadLog* log = nullptr);

// Generates up to n_predict tokens after the prompt (stops at end-of-generation or at the context end `ctx`).
// on_token receives each generated id as soon as it is sampled.
GenerateStats generate(Model& model, const Tokenizer& tok, const std::vector<int32_t>& prompt, int ctx,
                       const GenerateOptions& opt, const std::function<void(int32_t)>& on_token);

}  // namespace swrun
