// Rows of logits for the scoring tests (runtime/logprob.h's functions, Backend::score_rows / compress_rows on the
// CPU and CUDA backends), cycling through the shapes that trip a log-softmax: spread and confident rows, rows with
// -inf entries, huge magnitudes, many ties for the maximum, and near-flat rows; with a target per row that is a
// finite logit, and base rows compressed from a perturbed copy of the logits.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/logprob.h"

namespace swrun::testing {

struct LogitRows {
  int rows = 0, vocab = 0;
  std::vector<float> logits;    // [rows, vocab]
  std::vector<int32_t> targets; // [rows]
  std::vector<uint16_t> base;   // [rows, kl_row_width(vocab)]
};

inline const char* logit_row_kind(int r) {
  static const char* kinds[] = {"spread", "confident", "with -inf", "huge", "ties", "near-flat"};
  return kinds[r % 6];
}

inline LogitRows make_logit_rows(std::mt19937_64& rng, int rows, int vocab) {
  LogitRows t;
  t.rows = rows;
  t.vocab = vocab;
  t.logits.resize(size_t(rows) * vocab);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  for (int r = 0; r < rows; ++r) {
    float* l = t.logits.data() + size_t(r) * vocab;
    for (int i = 0; i < vocab; ++i) {
      switch (r % 6) {
        case 0: l[i] = 3.f * normal(rng); break;
        case 1: l[i] = 2.f * normal(rng); break;
        case 2: l[i] = unit(rng) < 0.1f ? -INFINITY : 4.f * normal(rng); break;
        case 3: l[i] = (2.f * unit(rng) - 1.f) * 1e38f; break;  // differences stay finite in fp32
        case 4: l[i] = float(token(rng) % 4); break;
        default: l[i] = 0.01f * normal(rng); break;
      }
    }
    if (r % 6 == 1)
      for (int k = 0; k < 3; ++k) l[token(rng)] += 25.f;  // a few tokens far above the rest, as a trained model's
    int target = token(rng);
    if (std::isinf(l[target])) l[target] = 0.f;
    t.targets.push_back(target);
  }
  // The base: a perturbed copy, compressed (so KL(base || logits) is of order 0.1 to 1).
  const size_t width = size_t(kl_row_width(vocab));
  t.base.resize(size_t(rows) * width);
  std::vector<float> perturbed(vocab);
  for (int r = 0; r < rows; ++r) {
    const float* l = t.logits.data() + size_t(r) * vocab;
    for (int i = 0; i < vocab; ++i) perturbed[i] = std::isinf(l[i]) || r % 6 == 3 ? l[i] : l[i] + 0.5f * normal(rng);
    compress_row(vocab, perturbed.data(), t.targets[r], t.base.data() + r * width);
  }
  return t;
}

}  // namespace swrun::testing
