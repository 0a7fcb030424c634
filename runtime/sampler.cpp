#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "runtime/backend.h"
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

namespace {

// The order of candidates: a strict total order on distinct ids, so the k best are one well-defined list that a
// GPU reduction can reproduce exactly.
bool ranks_before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// Leaves in `c` the best `k` of logits[0 .. vocab) in ranks_before order, NaN never chosen (fewer than k when
// NaNs leave fewer).
void best_candidates(const float* logits, int vocab, size_t k, std::vector<std::pair<float, int32_t>>& c) {
  c.clear();
  c.reserve(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i])) c.emplace_back(logits[i], i);
  const size_t keep = std::min(c.size(), k);
  std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(keep), c.end(), ranks_before);
  c.resize(keep);
}

}  // namespace

int top_candidates(const float* logits, int vocab, int k, int32_t* ids, float* values) {
  std::vector<std::pair<float, int32_t>> c;
  best_candidates(logits, vocab, static_cast<size_t>(std::max(k, 0)), c);
  const size_t found = c.size();
  for (size_t i = 0; i < found; ++i) {
    values[i] = c[i].first;
    ids[i] = c[i].second;
  }
  return static_cast<int>(found);
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  if (p.temperature < 0) fail("--temp must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) fail("--top-p must be in (0, 1]");
}

int Sampler::candidates_needed(int vocab) const {
  if (p_.temperature == 0) return 1;
  if (p_.top_k > 0 && p_.top_k <= kMaxDeviceTopK) return std::min(p_.top_k, vocab);
  return 0;
}

int32_t Sampler::sample(const float* logits, int vocab) {
  if (p_.temperature == 0) return argmax(logits, vocab);
  if (p_.top_k <= 0) return draw_nucleus(logits, vocab);
  best_candidates(logits, vocab, static_cast<size_t>(p_.top_k), candidates_);
  if (candidates_.empty()) return 0;
  return draw();
}

// The draw over the whole vocabulary sorted by ranks_before, with the normalizing sum taken in vocabulary order.
// Sorting all of Gemma 3's 262144 logits took 35 ms a token on the CPU (`--top-k 0`), so only what the top-p nucleus
// can reach is sorted:
// - entries of weight below (1 - top_p) / (2 n) of the sum hold less than half of the mass top-p leaves out, so the
//   nucleus lies among the others; they are the candidates (all of them at top-p 1);
// - the candidates are sorted in growing blocks (256, then 4x) until the mass reaches top-p.
// Should rounding keep the candidates' mass short of top-p, every entry becomes a candidate and the walk starts over.
int32_t Sampler::draw_nucleus(const float* logits, int vocab) {
  float mx = -INFINITY;
  size_t valid = 0;
  for (int i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i])) mx = std::max(mx, logits[i]), ++valid;
  if (valid == 0) return 0;
  if (std::isinf(mx)) return argmax(logits, vocab);  // weights relative to an infinite maximum are undefined
  weights_.assign(static_cast<size_t>(vocab), 0.f);
  double sum = 0;
  for (int i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i])) sum += weights_[i] = std::exp((logits[i] - mx) / p_.temperature);
  // Walks the candidates of weight >= floor best first; true when their mass reached top-p.
  auto walk = [&](double floor) {
    candidates_.clear();
    for (int i = 0; i < vocab; ++i)
      if (!std::isnan(logits[i]) && weights_[i] >= floor) candidates_.emplace_back(logits[i], i);
    const auto first = candidates_.begin();
    const size_t n = candidates_.size();
    probs_.clear();
    double mass = 0;
    size_t sorted = 0;  // candidates_[0, sorted) are the best, in order, their weights in probs_
    for (size_t want = std::min<size_t>(n, 256); sorted < n; want = std::min(n, want * 4)) {
      const auto end = first + static_cast<std::ptrdiff_t>(want);
      std::nth_element(first + static_cast<std::ptrdiff_t>(sorted), end, candidates_.end(), ranks_before);
      std::sort(first + static_cast<std::ptrdiff_t>(sorted), end, ranks_before);
      while (sorted < want) {
        probs_.push_back(weights_[static_cast<size_t>(candidates_[sorted++].second)]);
        mass += probs_.back() / sum;
        if (mass >= p_.top_p) return true;
      }
    }
    return false;
  };
  const double floor = p_.top_p < 1 ? sum * (1.0 - p_.top_p) / (2.0 * double(valid)) : 0.0;
  if (!walk(floor) && floor > 0) walk(0.0);
  std::discrete_distribution<size_t> pick(probs_.begin(), probs_.end());
  return candidates_[pick(rng_)].second;
}

int32_t Sampler::sample_top(const int32_t* ids, const float* values, int k) {
  if (p_.temperature == 0) return k > 0 && ids[0] >= 0 ? ids[0] : 0;  // as argmax(): 0 when every logit is NaN
  candidates_.clear();
  for (int i = 0; i < k && ids[i] >= 0; ++i) candidates_.emplace_back(values[i], ids[i]);
  if (candidates_.empty()) return 0;
  return draw();
}

int32_t Sampler::draw() {
  const size_t keep = candidates_.size();
  const float mx = candidates_[0].first;
  if (std::isinf(mx)) return candidates_[0].second;  // as draw_nucleus: no finite weights, the best candidate
  probs_.resize(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += probs_[i] = std::exp((candidates_[i].first - mx) / p_.temperature);
  // top-p: the smallest prefix whose mass reaches top_p
  double mass = 0;
  size_t cut = keep;
  for (size_t i = 0; i < keep; ++i) {
    mass += probs_[i] / sum;
    if (mass >= p_.top_p) { cut = i + 1; break; }
  }
  std::discrete_distribution<size_t> pick(probs_.begin(), probs_.begin() + static_cast<std::ptrdiff_t>(cut));
  return candidates_[pick(rng_)].second;
}

}  // namespace swrun
