// The CPU backend (the reference the GPU kernels are checked against) against fp64 evaluations of the definitions:
// attention with gpt-oss's sinks in dense and sliding layers, over several batches so that a sliding layer's ring
// wraps, and Gemma 4's shared-KV layers; YaRN RoPE at the ends of its ramp; partial RoPE; gpt-oss's mixture-of-experts
// FFN with F32 and MXFP4 experts, and Gemma 4's (GeGLU experts, fused gate_up, per-expert scales, a router input of
// its own) with F32 and Q8_0 experts. Each has a negative control showing the feature moves the result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/dequant.h"
#include "runtime/gguf_writer.h"

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
    be_->init_kv({{capacity, s_.n_head_kv, s_.head_dim, kv_types_}});
    // Scores spread over a few units (the doubled scale), so that sinks of the same size change the weights.
    const std::vector<float> q = normal(total * q_row, 1.f), k = normal(total * kv_row, 1.f),
                             v = normal(total * kv_row, 1.f);
    // The reference reads the keys and values a cache of kv_types_ holds (reference_kv_types_: those, or f32).
    const std::vector<float> k_held = rounded(reference_kv_types_.k, k), v_held = rounded(reference_kv_types_.v, v);
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
        const std::vector<double> o = reference_head(s_, q_i, k_held, v_held, i, h, policy, p.scale, sinks);
        want->insert(want->end(), o.begin(), o.end());
      }
    }
  }

  // x as a KV cache of `type` holds it: quantized and dequantized row by row (unset: as is).
  std::vector<float> rounded(const std::optional<GgmlType>& type, const std::vector<float>& x) const {
    if (!type) return x;
    const int64_t row = int64_t(s_.n_head_kv) * s_.head_dim;
    std::vector<uint8_t> bytes(ggml_row_bytes(ggml_type_info(uint32_t(*type)), row));
    std::vector<float> out(x.size());
    for (size_t r = 0; r < x.size(); r += size_t(row)) {
      quantize_row(*type, x.data() + r, bytes.data(), row);
      dequantize_row(*type, bytes.data(), out.data() + r, row);
    }
    return out;
  }

  KvTypes kv_types_, reference_kv_types_;

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
// -ctk / -ctv: the cache holds each stored row rounded through its type, dense and sliding (the ring wraps), so
// attention equals the definition over those rows; against the unrounded rows the difference shows.
TEST_F(CpuAttention, KvCacheTypesHoldTheirRoundedRows) {
  s_.head_dim = 16;  // rows of 32 values: whole q8_0 / q4_0 blocks
  for (const KvTypes types : {KvTypes{GgmlType::Q8_0, GgmlType::Q8_0}, KvTypes{GgmlType::F16, GgmlType::Q4_0},
                              KvTypes{GgmlType::BF16, std::nullopt}}) {
    for (const AttnPolicy& policy : {AttnPolicy::dense(), AttnPolicy::sliding(5)}) {
      kv_types_ = reference_kv_types_ = types;
      std::vector<float> got;
      std::vector<double> want;
      run(policy, 23, 7, {}, &got, &want);
      EXPECT_LT(max_abs_diff(got, want), 2e-6);
      reference_kv_types_ = {};
      run(policy, 23, 7, {}, &got, &want);
      EXPECT_GT(max_abs_diff(got, want), 1e-4) << "the rounding must show against f32 rows";
    }
  }
  kv_types_ = {GgmlType::Q8_0, std::nullopt};
  s_.head_dim = 8;  // rows of 16: not whole blocks
  EXPECT_THROW(be_->init_kv({{8, s_.n_head_kv, s_.head_dim, kv_types_}}), Error);
}

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

