// The sampler on the CPU. Without top-k (`--top-k 0`) it sorts only the head of the vocabulary that the top-p
// nucleus reaches into, and must draw exactly what a full sort draws with the same seed. The reference below sorts
// everything (ranks_before order: value descending, lower id first), sums the probabilities in vocabulary order,
// keeps the smallest prefix whose mass reaches top-p and draws from it with the same rng. Infinite logits fall back
// to the argmax.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace swrun {
namespace {

int32_t full_sort_draw(const std::vector<float>& logits, float temperature, float top_p, std::mt19937_64& rng) {
  std::vector<std::pair<float, int32_t>> c;
  float mx = -INFINITY;
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isnan(logits[i])) {
      c.emplace_back(logits[i], int32_t(i));
      mx = std::max(mx, logits[i]);
    }
  if (c.empty()) return 0;
  double sum = 0;
  for (const auto& e : c) sum += std::exp((e.first - mx) / temperature);
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  std::vector<double> probs;
  double mass = 0;
  for (const auto& e : c) {
    probs.push_back(std::exp((e.first - mx) / temperature));
    mass += probs.back() / sum;
    if (mass >= top_p) break;
  }
  std::discrete_distribution<size_t> pick(probs.begin(), probs.end());
  return c[pick(rng)].second;
}

// Logits of a few shapes: peaked like a trained model's (a nucleus of a few tokens), flat (a nucleus of most of
// the vocabulary, which takes several rounds of the head's growth), integer-valued (ties everywhere) and with NaNs.
std::vector<float> logits_of(int kind, int vocab, std::mt19937& gen) {
  std::normal_distribution<float> normal(0.f, kind == 0 ? 4.f : 0.3f);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) x = normal(gen);
  if (kind == 0)
    for (int i = 0; i < 20; ++i) v[gen() % vocab] += 25.f;
  if (kind == 2)
    for (float& x : v) x = std::floor(x * 10.f);
  if (kind == 3)
    for (int i = 0; i < vocab / 10; ++i) v[gen() % vocab] = NAN;
  return v;
}

TEST(Sampler, WithoutTopKDrawsWhatAFullSortDraws) {
  std::mt19937 gen(7);
  for (int vocab : {262144, 5000, 3}) {
    for (int kind = 0; kind < 4; ++kind) {
      const std::vector<float> logits = logits_of(kind, vocab, gen);
      for (float top_p : {0.5f, 0.95f, 1.f}) {
        for (float temperature : {0.8f, 2.f}) {
          const std::string what = "vocab " + std::to_string(vocab) + " kind " + std::to_string(kind) + " top-p " +
                                   std::to_string(top_p) + " temperature " + std::to_string(temperature);
          Sampler sampler(SamplerParams{temperature, 0, top_p, 12345});
          std::mt19937_64 rng(12345);
          for (int draw = 0; draw < (vocab > 5000 ? 3 : 40); ++draw)
            ASSERT_EQ(sampler.sample(logits.data(), vocab), full_sort_draw(logits, temperature, top_p, rng))
                << what << ", draw " << draw;
        }
      }
    }
  }
}

TEST(Sampler, WithoutTopKEveryLogitNaNGivesZero) {
  const std::vector<float> logits(10, NAN);
  Sampler sampler(SamplerParams{0.8f, 0, 0.95f, 1});
  EXPECT_EQ(sampler.sample(logits.data(), 10), 0);
}

// An infinite maximum leaves no finite weights: the draw falls back to the argmax instead of dividing by them,
// with top-k and without.
TEST(Sampler, AnInfiniteMaximumGivesTheArgmax) {
  for (int top_k : {0, 40}) {
    Sampler sampler(SamplerParams{0.8f, top_k, 0.95f, 1});
    const std::vector<float> low(5, -INFINITY);
    EXPECT_EQ(sampler.sample(low.data(), 5), 0) << "top-k " << top_k;
    const std::vector<float> high{1.f, INFINITY, 3.f, INFINITY};
    EXPECT_EQ(sampler.sample(high.data(), 4), 1) << "top-k " << top_k;
  }
}

}  // namespace
}  // namespace swrun
