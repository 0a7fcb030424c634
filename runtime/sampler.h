// Next-token selection from logits: greedy at temperature 0, otherwise temperature + top-k + top-p sampling.
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace swrun {

struct SamplerParams {
  float temperature = 0.8f;  // 0 = greedy
  int top_k = 40;            // <= 0: no limit
  float top_p = 0.95f;       // 1 = no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  int32_t sample(const float* logits, int vocab);
  // How many of the best logits sample() looks at over a vocabulary of `vocab` (1 when greedy, top_k when it
  // is at most kMaxDeviceTopK), or 0 when it needs all of them. A backend can reduce the logits to that many
  // candidates (Backend::top_k) and sample_top() then draws the same token sample() would, with the same rng.
  int candidates_needed(int vocab) const;
  // Picks from the k best candidates, best first as top_candidates() orders them (ids of -1 are empty slots).
  int32_t sample_top(const int32_t* ids, const float* values, int k);

 private:
  int32_t draw();  // temperature + top-p draw over candidates_ (best first)
  // Without top-k: the top-p draw over every logit, sorting only the head the nucleus reaches into.
  int32_t draw_nucleus(const float* logits, int vocab);

  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<double> probs_;  // the candidates' weights, best first (draw, draw_nucleus): reused across tokens
  std::vector<float> weights_;  // draw_nucleus: exp((logit - max) / temperature) per vocabulary entry
};

int32_t argmax(const float* logits, int vocab);

// The k best of logits[0 .. vocab): higher value first, the lower index among equal values, NaN never chosen;
// fills ids/values[k] and returns how many were found (k unless NaNs leave fewer). k = 1 agrees with argmax()
// except that argmax() returns 0 where every logit is NaN.
int top_candidates(const float* logits, int vocab, int k, int32_t* ids, float* values);

}  // namespace swrun