// Gemma 4's shared-KV layers: layer 1 stores nothing (its k and v are NaN here) and attends over layer 0's cache,
// which holds the batch's keys by then; over batches that wrap layer 0's ring, with a window wider than layer 0's
// own (the cache is sized for its widest reader, DecoderModel::init_kv).
TEST_F(CpuAttention, SharedKvLayerAttendsOverTheEarlierLayersCache) {
  const int total = 23, chunk = 5;
  const size_t q_row = size_t(s_.n_head) * s_.head_dim, kv_row = size_t(s_.n_head_kv) * s_.head_dim;
  const AttnPolicy own = AttnPolicy::sliding(4), reader = AttnPolicy::sliding(9);
  be_->init_kv({{reader.window_keys() + chunk, s_.n_head_kv, s_.head_dim}, {0, s_.n_head_kv, s_.head_dim}});
  const std::vector<float> q0 = normal(total * q_row, 1.f), q1 = normal(total * q_row, 1.f),
                           k = normal(total * kv_row, 1.f), v = normal(total * kv_row, 1.f);
  const float scale = 2.f / std::sqrt(float(s_.head_dim));
  AttnParams p0{s_.n_head, s_.n_head_kv, s_.head_dim, scale, own, 0.f, Weight{}};
  AttnParams p1 = p0;
  p1.policy = reader;
  p1.kv_layer = 0;
  Buffer qb = be_->alloc(chunk * q_row), kb = be_->alloc(chunk * kv_row), vb = be_->alloc(chunk * kv_row),
         ob = be_->alloc(chunk * q_row);
  std::vector<float> got(total * q_row, NAN);
  std::vector<int32_t> tokens(chunk, 0);
  for (int pos0 = 0; pos0 < total; pos0 += chunk) {
    const int n = std::min(chunk, total - pos0);
    be_->begin_batch(tokens.data(), pos0, n);
    std::copy_n(q0.begin() + pos0 * q_row, n * q_row, qb.data);
    std::copy_n(k.begin() + pos0 * kv_row, n * kv_row, kb.data);
    std::copy_n(v.begin() + pos0 * kv_row, n * kv_row, vb.data);
    be_->attention(0, qb, kb, vb, ob, p0);
    std::copy_n(q1.begin() + pos0 * q_row, n * q_row, qb.data);
    std::fill_n(kb.data, n * kv_row, NAN);
    std::fill_n(vb.data, n * kv_row, NAN);
    be_->attention(1, qb, kb, vb, ob, p1);
    std::copy_n(ob.data, n * q_row, got.begin() + pos0 * q_row);
  }
  std::vector<double> want;
  for (int i = 0; i < total; ++i) {
    const std::vector<float> q_i(q1.begin() + i * q_row, q1.begin() + (i + 1) * q_row);
    for (int h = 0; h < s_.n_head; ++h) {
      const std::vector<double> o = reference_head(s_, q_i, k, v, i, h, reader, scale, {});
      want.insert(want.end(), o.begin(), o.end());
    }
  }
  EXPECT_LT(max_abs_diff(got, want), 2e-6);
  // A layer cannot read a cache that no earlier layer has written.
  p0.kv_layer = 1;
  EXPECT_THROW(be_->attention(0, qb, kb, vb, ob, p0), Error);
}

// ---------------------------------------------------------------------------------------------------------------
// YaRN RoPE: its two ends are plain RoPE. Pairs below the ramp keep their original angle, pairs above it take the
// linearly scaled one; both with YaRN's magnitude 1 + 0.1 ln(factor). In between, the angle lies between the two.

std::vector<float> rope_once(Backend& be, const RopeParams& p, const std::vector<float>& x, int32_t pos, int dim) {
  Buffer b = be.alloc(x.size());
  std::copy(x.begin(), x.end(), b.data);
  const int32_t token = 0;
  be.begin_batch(&token, pos, 1);
  be.rope(b, 1, dim, p);
  return std::vector<float>(b.data, b.data + b.count);
}

TEST(CpuRope, YarnEndsAreOriginalAndInterpolatedRope) {
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  const int dim = 32, half = dim / 2;
  std::vector<float> x(dim);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  RopeParams yarn;
  yarn.freq_base = 10000.f;
  yarn.freq_scale = 1.f / 32;
  yarn.style = RopeStyle::NeoX;
  yarn.yarn = true;
  yarn.yarn_low = 4;
  yarn.yarn_high = 10;
  RopeParams original = yarn, interpolated = yarn;
  original.yarn = interpolated.yarn = false;
  original.freq_scale = 1.f;
  const float magnitude = 1.f + 0.1f * std::log(32.f);
  original.attn_factor = interpolated.attn_factor = magnitude;
  const int32_t pos = 1000;
  const std::vector<float> got = rope_once(*be, yarn, x, pos, dim);
  const std::vector<float> low = rope_once(*be, original, x, pos, dim);
  const std::vector<float> high = rope_once(*be, interpolated, x, pos, dim);
  for (int i = 0; i < half; ++i) {
    SCOPED_TRACE("pair " + std::to_string(i));
    const std::vector<float>* want = i <= 4 ? &low : i >= 10 ? &high : nullptr;
    if (want) {
      EXPECT_NEAR(got[i], (*want)[i], 1e-5);
      EXPECT_NEAR(got[i + half], (*want)[i + half], 1e-5);
    }
    // The rotation keeps the pair's length, scaled by the magnitude, everywhere.
    EXPECT_NEAR(std::hypot(got[i], got[i + half]), magnitude * std::hypot(x[i], x[i + half]), 1e-4);
  }
  // The ramp bites: the two ends differ at this position, so matching both above is not trivial.
  EXPECT_GT(std::fabs(low[0] - high[0]) + std::fabs(low[half - 1] - high[half - 1]), 0.1);
}

