// The long-prompt studies behind `swrun --profile` and `swrun --ab`: a timed, per-op profile of one prefill, and
// a position-by-position quality comparison of two attention configurations on the same text.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"
#include "engine/ab_metrics.h"
#include "runtime/profile.h"

namespace swrun {

class Tokenizer;

struct ProfileOptions {
  int ubatch = 512;
  int repeat = 3;          // timed runs after one warm-up; the report takes medians
  bool progress = false;   // progress line on stderr
  std::string model_path;  // for the report
  std::string attn_spec;   // as the user wrote it
};

struct ProfileResult {
  Profile profile;
  double unprofiled_prefill_ms = 0;  // median of the same prefill with no profiler attached (overhead check)
};

// Prefills `tokens` (from position 0) repeat + 1 times with the backend's op timers attached, then `repeat`
// times without them. The model's KV cache must hold tokens.size() positions.
ProfileResult profile_prefill(Model& m, const std::vector<int32_t>& tokens, const ProfileOptions& opt);

// Runs the same tokens through models a and b chunk by chunk with all-position logits and compares the
// next-token distributions (KL, top-1, perplexity of the text itself); then greedy continuations of n_predict
// tokens from each. Both models' KV caches must hold tokens.size() + n_predict positions.
AbQuality compare_quality(Model& a, Model& b, const Tokenizer& tok, const std::vector<int32_t>& tokens, int ubatch,
                          int n_predict, bool progress);

}  // namespace swrun
