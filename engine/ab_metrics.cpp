#include "engine/ab_metrics.h"

#include <algorithm>
#include <cmath>

#include "runtime/common.h"

namespace swrun {

int64_t AbQuality::first_divergence() const {
  const size_t common = std::min(greedy_a.size(), greedy_b.size());
  for (size_t i = 0; i < common; ++i)
    if (greedy_a[i] != greedy_b[i]) return static_cast<int64_t>(i);
  return greedy_a.size() == greedy_b.size() ? -1 : static_cast<int64_t>(common);
}

namespace {

// log softmax in double: x - max - log(sum exp(x - max)), exact for logits of any magnitude. Returns the argmax
// (first one on ties).
int log_softmax(const float* logits, int n, std::vector<double>& out, const char* which, int64_t position) {
  int best = 0;
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(logits[i]))
      fail("A/B metrics: non-finite logit of token " + std::to_string(i) + " at position " +
           std::to_string(position) + " in " + which);
    if (logits[i] > logits[best]) best = i;
  }
  const double max = logits[best];
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  const double log_z = max + std::log(sum);
  for (int i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<double>(logits[i]) - log_z;
  return best;
}

}  // namespace

AbMetrics::AbMetrics(int vocab) : vocab_(vocab) {
  if (vocab < 1) fail("A/B metrics: vocabulary size " + std::to_string(vocab) + " is not positive");
  log_p_a_.resize(static_cast<size_t>(vocab));
  log_p_b_.resize(static_cast<size_t>(vocab));
}

void AbMetrics::add_position(const float* logits_a, const float* logits_b, int32_t next_token) {
  const int64_t pos = positions_;
  if (next_token < -1 || next_token >= vocab_)
    fail("A/B metrics: next token " + std::to_string(next_token) + " at position " + std::to_string(pos) +
         " is outside the vocabulary of " + std::to_string(vocab_));
  const int top_a = log_softmax(logits_a, vocab_, log_p_a_, "A", pos);
  const int top_b = log_softmax(logits_b, vocab_, log_p_b_, "B", pos);
  double kl = 0;
  for (size_t i = 0; i < log_p_a_.size(); ++i) kl += std::exp(log_p_a_[i]) * (log_p_a_[i] - log_p_b_[i]);
  kl = std::max(kl, 0.0);  // rounding can leave -1e-17 where the distributions are equal
  kl_sum_ += kl;
  if (kl > kl_max_ || kl_max_position_ < 0) {
    kl_max_ = kl;
    kl_max_position_ = pos;
  }
  if (top_a == top_b) ++top1_agree_;
  if (next_token >= 0) {
    nll_a_ -= log_p_a_[static_cast<size_t>(next_token)];
    nll_b_ -= log_p_b_[static_cast<size_t>(next_token)];
    ++scored_;
  }
  ++positions_;
}

AbQuality AbMetrics::result() const {
  AbQuality q;
  q.positions = positions_;
  q.kl_mean = positions_ > 0 ? kl_sum_ / static_cast<double>(positions_) : 0;
  q.kl_max = kl_max_;
  q.kl_max_position = kl_max_position_;
  q.top1_agree = top1_agree_;
  q.scored_tokens = scored_;
  if (scored_ > 0) {
    q.nll_a = nll_a_ / static_cast<double>(scored_);
    q.nll_b = nll_b_ / static_cast<double>(scored_);
    q.perplexity_a = std::exp(q.nll_a);
    q.perplexity_b = std::exp(q.nll_b);
  }
  return q;
}

}  // namespace swrun
