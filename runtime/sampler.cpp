#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "runtime/common.h"

namespace swrun {

int32_t argmax(const float* logits, int vocab) {
  // Two passes, each a plain loop the compiler vectorizes: max_element's index tracking is 2-3x slower over
  // a 262144-entry vocabulary, a visible share of a GPU decode step.
  float best = -INFINITY;
  for (int i = 0; i < vocab; ++i) best = std::max(best, logits[i]);
  for (int i = 0; i < vocab; ++i)
    if (logits[i] == best) return i;
  return 0;  // all NaN
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  if (p.temperature < 0) fail("--temp must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) fail("--top-p must be in (0, 1]");
}

int32_t Sampler::sample(const float* logits, int vocab) {
  if (p_.temperature == 0) return argmax(logits, vocab);
  candidates_.resize(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i) candidates_[i] = {logits[i], i};
  size_t keep = candidates_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < keep) keep = static_cast<size_t>(p_.top_k);
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first; };
  std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  candidates_.resize(keep);
  const float mx = candidates_[0].first;
  std::vector<double> probs(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp((candidates_[i].first - mx) / p_.temperature);
  // top-p: the smallest prefix whose mass reaches top_p
  double mass = 0;
  size_t cut = keep;
  for (size_t i = 0; i < keep; ++i) {
    mass += probs[i] / sum;
    if (mass >= p_.top_p) { cut = i + 1; break; }
  }
  std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(cut));
  return candidates_[pick(rng_)].second;
}

}  // namespace swrun