// Partial RoPE rotates the first rot_dims values as a head of rot_dims would and leaves the others as they were.
TEST(CpuRope, PartialRopeRotatesTheFirstValuesOnly) {
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  const int dim = 32, rotated = 12;
  std::vector<float> x(dim);
  std::mt19937_64 rng(6);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  for (RopeStyle style : {RopeStyle::NeoX, RopeStyle::Normal}) {
    RopeParams partial, whole;
    partial.freq_base = whole.freq_base = 10000.f;
    partial.style = whole.style = style;
    partial.rot_dims = rotated;
    const int32_t pos = 37;
    const std::vector<float> got = rope_once(*be, partial, x, pos, dim);
    const std::vector<float> head(x.begin(), x.begin() + rotated);
    const std::vector<float> want = rope_once(*be, whole, head, pos, rotated);
    for (int i = 0; i < rotated; ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
    for (int i = rotated; i < dim; ++i) EXPECT_EQ(got[i], x[i]) << i;
    // The rotation bites: the rotated values moved.
    double moved = 0;
    for (int i = 0; i < rotated; ++i) moved += std::fabs(got[i] - x[i]);
    EXPECT_GT(moved, 0.5);
  }
  RopeParams too_many;
  too_many.rot_dims = dim + 2;
  EXPECT_THROW(rope_once(*be, too_many, x, 1, dim), Error);
}

// ---------------------------------------------------------------------------------------------------------------
// Mixture of experts

struct MoeShape {
  int dim = 64, ffn = 32, n_expert = 6, n_used = 3, tokens = 5;
};

// The definition (runtime/backend.h, MoeFfn) in fp64 on dequantized weights. `clamp` and `softmax_of_chosen` off
// give the variants a wrong implementation could compute (the negative controls).
struct MoeReference {
  MoeShape s;
  std::vector<float> router, router_bias, gate, up, down, gate_bias, up_bias, down_bias;  // fp32 values
  float alpha = 1.702f, limit = 7.f;

  std::vector<double> run(const std::vector<float>& x, bool clamp = true, bool softmax_of_chosen = true) const {
    std::vector<double> out(size_t(s.tokens) * s.dim, 0.0);
    for (int t = 0; t < s.tokens; ++t) {
      const float* xt = x.data() + size_t(t) * s.dim;
      std::vector<double> logit(s.n_expert);
      for (int e = 0; e < s.n_expert; ++e) {
        logit[e] = router_bias[e];
        for (int c = 0; c < s.dim; ++c) logit[e] += double(router[size_t(e) * s.dim + c]) * xt[c];
      }
      std::vector<int> order(s.n_expert);
      for (int e = 0; e < s.n_expert; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logit[a] > logit[b]; });
      const int weighted = softmax_of_chosen ? s.n_used : s.n_expert;
      double denom = 0;
      for (int k = 0; k < weighted; ++k) denom += std::exp(logit[order[k]]);
      for (int k = 0; k < s.n_used; ++k) {
        const int e = order[k];
        std::vector<double> h(s.ffn);
        for (int j = 0; j < s.ffn; ++j) {
          const size_t row = (size_t(e) * s.ffn + j) * s.dim;
          double g = gate_bias[size_t(e) * s.ffn + j], u = up_bias[size_t(e) * s.ffn + j];
          for (int c = 0; c < s.dim; ++c) {
            g += double(gate[row + c]) * xt[c];
            u += double(up[row + c]) * xt[c];
          }
          if (clamp) {
            g = std::min<double>(g, limit);
            u = std::clamp<double>(u, -limit, limit);
          }
          h[j] = g / (1.0 + std::exp(-double(alpha) * g)) * (u + 1.0);
        }
        const double w = std::exp(logit[e]) / denom;
        for (int c = 0; c < s.dim; ++c) {
          const size_t row = (size_t(e) * s.dim + c) * s.ffn;
          double y = down_bias[size_t(e) * s.dim + c];
          for (int j = 0; j < s.ffn; ++j) y += double(down[row + j]) * h[j];
          out[size_t(t) * s.dim + c] += w * y;
        }
      }
    }
    return out;
  }
};

