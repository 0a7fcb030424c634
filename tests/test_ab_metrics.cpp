// A/B quality metrics against hand-computed values and an independent long-double reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/ab_metrics.h"
#include "runtime/common.h"

namespace swrun {
namespace {

std::vector<float> logits_of_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(static_cast<float>(std::log(v)));
  return l;
}

// Written separately from the implementation: plain softmax in long double, KL as sum p log(p/q).
struct Reference {
  static std::vector<long double> softmax(const std::vector<float>& x) {
    long double m = x[0];
    for (float v : x) m = std::max<long double>(m, v);
    std::vector<long double> p;
    long double s = 0;
    for (float v : x) s += std::exp(static_cast<long double>(v) - m);
    for (float v : x) p.push_back(std::exp(static_cast<long double>(v) - m) / s);
    return p;
  }
  static double kl(const std::vector<float>& a, const std::vector<float>& b) {
    const auto p = softmax(a), q = softmax(b);
    long double k = 0;
    for (size_t i = 0; i < p.size(); ++i) k += p[i] * std::log(p[i] / q[i]);
    return static_cast<double>(k);
  }
};

TEST(AbMetrics, IdenticalInputsGiveZeroKlAndFullAgreement) {
  const int vocab = 1000, positions = 40;
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> dist(0.f, 4.f);
  AbMetrics m(vocab);
  std::vector<float> logits(vocab);
  for (int p = 0; p < positions; ++p) {
    for (float& v : logits) v = dist(rng);
    m.add_position(logits.data(), logits.data(), static_cast<int32_t>(rng() % vocab));
  }
  const AbQuality q = m.result();
  EXPECT_EQ(q.positions, positions);
  EXPECT_EQ(q.kl_mean, 0.0);
  EXPECT_EQ(q.kl_max, 0.0);
  EXPECT_EQ(q.top1_agree, positions);
  EXPECT_DOUBLE_EQ(q.top1_agreement(), 1.0);
  EXPECT_EQ(q.scored_tokens, positions);
  EXPECT_GT(q.perplexity_a, 1.0);
  EXPECT_EQ(q.perplexity_a, q.perplexity_b);
}

TEST(AbMetrics, HandComputedKlOnTwoAndThreeTokenVocabularies) {
  {
    AbMetrics m(2);
    const auto a = logits_of_probs({0.5, 0.5}), b = logits_of_probs({0.75, 0.25});
    m.add_position(a.data(), b.data(), -1);
    // 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.5 ln(4/3)
    EXPECT_NEAR(m.result().kl_mean, 0.5 * std::log(4.0 / 3.0), 1e-7);
  }
  const auto peaked = logits_of_probs({0.25, 0.5, 0.25}), uniform = logits_of_probs({1.0, 1.0, 1.0});
  {
    AbMetrics m(3);
    m.add_position(peaked.data(), uniform.data(), -1);
    // 0.25 ln 0.75 + 0.5 ln 1.5 + 0.25 ln 0.75 = 0.5 ln 1.125
    EXPECT_NEAR(m.result().kl_mean, 0.5 * std::log(1.125), 1e-7);
  }
  {
    AbMetrics m(3);  // KL is not symmetric: the reverse direction is (1/3) ln(32/27)
    m.add_position(uniform.data(), peaked.data(), -1);
    EXPECT_NEAR(m.result().kl_mean, std::log(32.0 / 27.0) / 3.0, 1e-7);
  }
}

TEST(AbMetrics, MeanAndMaxOverPositionsAndTheirPosition) {
  AbMetrics m(3);
  const auto peaked = logits_of_probs({0.25, 0.5, 0.25}), uniform = logits_of_probs({1.0, 1.0, 1.0});
  const auto sharp = logits_of_probs({0.05, 0.9, 0.05});
  m.add_position(uniform.data(), uniform.data(), -1);  // 0
  m.add_position(peaked.data(), uniform.data(), -1);   // 0.5 ln 1.125
  m.add_position(sharp.data(), uniform.data(), -1);    // largest
  m.add_position(uniform.data(), uniform.data(), -1);  // 0
  const double kl_sharp = 0.1 * std::log(0.05 * 3) + 0.9 * std::log(0.9 * 3);
  const AbQuality q = m.result();
  EXPECT_NEAR(q.kl_mean, (0.5 * std::log(1.125) + kl_sharp) / 4, 1e-7);
  EXPECT_NEAR(q.kl_max, kl_sharp, 1e-6);
  EXPECT_EQ(q.kl_max_position, 2);
}

TEST(AbMetrics, Top1AgreementCountsMatchingArgmaxes) {
  AbMetrics m(4);
  const std::vector<float> t0{5, 1, 0, 0}, t1{0, 5, 1, 0}, t2{0, 0, 1, 5};
  m.add_position(t0.data(), t0.data(), -1);
  m.add_position(t1.data(), t1.data(), -1);
  m.add_position(t1.data(), t2.data(), -1);  // 1 vs 3
  m.add_position(t2.data(), t2.data(), -1);
  const AbQuality q = m.result();
  EXPECT_EQ(q.top1_agree, 3);
  EXPECT_DOUBLE_EQ(q.top1_agreement(), 0.75);
}

TEST(AbMetrics, PerplexityOfUniformLogitsIsTheVocabularySize) {
  for (int vocab : {1, 7, 262144}) {
    AbMetrics m(vocab);
    std::vector<float> logits(static_cast<size_t>(vocab), 3.25f);
    for (int p = 0; p < 5; ++p) m.add_position(logits.data(), logits.data(), p % vocab);
    EXPECT_NEAR(m.result().perplexity_a, vocab, vocab * 1e-9) << vocab;
    EXPECT_NEAR(m.result().perplexity_b, vocab, vocab * 1e-9) << vocab;
  }
}

TEST(AbMetrics, PerplexityOfKnownProbabilitiesSkipsUnknownNextTokens) {
  AbMetrics m(2);
  const auto a = logits_of_probs({0.75, 0.25}), b = logits_of_probs({0.5, 0.5});
  m.add_position(a.data(), b.data(), 0);   // A: 0.75
  m.add_position(a.data(), b.data(), 1);   // A: 0.25
  m.add_position(a.data(), b.data(), -1);  // the text ends here: no term
  const AbQuality q = m.result();
  EXPECT_EQ(q.positions, 3);
  EXPECT_EQ(q.scored_tokens, 2);
  EXPECT_NEAR(q.perplexity_a, 1.0 / std::sqrt(0.75 * 0.25), 1e-6);
  EXPECT_NEAR(q.perplexity_b, 2.0, 1e-6);
}

TEST(AbMetrics, LargeLogitsStayFiniteAndExact) {
  {
    AbMetrics m(2);
    const std::vector<float> a{1e4f, -1e4f}, b{-1e4f, 1e4f};
    m.add_position(a.data(), b.data(), 1);
    const AbQuality q = m.result();
    // p_A = (1, e^-2e4): KL = log p_A(0) - log p_B(0) = 0 - (-2e4)
    EXPECT_TRUE(std::isfinite(q.kl_mean));
    EXPECT_NEAR(q.kl_mean, 2e4, 2e4 * 1e-9);
    EXPECT_NEAR(q.nll_a, 2e4, 2e4 * 1e-9);  // -log p_A(1)
    EXPECT_TRUE(std::isinf(q.perplexity_a));  // e^20000 is past double range
    EXPECT_NEAR(q.perplexity_b, 1.0, 1e-12);
  }
  // Shifting every logit by 1e4 changes nothing.
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> dist(0.f, 2.f);
  std::vector<float> a(64), b(64), a_shift(64), b_shift(64);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = dist(rng), b[i] = dist(rng);
    // Exactly representable after the shift, so the shifted case is the same distribution.
    a[i] = std::round(a[i] * 64) / 64, b[i] = std::round(b[i] * 64) / 64;
    a_shift[i] = a[i] + 1e4f, b_shift[i] = b[i] + 1e4f;
  }
  AbMetrics plain(64), shifted(64);
  plain.add_position(a.data(), b.data(), 3);
  shifted.add_position(a_shift.data(), b_shift.data(), 3);
  // The shift costs only the rounding of log-sum-exp at magnitude 1e4 (ulp 2e-12).
  EXPECT_NEAR(shifted.result().kl_mean, plain.result().kl_mean, 1e-10);
  EXPECT_NEAR(shifted.result().nll_a, plain.result().nll_a, 1e-10);
  EXPECT_NEAR(plain.result().kl_mean, Reference::kl(a, b), 1e-9);
}

