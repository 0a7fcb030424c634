// Quality side of an A/B run: the same text under two attention configurations, compared position by position
// through the next-token distributions their logits define.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace swrun {

struct AbQuality {
  int64_t positions = 0;          // positions compared
  double kl_mean = 0;             // mean over positions of KL(A || B), in nats
  double kl_max = 0;
  int64_t kl_max_position = -1;   // position of kl_max (-1 when no positions)
  int64_t top1_agree = 0;         // positions where both argmaxes are the same token
  double top1_agreement() const { return positions > 0 ? static_cast<double>(top1_agree) / positions : 0; }
  int64_t scored_tokens = 0;      // positions whose next token is known (perplexity terms)
  double nll_a = 0, nll_b = 0;                // mean negative log-likelihood of the text's next tokens, nats
  double perplexity_a = 0, perplexity_b = 0;  // exp(nll): infinite where a model all but rules the text out

  // Greedy continuations after the prompt, filled by the caller (ids, and text as the tokenizer decodes them).
  std::vector<int32_t> greedy_a, greedy_b;
  std::string greedy_text_a, greedy_text_b;
  // First index where the continuations differ (one running out counts as differing); -1 when identical.
  int64_t first_divergence() const;
};

// Accumulates positions one at a time, so all-position logits never have to be held at once.
class AbMetrics {
 public:
  explicit AbMetrics(int vocab);  // throws Error when vocab < 1

  // Logits of A and B at one position ([vocab] floats each). `next_token` is the token that follows this position
  // in the text, or -1 where the text ends (the position then counts for KL and top-1 but not for perplexity).
  // Throws Error on a non-finite logit or a next_token outside the vocabulary.
  void add_position(const float* logits_a, const float* logits_b, int32_t next_token);

  // KL, top-1 and perplexities so far (greedy fields empty).
  AbQuality result() const;

 private:
  int vocab_;
  int64_t positions_ = 0, top1_agree_ = 0, scored_ = 0;
  double kl_sum_ = 0, kl_max_ = 0, nll_a_ = 0, nll_b_ = 0;
  int64_t kl_max_position_ = -1;
  std::vector<double> log_p_a_, log_p_b_;  // scratch, one position
};

}  // namespace swrun
