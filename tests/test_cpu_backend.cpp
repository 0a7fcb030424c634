// The CPU backend (the reference the GPU kernels are checked against) against fp64 evaluations of the definitions:
// attention with gpt-oss's sinks in dense and sliding layers, over several batches so that a sliding layer's ring
// wraps, with a negative control showing the sinks move the result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/common.h"

namespace swrun {
namespace {

struct Shape {
  int n_head = 4, n_head_kv = 2, head_dim = 8;
};

// fp64 attention of query position i, head h over keys 0 .. i (causal) within `policy`; sinks may be empty.
std::vector<double> reference_head(const Shape& s, const std::vector<float>& q_row, const std::vector<float>& keys,
                                   const std::vector<float>& values, int64_t i, int h, const AttnPolicy& policy,
                                   double scale, const std::vector<float>& sinks) {
  const int d = s.head_dim, kvh = h / (s.n_head / s.n_head_kv);
  const size_t kv_row = size_t(s.n_head_kv) * d;
  const int64_t lo = policy.windowed() ? std::max<int64_t>(0, i - policy.left) : 0;
  std::vector<double> score;
  for (int64_t j = lo; j <= i; ++j) {
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += double(q_row[size_t(h) * d + c]) * keys[size_t(j) * kv_row + kvh * d + c];
    score.push_back(dot * scale);
  }
  double denom = sinks.empty() ? 0.0 : std::exp(double(sinks[h]));
  for (double x : score) denom += std::exp(x);
  std::vector<double> out(d, 0.0);
  for (int64_t j = lo; j <= i; ++j) {
    const double w = std::exp(score[size_t(j - lo)]) / denom;
    for (int c = 0; c < d; ++c) out[c] += w * values[size_t(j) * kv_row + kvh * d + c];
  }
  return out;
}

class CpuAttention : public ::testing::Test {
 protected:
  Shape s_;
  std::mt19937_64 rng_{12345};
  std::unique_ptr<Backend> be_ = make_cpu_backend(2);

  std::vector<float> normal(size_t n, float stddev) {
    std::normal_distribution<float> dist(0.f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng_);
    return v;
  }
  Weight upload_sinks(const std::vector<float>& sinks) {
    GgufTensor t{"blk.0.attn_sinks.weight", uint32_t(GgmlType::F32), {int64_t(sinks.size())}, 0, sinks.data(),
                 sinks.size() * sizeof(float)};
    return be_->upload(t);
  }

  // Runs `total` positions through layer 0 in batches of `chunk` and returns the outputs of every position,
  // with the fp64 reference beside them.
  void run(const AttnPolicy& policy, int total, int chunk, const std::vector<float>& sinks, std::vector<float>* got,
           std::vector<double>* want) {
    const size_t q_row = size_t(s_.n_head) * s_.head_dim, kv_row = size_t(s_.n_head_kv) * s_.head_dim;
    const int32_t capacity = policy.windowed() ? policy.window_keys() + chunk : total;
    be_->init_kv({{capacity, s_.n_head_kv, s_.head_dim}});
    // Scores spread over a few units (the doubled scale), so that sinks of the same size change the weights.
    const std::vector<float> q = normal(total * q_row, 1.f), k = normal(total * kv_row, 1.f),
                             v = normal(total * kv_row, 1.f);
    const AttnParams p{s_.n_head, s_.n_head_kv, s_.head_dim, 2.f / std::sqrt(float(s_.head_dim)), policy,
                       /*softcap=*/0.f, sinks.empty() ? Weight{} : upload_sinks(sinks)};
    Buffer qb = be_->alloc(chunk * q_row), kb = be_->alloc(chunk * kv_row), vb = be_->alloc(chunk * kv_row),
           ob = be_->alloc(chunk * q_row);
    got->assign(total * q_row, NAN);
    want->clear();
    std::vector<int32_t> tokens(chunk, 0);
    for (int pos0 = 0; pos0 < total; pos0 += chunk) {
      const int n = std::min(chunk, total - pos0);
      be_->begin_batch(tokens.data(), pos0, n);
      std::copy_n(q.begin() + pos0 * q_row, n * q_row, qb.data);
      std::copy_n(k.begin() + pos0 * kv_row, n * kv_row, kb.data);
      std::copy_n(v.begin() + pos0 * kv_row, n * kv_row, vb.data);
      be_->attention(0, qb, kb, vb, ob, p);
      std::copy_n(ob.data, n * q_row, got->begin() + pos0 * q_row);
    }
    for (int i = 0; i < total; ++i) {
      const std::vector<float> q_i(q.begin() + i * q_row, q.begin() + (i + 1) * q_row);
      for (int h = 0; h < s_.n_head; ++h) {
        const std::vector<double> o = reference_head(s_, q_i, k, v, i, h, policy, p.scale, sinks);
        want->insert(want->end(), o.begin(), o.end());
      }
    }
  }

  static double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
    return worst;
  }
};

TEST_F(CpuAttention, SinksMatchTheDefinitionInDenseAndSlidingLayers) {
  // Sinks of the scores' size: some heads give the sink most of the weight, some little.
  const std::vector<float> sinks = {-1.5f, 0.f, 2.f, 4.f};
  for (const AttnPolicy& policy : {AttnPolicy::dense(), AttnPolicy::sliding(5), AttnPolicy::sliding(1)}) {
    SCOPED_TRACE(describe(policy));
    std::vector<float> got;
    std::vector<double> want;
    run(policy, 23, 7, sinks, &got, &want);
    EXPECT_LT(max_abs_diff(got, want), 2e-6);
  }
}

TEST_F(CpuAttention, WithoutSinksMatchesTheDefinition) {
  for (const AttnPolicy& policy : {AttnPolicy::dense(), AttnPolicy::sliding(4)}) {
    SCOPED_TRACE(describe(policy));
    std::vector<float> got;
    std::vector<double> want;
    run(policy, 19, 6, {}, &got, &want);
    EXPECT_LT(max_abs_diff(got, want), 2e-6);
  }
}

// Guards the tests above: the sinks move the outputs by far more than their tolerance, so a kernel that ignored
// them would fail there.
TEST_F(CpuAttention, SinksBite) {
  const std::vector<float> sinks = {-1.5f, 0.f, 2.f, 4.f};
  std::vector<float> with, without;
  std::vector<double> want_with, want_without;
  run(AttnPolicy::sliding(5), 23, 7, sinks, &with, &want_with);
  rng_.seed(12345);  // the same q, k, v
  run(AttnPolicy::sliding(5), 23, 7, {}, &without, &want_without);
  EXPECT_GT(max_abs_diff(with, want_without), 0.1);
}

// A sink far above every score takes all the weight: the output goes to zero, and nothing overflows.
TEST_F(CpuAttention, DominantSinkTakesAllTheWeight) {
  std::vector<float> got;
  std::vector<double> want;
  run(AttnPolicy::dense(), 9, 9, {200.f, 200.f, 200.f, 200.f}, &got, &want);
  for (float x : got) ASSERT_LT(std::fabs(x), 1e-30f);
}

TEST_F(CpuAttention, MisshapenSinksAreAnError) {
  std::vector<float> got;
  std::vector<double> want;
  EXPECT_THROW(run(AttnPolicy::dense(), 4, 4, {0.f, 1.f}, &got, &want), Error);
}

}  // namespace
}  // namespace swrun