class CpuMoe : public ::testing::Test {
 protected:
  MoeShape s_;
  std::mt19937_64 rng_{777};
  std::unique_ptr<Backend> be_ = make_cpu_backend(2);
  std::vector<std::vector<uint8_t>> storage_;  // the uploaded tensors' bytes (the CPU backend reads them in place)

  std::vector<float> normal(size_t n, float stddev) {
    std::normal_distribution<float> dist(0.f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng_);
    return v;
  }
  // Uploads `values` as `type` with shape ne, and replaces them with what the stored tensor holds.
  Weight upload(const std::string& name, GgmlType type, std::vector<int64_t> ne, std::vector<float>& values) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    auto& bytes = storage_.emplace_back(ggml_row_bytes(info, int64_t(values.size())));
    quantize_row(type, values.data(), bytes.data(), int64_t(values.size()));
    dequantize_row(type, bytes.data(), values.data(), int64_t(values.size()));
    GgufTensor t{name, uint32_t(type), std::move(ne), 0, bytes.data(), bytes.size()};
    return be_->upload(t);
  }

  // Random weights (expert matrices in `expert_type`): pre-activations spread well past the clamp limit.
  void make(GgmlType expert_type, MoeReference* ref, MoeFfn* f) {
    const int64_t d = s_.dim, ff = s_.ffn, ne = s_.n_expert;
    ref->s = s_;
    ref->router = normal(ne * d, 0.3f);
    ref->router_bias = normal(ne, 0.5f);
    ref->gate = normal(ne * ff * d, 0.6f);
    ref->up = normal(ne * ff * d, 0.6f);
    ref->down = normal(ne * d * ff, 0.2f);
    ref->gate_bias = normal(ne * ff, 1.f);
    ref->up_bias = normal(ne * ff, 1.f);
    ref->down_bias = normal(ne * d, 1.f);
    f->router = upload("router", GgmlType::F32, {d, ne}, ref->router);
    f->router_bias = upload("router_bias", GgmlType::F32, {ne}, ref->router_bias);
    f->gate = upload("gate_exps", expert_type, {d, ff, ne}, ref->gate);
    f->up = upload("up_exps", expert_type, {d, ff, ne}, ref->up);
    f->down = upload("down_exps", expert_type, {ff, d, ne}, ref->down);
    f->gate_bias = upload("gate_exps.bias", GgmlType::F32, {ff, ne}, ref->gate_bias);
    f->up_bias = upload("up_exps.bias", GgmlType::F32, {ff, ne}, ref->up_bias);
    f->down_bias = upload("down_exps.bias", GgmlType::F32, {d, ne}, ref->down_bias);
    f->n_expert = s_.n_expert;
    f->n_used = s_.n_used;
    f->ffn = s_.ffn;
  }

  std::vector<float> run(const MoeFfn& f, const std::vector<float>& x) {
    Buffer xb = be_->alloc(x.size()), out = be_->alloc(x.size());
    std::copy(x.begin(), x.end(), xb.data);
    std::fill(out.data, out.data + out.count, NAN);
    be_->moe(xb, s_.tokens, f, out);
    return std::vector<float>(out.data, out.data + out.count);
  }

  // max |got - want| relative to the largest |want|.
  static double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, std::fabs(got[i] - want[i]));
      scale = std::max(scale, std::fabs(want[i]));
    }
    return worst / scale;
  }
};

TEST_F(CpuMoe, MatchesTheDefinitionWithF32AndMxfp4Experts) {
  for (GgmlType type : {GgmlType::F32, GgmlType::MXFP4}) {
    SCOPED_TRACE(ggml_type_name(uint32_t(type)));
    MoeReference ref;
    MoeFfn f;
    make(type, &ref, &f);
    const std::vector<float> x = normal(size_t(s_.tokens) * s_.dim, 1.f);
    EXPECT_LT(rel_error(run(f, x), ref.run(x)), 1e-5);
  }
}

