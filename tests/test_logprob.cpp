// Scoring rows of logits (runtime/logprob.h) through the CPU backend's score_rows / compress_rows, against
// straightforward double-precision references written here, on fresh random rows (tests/logit_rows.h: -inf
// entries, huge magnitudes, ties, near-flat rows) at Gemma 3's and Qwen's vocabulary sizes and an odd small one,
// with the outputs poisoned first; and the in-memory base of multi-spec perplexity (engine/kl_base_rows.h), which
// must score exactly as the rows it was stored from.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/kl_base_rows.h"
#include "engine/perplexity.h"
#include "runtime/backend.h"
#include "runtime/logprob.h"
#include "tests/error_of.h"
#include "tests/logit_rows.h"
#include "tests/quant_random_blocks.h"

namespace swrun {
namespace {

using testing::LogitRows;
using testing::logit_row_kind;
using testing::make_logit_rows;

struct Reference {
  double log_z = 0, nll = 0, kld = 0, nll_base = 0;
  int top = 0, top_base = 0;
};

// log Z, -log p(target), the first maximum and KL(base || row) over the base entries above -16, in double.
Reference reference(const float* l, int vocab, int target, const uint16_t* base) {
  Reference ref;
  double max = l[0];
  for (int i = 1; i < vocab; ++i)
    if (l[i] > max) {
      max = l[i];
      ref.top = i;
    }
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(l[i]) - max);
  ref.log_z = max + std::log(sum);
  ref.nll = ref.log_z - l[target];
  float scale, min_log_prob;
  std::memcpy(&scale, base, 4);
  std::memcpy(&min_log_prob, base + 2, 4);
  const uint16_t* q = base + 4;
  double best = -std::numeric_limits<double>::infinity();
  for (int i = 0; i < vocab; ++i) {
    const double lpb = double(scale) * q[i] + min_log_prob;
    if (lpb > best) {
      best = lpb;
      ref.top_base = i;
    }
    // Which entries count is llama.cpp's definition: their log-probability in float above -16.
    if (scale * q[i] + min_log_prob > -16.f) ref.kld += std::exp(lpb) * (lpb - (double(l[i]) - ref.log_z));
  }
  ref.nll_base = -(double(scale) * q[target] + min_log_prob);
  return ref;
}

bool close(double got, double want, double rel, double abs = 0) {
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= abs + rel * std::fabs(want);
}

Buffer backend_copy(Backend& be, const std::vector<float>& v) {
  Buffer b = be.alloc(v.size());
  std::memcpy(b.data, v.data(), v.size() * sizeof(float));
  return b;
}

class LogprobTest : public ::testing::TestWithParam<int> {};

TEST_P(LogprobTest, ScoreRowsMatchesTheDoubleReference) {
  const int vocab = GetParam(), rows = 12;
  const LogitRows t = make_logit_rows(testing::rng(), rows, vocab);
  auto be = make_cpu_backend(2);
  const Buffer logits = backend_copy(*be, t.logits);
  const size_t width = size_t(kl_row_width(vocab));
  RowScore poison;
  poison.nll = poison.kld = std::nan("");
  poison.nll_base = NAN;
  poison.top = poison.top_base = -7;
  std::vector<RowScore> plain(rows, poison), against(rows, poison);
  be->score_rows(logits, rows, vocab, t.targets.data(), nullptr, plain.data());
  be->score_rows(logits, rows, vocab, t.targets.data(), t.base.data(), against.data());
  be->synchronize();
  for (int r = 0; r < rows; ++r) {
    SCOPED_TRACE(std::string(logit_row_kind(r)) + " row " + std::to_string(r) + ", vocab " + std::to_string(vocab));
    const float* l = t.logits.data() + size_t(r) * vocab;
    const Reference ref = reference(l, vocab, t.targets[r], t.base.data() + r * width);
    EXPECT_TRUE(close(plain[r].nll, ref.nll, 1e-5, 1e-5)) << plain[r].nll << " vs " << ref.nll;
    EXPECT_TRUE(close(against[r].nll, ref.nll, 1e-5, 1e-5)) << against[r].nll << " vs " << ref.nll;
    EXPECT_EQ(plain[r].top, ref.top);
    EXPECT_EQ(against[r].top, ref.top);
    EXPECT_EQ(against[r].top_base, ref.top_base);
    EXPECT_TRUE(close(against[r].nll_base, ref.nll_base, 1e-6, 1e-6)) << against[r].nll_base << " vs " << ref.nll_base;
    EXPECT_TRUE(close(against[r].kld, ref.kld, 1e-5, 2e-5)) << against[r].kld << " vs " << ref.kld;
  }
}

TEST_P(LogprobTest, CompressRowsMatchesTheDoubleReference) {
  const int vocab = GetParam(), rows = 12;
  const LogitRows t = make_logit_rows(testing::rng(), rows, vocab);
  auto be = make_cpu_backend(2);
  const Buffer logits = backend_copy(*be, t.logits);
  const size_t width = size_t(kl_row_width(vocab));
  std::vector<uint16_t> out(rows * width, 0xBEEF);
  std::vector<double> nll(rows, std::nan(""));
  be->compress_rows(logits, rows, vocab, t.targets.data(), out.data(), nll.data());
  be->synchronize();
  for (int r = 0; r < rows; ++r) {
    SCOPED_TRACE(std::string(logit_row_kind(r)) + " row " + std::to_string(r) + ", vocab " + std::to_string(vocab));
    const float* l = t.logits.data() + size_t(r) * vocab;
    double max = l[0], min = l[0];
    for (int i = 0; i < vocab; ++i) {
      max = std::max(max, double(l[i]));
      min = std::min(min, double(l[i]));
    }
    const double lo = std::max(min, double(float(max) - 16.f));  // the clamp, as llama.cpp rounds it
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(double(l[i]) - max);
    const double log_sum = std::log(sum), scale = (max - lo) / 65535;
    const uint16_t* o = out.data() + r * width;
    float got_scale, got_min_log_prob;
    std::memcpy(&got_scale, o, 4);
    std::memcpy(&got_min_log_prob, o + 2, 4);
    EXPECT_TRUE(close(got_scale, scale, 1e-6)) << got_scale << " vs " << scale;
    EXPECT_TRUE(close(got_min_log_prob, lo - max - log_sum, 1e-6, 1e-5));
    EXPECT_TRUE(close(nll[r], max + log_sum - l[t.targets[r]], 1e-5, 1e-5)) << nll[r];
    int off_by_one = 0;
    for (int i = 0; i < vocab; ++i) {
      const double want = scale > 0 && l[i] > lo ? std::nearbyint((l[i] - lo) / scale) : 0;
      const double diff = std::fabs(o[4 + i] - want);
      ASSERT_LE(diff, 1) << "entry " << i;  // rounding of a code on its half-way point may go either way
      off_by_one += diff > 0;
    }
    EXPECT_LE(off_by_one, vocab / 20 + 1);  // fp32 codes: ~1% of entries sit within rounding of a half-way point
    for (size_t i = 4 + vocab; i < width; ++i) EXPECT_EQ(o[i], 0) << "padding " << i;
  }
}

TEST_P(LogprobTest, CompactBaseRowsScoreExactlyAsTheRowsTheyHold) {
  const int vocab = GetParam(), rows = 12;
  const LogitRows t = make_logit_rows(testing::rng(), rows, vocab);
  const size_t width = size_t(kl_row_width(vocab));
  CompactBaseRows held(vocab);
  held.store(0, 5, t.base.data(), t.targets.data());  // two stores, as batches of a chunk
  held.store(5, rows - 5, t.base.data() + 5 * width, t.targets.data() + 5);
  std::vector<uint16_t> back(rows * width, 0xBEEF);
  held.expand(0, 4, back.data());
  held.expand(4, rows - 4, back.data() + 4 * width);
  for (int r = 0; r < rows; ++r) {
    SCOPED_TRACE(std::string(logit_row_kind(r)) + " row " + std::to_string(r) + ", vocab " + std::to_string(vocab));
    const float* l = t.logits.data() + size_t(r) * vocab;
    const RowScore a = score_row(vocab, l, t.targets[r], t.base.data() + r * width);
    const RowScore b = score_row(vocab, l, t.targets[r], back.data() + r * width);
    EXPECT_EQ(a.kld, b.kld);
    EXPECT_EQ(a.nll_base, b.nll_base);
    EXPECT_EQ(a.top_base, b.top_base);
    KlSums sa, sb;
    EXPECT_EQ(add_scored_row(a, sa), add_scored_row(b, sb));
  }
  // Confident rows keep a few entries; near-flat ones keep every code.
  EXPECT_LT(held.bytes(), rows * width * 2);
  CompactBaseRows confident(vocab);
  for (int r = 1; r < rows; r += 6) confident.store(0, 1, t.base.data() + r * width, t.targets.data() + r);
  EXPECT_LT(confident.bytes(), width * 2 / 10);
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, LogprobTest, ::testing::Values(262144, 151936, 1001),
                         [](const ::testing::TestParamInfo<int>& p) { return "vocab" + std::to_string(p.param); });

TEST(Logprob, BadTargetsAndShapesAreClearErrors) {
  auto be = make_cpu_backend(1);
  Buffer logits = be->alloc(8);
  const int32_t bad[] = {3, 9};
  RowScore out[3];
  EXPECT_NE(testing::error_of([&] { be->score_rows(logits, 2, 4, bad, nullptr, out); }).find("target token 9 of row 1"),
            std::string::npos);
  const int32_t good[] = {0, 1, 2};
  EXPECT_NE(testing::error_of([&] { be->score_rows(logits, 3, 4, good, nullptr, out); })
                .find("3 rows of 4 logits do not fit a buffer of 8 floats"),
            std::string::npos);
  std::vector<uint16_t> rows(2 * kl_row_width(4));
  double nll[2];
  EXPECT_NE(testing::error_of([&] { be->compress_rows(logits, 2, 4, bad, rows.data(), nll); }).find("compress_rows"),
            std::string::npos);
}

}  // namespace
}  // namespace swrun