TEST(AbMetrics, MatchesIndependentReferenceOnRandomLogits) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> dist(0.f, 3.f);
  const int vocab = 512, positions = 25;
  AbMetrics m(vocab);
  double kl_sum = 0, kl_max = 0;
  std::vector<float> a(vocab), b(vocab);
  for (int p = 0; p < positions; ++p) {
    for (int i = 0; i < vocab; ++i) a[i] = dist(rng), b[i] = a[i] + 0.5f * dist(rng);
    m.add_position(a.data(), b.data(), -1);
    const double k = Reference::kl(a, b);
    kl_sum += k;
    kl_max = std::max(kl_max, k);
  }
  EXPECT_NEAR(m.result().kl_mean, kl_sum / positions, 1e-9);
  EXPECT_NEAR(m.result().kl_max, kl_max, 1e-9);
  EXPECT_GT(m.result().kl_mean, 0.01);
}

TEST(AbMetrics, BadInputIsAClearError) {
  EXPECT_THROW(AbMetrics(0), Error);
  AbMetrics m(3);
  const std::vector<float> ok{0, 1, 2};
  std::vector<float> bad{0, std::numeric_limits<float>::quiet_NaN(), 2};
  EXPECT_THROW(m.add_position(ok.data(), ok.data(), 3), Error);
  EXPECT_THROW(m.add_position(ok.data(), ok.data(), -2), Error);
  try {
    m.add_position(ok.data(), bad.data(), 0);
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite logit of token 1 at position 0 in B"), std::string::npos)
        << e.what();
  }
  bad[1] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(m.add_position(bad.data(), ok.data(), 0), Error);
  EXPECT_EQ(m.result().positions, 0);
}

TEST(AbMetrics, EmptyAccumulatorReportsNothing) {
  const AbQuality q = AbMetrics(10).result();
  EXPECT_EQ(q.positions, 0);
  EXPECT_EQ(q.kl_mean, 0.0);
  EXPECT_EQ(q.kl_max_position, -1);
  EXPECT_EQ(q.top1_agreement(), 0.0);
  EXPECT_EQ(q.scored_tokens, 0);
}

TEST(AbQuality, FirstDivergence) {
  AbQuality q;
  EXPECT_EQ(q.first_divergence(), -1);
  q.greedy_a = {1, 2, 3, 4};
  q.greedy_b = {1, 2, 3, 4};
  EXPECT_EQ(q.first_divergence(), -1);
  q.greedy_b = {1, 2, 3, 9};
  EXPECT_EQ(q.first_divergence(), 3);
  q.greedy_b = {7, 2, 3, 4};
  EXPECT_EQ(q.first_divergence(), 0);
  q.greedy_b = {1, 2};  // B stopped early (end of generation)
  EXPECT_EQ(q.first_divergence(), 2);
}

}  // namespace
}  // namespace swrun