// Guards the test above: without the clamps, or with the softmax over every expert, the output moves far more than
// its tolerance; and the experts the router does not choose are never read (NaN weights there change nothing).
TEST_F(CpuMoe, ClampsRoutingAndUnchosenExpertsBite) {
  MoeReference ref;
  MoeFfn f;
  make(GgmlType::F32, &ref, &f);
  const std::vector<float> x = normal(size_t(s_.tokens) * s_.dim, 1.f);
  const std::vector<float> got = run(f, x);
  EXPECT_GT(rel_error(got, ref.run(x, /*clamp=*/false)), 1e-2);
  EXPECT_GT(rel_error(got, ref.run(x, true, /*softmax_of_chosen=*/false)), 1e-2);

  // Expert 0 never chosen (its router bias far below the others), its rows all NaN.
  ref.router_bias[0] = -1e4f;
  f.router_bias = upload("router_bias", GgmlType::F32, {s_.n_expert}, ref.router_bias);
  // The CPU backend reads an uploaded matrix in place: poisoning its bytes poisons what the backend sees.
  float* gate0 = reinterpret_cast<float*>(const_cast<void*>(f.gate.impl));
  std::fill(gate0, gate0 + size_t(s_.ffn) * s_.dim, NAN);
  const std::vector<float> masked = run(f, x);
  for (float v : masked) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(rel_error(masked, ref.run(x)), 1e-5);
}

TEST_F(CpuMoe, MisshapenExpertsAreAnError) {
  MoeReference ref;
  MoeFfn f;
  make(GgmlType::F32, &ref, &f);
  MoeFfn too_many = f;
  too_many.n_used = s_.n_expert + 1;
  const std::vector<float> x = normal(size_t(s_.tokens) * s_.dim, 1.f);
  EXPECT_THROW(run(too_many, x), Error);
  MoeFfn wrong_width = f;
  wrong_width.ffn = s_.ffn / 2;
  EXPECT_THROW(run(wrong_width, x), Error);
}

// Gemma 4's variant (MoeFfn with act GeluTanh, gate_up, down_scale, router_input) in fp64 on dequantized weights:
// the router reads its own input, expert e's gate is rows [2e * ffn, (2e + 1) * ffn) of gate_up and its up the next
// ffn, and its output is scaled by down_scale[e]. The options give what a wrong implementation could compute.
struct Gemma4MoeMistakes {
  bool route_from_x = false, swap_gate_up = false, no_down_scale = false;
};

struct Gemma4MoeReference {
  MoeShape s;
  std::vector<float> router, gate_up, down, down_scale;  // fp32 values

  std::vector<double> run(const std::vector<float>& x, const std::vector<float>& router_input,
                          Gemma4MoeMistakes m = {}) const {
    std::vector<double> out(size_t(s.tokens) * s.dim, 0.0);
    for (int t = 0; t < s.tokens; ++t) {
      const float* xt = x.data() + size_t(t) * s.dim;
      const float* rt = (m.route_from_x ? x : router_input).data() + size_t(t) * s.dim;
      std::vector<double> logit(s.n_expert, 0.0);
      for (int e = 0; e < s.n_expert; ++e)
        for (int c = 0; c < s.dim; ++c) logit[e] += double(router[size_t(e) * s.dim + c]) * rt[c];
      std::vector<int> order(s.n_expert);
      for (int e = 0; e < s.n_expert; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logit[a] > logit[b]; });
      double denom = 0;
      for (int k = 0; k < s.n_used; ++k) denom += std::exp(logit[order[k]]);
      for (int k = 0; k < s.n_used; ++k) {
        const int e = order[k];
        std::vector<double> h(s.ffn);
        for (int j = 0; j < s.ffn; ++j) {
          const size_t gate_row = (size_t(2 * e) * s.ffn + j) * s.dim, up_row = gate_row + size_t(s.ffn) * s.dim;
          double g = 0, u = 0;
          for (int c = 0; c < s.dim; ++c) {
            g += double(gate_up[gate_row + c]) * xt[c];
            u += double(gate_up[up_row + c]) * xt[c];
          }
          if (m.swap_gate_up) std::swap(g, u);
          h[j] = 0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g))) * u;
        }
        const double w = std::exp(logit[e]) / denom * (m.no_down_scale ? 1.0 : down_scale[e]);
        for (int c = 0; c < s.dim; ++c) {
          const size_t row = (size_t(e) * s.dim + c) * s.ffn;
          double y = 0;
          for (int j = 0; j < s.ffn; ++j) y += double(down[row + j]) * h[j];
          out[size_t(t) * s.dim + c] += w * y;
        }
      }
    }
    return out;
  }
};

