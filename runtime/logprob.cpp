#include "runtime/logprob.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace swrun {
namespace {

// Round to nearest, ties to even (llama.cpp's nearest_int under the default rounding mode).
inline int nearest(float v) { return static_cast<int>(std::nearbyint(v)); }

}  // namespace

RowScore score_row(int n_vocab, const float* logits, int target, const uint16_t* base) {
  RowScore s;
  float max_logit = logits[0];
  for (int i = 1; i < n_vocab; ++i)
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      s.top = i;
    }
  double sum_exp = 0.0;
  for (int i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
  if (!base) {
    s.nll = -(logits[target] - max_logit - std::log(sum_exp));
    return s;
  }
  const float log_sum_exp = static_cast<float>(std::log(sum_exp));
  const float log_norm = max_logit + log_sum_exp;
  s.nll = log_norm - logits[target];
  float scale, min_log_prob;
  std::memcpy(&scale, base, sizeof(float));
  std::memcpy(&min_log_prob, base + 2, sizeof(float));
  const uint16_t* q = base + 4;
  s.nll_base = -(scale * q[target] + min_log_prob);
  double kld = 0;
  float p_log_base_max = 0;
  for (int i = 0; i < n_vocab; ++i) {
    const float p_log_base = scale * q[i] + min_log_prob;
    if (i == 0 || p_log_base > p_log_base_max) {
      p_log_base_max = p_log_base;
      s.top_base = i;
    }
    if (p_log_base > -16.f) kld += std::exp(p_log_base) * (p_log_base - logits[i] + log_norm);
  }
  s.kld = kld;
  return s;
}

double compress_row(int n_vocab, const float* logits, int target, uint16_t* out) {
  float max_logit = logits[0], min_logit = logits[0];
  for (int i = 1; i < n_vocab; ++i) {
    max_logit = std::max(max_logit, logits[i]);
    min_logit = std::min(min_logit, logits[i]);
  }
  min_logit = std::max(min_logit, max_logit - 16);
  double sum_exp = 0.0;
  for (int i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
  const float log_sum_exp = static_cast<float>(std::log(sum_exp));
  const float min_log_prob = min_logit - max_logit - log_sum_exp;
  const float scale = (max_logit - min_logit) / 65535.f;
  std::memcpy(out, &scale, sizeof(float));
  std::memcpy(out + 2, &min_log_prob, sizeof(float));
  uint16_t* q = out + 4;
  std::fill(q, out + kl_row_width(n_vocab), uint16_t(0));
  if (scale != 0.f) {
    const float inv_scale = 1 / scale;
    for (int i = 0; i < n_vocab; ++i)
      q[i] = logits[i] > min_logit ? static_cast<uint16_t>(nearest(inv_scale * (logits[i] - min_logit))) : 0;
  }
  return max_logit + log_sum_exp - logits[target];
}

}  // namespace swrun
