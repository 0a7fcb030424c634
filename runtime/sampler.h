// Next-token selection from logits: greedy at temperature 0, otherwise temperature + top-k + top-p sampling.
#pragma once
#include <cstdint>
#include <random>
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

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(const float* logits, int vocab);

}  // namespace swrun