class CpuGemma4Moe : public CpuMoe {
 protected:
  void make(GgmlType expert_type, Gemma4MoeReference* ref, MoeFfn* f) {
    const int64_t d = s_.dim, ff = s_.ffn, ne = s_.n_expert;
    ref->s = s_;
    ref->router = normal(ne * d, 0.3f);
    ref->gate_up = normal(ne * 2 * ff * d, 0.4f);
    ref->down = normal(ne * d * ff, 0.2f);
    std::uniform_real_distribution<float> scale(0.5f, 1.5f);
    for (int e = 0; e < ne; ++e) ref->down_scale.push_back(scale(rng_));
    f->router = upload("router", GgmlType::F32, {d, ne}, ref->router);
    f->gate_up = upload("gate_up_exps", expert_type, {d, 2 * ff, ne}, ref->gate_up);
    f->down = upload("down_exps", expert_type, {ff, d, ne}, ref->down);
    f->down_scale = upload("down_exps.scale", GgmlType::F32, {ne}, ref->down_scale);
    f->n_expert = s_.n_expert;
    f->n_used = s_.n_used;
    f->ffn = s_.ffn;
    f->act = MoeAct::GeluTanh;
  }

  // Runs f with its router reading `router_input`.
  std::vector<float> run_routed(MoeFfn f, const std::vector<float>& x, const std::vector<float>& router_input) {
    f.router_input = be_->alloc(router_input.size());
    std::copy(router_input.begin(), router_input.end(), f.router_input.data);
    return run(f, x);
  }
};

TEST_F(CpuGemma4Moe, MatchesTheDefinitionWithF32AndQ8_0Experts) {
  for (GgmlType type : {GgmlType::F32, GgmlType::Q8_0}) {
    SCOPED_TRACE(ggml_type_name(uint32_t(type)));
    Gemma4MoeReference ref;
    MoeFfn f;
    make(type, &ref, &f);
    const std::vector<float> x = normal(size_t(s_.tokens) * s_.dim, 1.f);
    const std::vector<float> router_input = normal(x.size(), 1.f);
    EXPECT_LT(rel_error(run_routed(f, x, router_input), ref.run(x, router_input)), 1e-5);
  }
}

// Guards the test above: routing from x, swapping the halves of gate_up or dropping the scales moves the output far
// more than its tolerance; separate gate and up tensors holding the same rows give the fused result.
TEST_F(CpuGemma4Moe, RouterInputGateUpHalvesAndScalesBite) {
  Gemma4MoeReference ref;
  MoeFfn f;
  make(GgmlType::F32, &ref, &f);
  const std::vector<float> x = normal(size_t(s_.tokens) * s_.dim, 1.f);
  const std::vector<float> router_input = normal(x.size(), 1.f);
  const std::vector<float> got = run_routed(f, x, router_input);
  EXPECT_GT(rel_error(got, ref.run(x, router_input, {.route_from_x = true})), 1e-2);
  EXPECT_GT(rel_error(got, ref.run(x, router_input, {.swap_gate_up = true})), 1e-2);
  EXPECT_GT(rel_error(got, ref.run(x, router_input, {.no_down_scale = true})), 1e-2);

  const size_t half = size_t(s_.ffn) * s_.dim;
  std::vector<float> gate, up;
  for (int e = 0; e < s_.n_expert; ++e) {
    const auto expert = ref.gate_up.begin() + ptrdiff_t(2 * e * half);
    gate.insert(gate.end(), expert, expert + ptrdiff_t(half));
    up.insert(up.end(), expert + ptrdiff_t(half), expert + ptrdiff_t(2 * half));
  }
  MoeFfn separate = f;
  separate.gate_up = Weight{};
  separate.gate = upload("gate_exps", GgmlType::F32, {s_.dim, s_.ffn, s_.n_expert}, gate);
  separate.up = upload("up_exps", GgmlType::F32, {s_.dim, s_.ffn, s_.n_expert}, up);
  EXPECT_LT(rel_error(run_routed(separate, x, router_input), ref.run(x, router_input)), 1e-5);

  MoeFfn wrong_scales = f;
  std::vector<float> too_few(size_t(s_.n_expert - 1), 1.f);
  wrong_scales.down_scale = upload("down_exps.scale", GgmlType::F32, {s_.n_expert - 1}, too_few);
  EXPECT_THROW(run_routed(wrong_scales, x, router_input), Error);
}

}  // namespace
}  // namespace swrun
