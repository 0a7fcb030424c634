// The CUDA backend's ops against simple fp64 references written here or against the CPU backend (the oracle), on
// fresh random inputs (the seed is printed on failure) with outputs poisoned (NaN) before every launch. Inputs are
// rounded to bf16 in the reference where the backend rounds them (weights, matmul inputs, q/k/v), so the
// tolerances measure the arithmetic, not the storage format. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/dequant.h"
#include "runtime/profile.h"
#include "tests/logit_rows.h"
#include "tests/quant_random_blocks.h"

namespace swrun {
namespace {

double to_bf16(double x) { return bf16_to_fp32(fp32_to_bf16(static_cast<float>(x))); }

// A host buffer of the CPU backend holding v.
Buffer cpu_copy(Backend& cpu, const std::vector<float>& v) {
  Buffer b = cpu.alloc(v.size());
  std::copy(v.begin(), v.end(), b.data);
  return b;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    seed_ = std::random_device{}();
    rng_.seed(seed_);
    be_ = make_cuda_backend(0);
  }

  std::vector<float> normal(size_t n, float sd = 1.f) {
    std::normal_distribution<float> d(0.f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng_);
    return v;
  }
  Buffer device_copy(const std::vector<float>& v) { return device_copy(*be_, v); }
  static Buffer device_copy(Backend& be, const std::vector<float>& v) {
    Buffer b = be.alloc(v.size());
    EXPECT_EQ(cudaMemcpy(b.data, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    return b;
  }
  Buffer poisoned(size_t n) {
    Buffer b = be_->alloc(n);
    poison(b);
    return b;
  }
  static void poison(Buffer b) { EXPECT_EQ(cudaMemset(b.data, 0xFF, b.count * sizeof(float)), cudaSuccess); }
  std::vector<float> fetch(Buffer b, size_t n) { return fetch(*be_, b, n); }
  static std::vector<float> fetch(Backend& be, Buffer b, size_t n) {
    std::vector<float> out(n);
    be.read(b, 0, n, out.data());
    be.synchronize();
    return out;
  }
  static Weight upload(Backend& be, const std::string& name, GgmlType type, std::vector<int64_t> ne,
                       const void* data, size_t nbytes) {
    GgufTensor t;
    t.name = name;
    t.type_id = static_cast<uint32_t>(type);
    t.ne = std::move(ne);
    t.offset = 0;
    t.data = data;
    t.nbytes = nbytes;
    return be.upload(t);
  }
  Weight upload_vector(const std::string& name, const std::vector<float>& v) {
    return upload(*be_, name, GgmlType::F32, {int64_t(v.size())}, v.data(), v.size() * 4);
  }
  // |got - want| <= atol + rtol * |want| everywhere, and no NaN left from the poison.
  void expect_close(const std::vector<float>& got, const std::vector<double>& want, double atol, double rtol,
                    const std::string& what) {
    ASSERT_EQ(got.size(), want.size());
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double err = std::fabs(double(got[i]) - want[i]);
      if (!(err <= atol + rtol * std::fabs(want[i]))) {
        if (bad++ < 5)
          ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", want " << want[i] << " (seed " << seed_
                        << ")";
      }
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " wrong (seed " << seed_ << ")";
  }

  uint32_t seed_ = 0;
  // Chunks of {6, 1, 1, 5, 1, 6, 1, 1, 6, 1, 6} rows (35 positions, so that a ring of 9 + 6 rows wraps) through one
  // layer per policy on both backends (their caches initialized by the caller), the same bf16-rounded q/k/v into
  // each (what the CUDA backend stores); the GPU's outputs, poisoned first, within 2e-2 of the CPU's.
  // params(layer, on_gpu) gives each call's AttnParams (weights such as sinks belong to one backend).
  void expect_attention_through_the_cache_matches_cpu(
      Backend& gpu, Backend& cpu, int n_head, int n_head_kv, int head_dim, const std::vector<AttnPolicy>& policies,
      const std::function<AttnParams(size_t layer, bool on_gpu)>& params) {
    const int max_batch = 6;
    const size_t row = size_t(n_head_kv) * head_dim, qrow = size_t(n_head) * head_dim;
    Buffer q = gpu.alloc(max_batch * qrow), k = gpu.alloc(max_batch * row), v = gpu.alloc(max_batch * row);
    Buffer out = gpu.alloc(max_batch * qrow), cpu_out = cpu.alloc(max_batch * qrow);
    auto bf16_normal = [&](size_t count) {
      std::vector<float> x = normal(count);
      for (float& e : x) e = float(to_bf16(e));
      return x;
    };
    int32_t pos = 0;
    for (int n : {6, 1, 1, 5, 1, 6, 1, 1, 6, 1, 6}) {
      const std::vector<float> qh = bf16_normal(n * qrow), kh = bf16_normal(n * row), vh = bf16_normal(n * row);
      EXPECT_EQ(cudaMemcpy(q.data, qh.data(), qh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(k.data, kh.data(), kh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(v.data, vh.data(), vh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      std::vector<int32_t> tokens(n, 0);
      gpu.begin_batch(tokens.data(), pos, n);
      cpu.begin_batch(tokens.data(), pos, n);
      for (size_t layer = 0; layer < policies.size(); ++layer) {
        poison(out);
        gpu.attention(int(layer), q, k, v, out, params(layer, true));
        cpu.attention(int(layer), cpu_copy(cpu, qh), cpu_copy(cpu, kh), cpu_copy(cpu, vh), cpu_out,
                      params(layer, false));
        expect_close(fetch(gpu, out, n * qrow), std::vector<double>(cpu_out.data, cpu_out.data + n * qrow), 2e-2,
                     2e-2, describe(policies[layer]) + " at pos " + std::to_string(pos) + " n=" + std::to_string(n));
      }
      pos += n;
    }
    ASSERT_EQ(pos, 35);
  }
  std::mt19937_64 rng_;
  std::unique_ptr<Backend> be_;
};

// Tables of any other name keep a bf16 copy; a row length the block decoders read (640) is looked up from the
// file's values, others (36) from the bf16 copy with the vector path or the scalar one.
TEST_F(CudaBackendTest, EmbeddingLooksUpScaledRows) {
  for (int64_t cols : {640, 36, 40}) {
    const int vocab = 50, n = 7;
    const float scale = 3.7f;
    std::vector<float> table = normal(size_t(vocab) * cols);
    Weight w = upload(*be_, "token_embd", GgmlType::F32, {cols, vocab}, table.data(), table.size() * 4);
    std::vector<int32_t> tokens(n);
    for (auto& t : tokens) t = int32_t(rng_() % vocab);
    be_->begin_batch(tokens.data(), 11, n);
    Buffer out = poisoned(size_t(n) * cols);
    be_->embed(w, scale, out);
    std::vector<double> want;
    for (int t = 0; t < n; ++t)
      for (int64_t c = 0; c < cols; ++c) {
        const float v = table[tokens[t] * cols + c];
        want.push_back(cols % 32 == 0 ? double(v * scale) : to_bf16(v) * scale);
      }
    expect_close(fetch(out, want.size()), want, 0, 1e-6, "embed cols=" + std::to_string(cols));

    tokens[3] = vocab;
    be_->begin_batch(tokens.data(), 0, n);
    EXPECT_THROW(be_->embed(w, scale, out), Error);
  }
}

TEST_F(CudaBackendTest, RmsNormRowsIncludingPerHeadRows) {
  struct Case { int64_t rows, cols; };
  // Warp-per-row (12 .. 1024 floats) and block-per-row shapes; 3 tokens x 4 heads of 256 is a per-head q norm.
  for (Case c : {Case{5, 640}, Case{12, 256}, Case{3, 12}, Case{4, 64}, Case{2, 2048}, Case{3, 5120}}) {
    std::vector<float> x = normal(size_t(c.rows * c.cols), 2.f), g = normal(size_t(c.cols));
    const float eps = 1e-6f;
    Weight w = upload_vector("norm", g);
    Buffer xd = device_copy(x);
    Buffer out = poisoned(x.size());
    be_->rmsnorm(xd, w, c.rows, eps, out);
    std::vector<double> want(x.size());
    for (int64_t r = 0; r < c.rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < c.cols; ++i) ss += double(x[r * c.cols + i]) * x[r * c.cols + i];
      const double inv = 1.0 / std::sqrt(ss / c.cols + eps);
      for (int64_t i = 0; i < c.cols; ++i) want[r * c.cols + i] = x[r * c.cols + i] * inv * g[i];
    }
    const std::string what = "rmsnorm " + std::to_string(c.rows) + "x" + std::to_string(c.cols);
    expect_close(fetch(out, x.size()), want, 1e-5, 1e-5, what);
    be_->rmsnorm(xd, w, c.rows, eps, xd);  // in place
    expect_close(fetch(xd, x.size()), want, 1e-5, 1e-5, what + " in place");
  }
}

TEST_F(CudaBackendTest, MatmulEveryWeightTypeAgainstCpuDequant) {
  const int64_t k = 512, n_out = 40;
  std::vector<GgmlType> types = {GgmlType::F32, GgmlType::F16, GgmlType::BF16};
  for (const auto& c : testing::quant_type_cases()) types.push_back(c.type);
  types.push_back(GgmlType::MXFP4);  // 17-byte blocks: rows of 272 bytes, slices dequantized to bf16 for 12 rows
  for (GgmlType type : types) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    SCOPED_TRACE(info.name);
    const int64_t blocks = n_out * k / (info.block_elems == 1 ? 32 : info.block_elems);
    std::vector<uint8_t> bytes = testing::random_blocks(type, blocks, rng_);
    std::vector<float> w(size_t(n_out * k));
    dequantize_row(type, bytes.data(), w.data(), n_out * k);
    Weight wd = upload(*be_, std::string("w.") + info.name, type, {k, n_out}, bytes.data(), bytes.size());
    ASSERT_EQ(wd.rows, n_out);
    ASSERT_EQ(wd.cols, k);
    for (int64_t rows : {1, 5, 12}) {  // quantized GEMV up to 8 rows, cuBLAS on dequantized slices beyond
      std::vector<float> x = normal(size_t(rows * k));
      Buffer out = poisoned(size_t(rows * n_out));
      be_->matmul(device_copy(x), wd, rows, out);
      std::vector<float> got = fetch(out, out.count);
      size_t bad = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < n_out; ++o) {
          double sum = 0, mag = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double p = to_bf16(x[r * k + i]) * to_bf16(w[o * k + i]);
            sum += p;
            mag += std::fabs(p);
          }
          const double g = got[r * n_out + o];
          if (!(std::fabs(g - sum) <= 2e-3 * mag + 1e-30) && bad++ < 5)
            ADD_FAILURE() << "row " << r << " out " << o << ": got " << g << ", want " << sum << " (seed " << seed_
                          << ")";
        }
      EXPECT_EQ(bad, 0u) << "rows=" << rows;
    }
  }
}

// One-row matmuls (decode steps) take the quantized GEMV over the file's values where the row length is a
// multiple of 32 (640, 2048, 1024, and 640 with an unaligned x), else the bf16 GEMV when the row length is a
// multiple of 8 and x is 16-byte aligned (24, 4104), cuBLAS with a bf16 copy of x otherwise. The GEMVs keep x in
// fp32, so they are held to a tolerance that a bf16-rounded x would miss; the shapes cover every register-chunk
// count of the bf16 GEMV, its uncached long-row loop and grids that stride over more rows than they have warps.
TEST_F(CudaBackendTest, MatmulOfOneRowAcrossShapes) {
  struct Case { int64_t cols, n_out; size_t x_offset; bool gemv; };
  for (Case c : {Case{640, 20011, 0, true}, Case{2048, 300, 0, true}, Case{24, 77, 0, true}, Case{1024, 65, 0, true},
                 Case{4104, 50, 0, true}, Case{36, 40, 0, false}, Case{640, 33, 1, false}}) {
    SCOPED_TRACE("cols " + std::to_string(c.cols) + " n_out " + std::to_string(c.n_out) + " x offset " +
                 std::to_string(c.x_offset));
    std::vector<uint16_t> w(size_t(c.cols * c.n_out));
    std::normal_distribution<float> d(0.f, 1.f);
    for (uint16_t& v : w) v = fp32_to_bf16(d(rng_));
    Weight wd = upload(*be_, "w", GgmlType::BF16, {c.cols, c.n_out}, w.data(), w.size() * 2);
    std::vector<float> x = normal(size_t(c.cols) + c.x_offset);
    Buffer xd = device_copy(x);
    Buffer out = poisoned(size_t(c.n_out));
    be_->matmul({xd.data + c.x_offset, size_t(c.cols)}, wd, 1, out);
    const std::vector<float> got = fetch(out, out.count);
    size_t bad = 0;
    for (int64_t o = 0; o < c.n_out; ++o) {
      double sum = 0, mag = 0;
      for (int64_t i = 0; i < c.cols; ++i) {
        const double p = double(x[c.x_offset + i]) * bf16_to_fp32(w[o * c.cols + i]);
        sum += p;
        mag += std::fabs(p);
      }
      const double tol = (c.gemv ? 3e-5 : 4e-3) * mag;
      if (!(std::fabs(got[o] - sum) <= tol) && bad++ < 5)
        ADD_FAILURE() << "out " << o << ": got " << got[o] << ", want " << sum << " (seed " << seed_ << ")";
    }
    EXPECT_EQ(bad, 0u);
  }
}

TEST_F(CudaBackendTest, RopeBothStylesAtLaterPositions) {
  struct Case { RopeStyle style; float base, scale; int head_dim; int32_t pos0; };
  for (Case c : {Case{RopeStyle::Normal, 10000.f, 0.5f, 64, 37}, Case{RopeStyle::NeoX, 1e6f, 1.f, 256, 70001},
                 Case{RopeStyle::NeoX, 10000.f, 0.125f, 128, 5}, Case{RopeStyle::Normal, 500000.f, 1.f, 256, 4099}}) {
    const int n = 3, heads = 4;
    std::vector<int32_t> tokens(n, 0);
    be_->begin_batch(tokens.data(), c.pos0, n);
    std::vector<float> x = normal(size_t(n) * heads * c.head_dim);
    Buffer xd = device_copy(x);
    be_->rope(xd, heads, c.head_dim, RopeParams{.freq_base = c.base, .freq_scale = c.scale, .style = c.style});
    std::vector<double> want(x.size());
    for (int t = 0; t < n; ++t)
      for (int h = 0; h < heads; ++h) {
        const size_t base = (size_t(t) * heads + h) * c.head_dim;
        for (int i = 0; i < c.head_dim / 2; ++i) {
          const double theta = double(c.pos0 + t) * c.scale * std::pow(double(c.base), -2.0 * i / c.head_dim);
          const size_t a = c.style == RopeStyle::Normal ? base + 2 * i : base + i;
          const size_t b = c.style == RopeStyle::Normal ? a + 1 : a + c.head_dim / 2;
          want[a] = x[a] * std::cos(theta) - x[b] * std::sin(theta);
          want[b] = x[a] * std::sin(theta) + x[b] * std::cos(theta);
        }
      }
    expect_close(fetch(xd, x.size()), want, 2e-6, 2e-6, "rope pos0=" + std::to_string(c.pos0));
  }
}

TEST_F(CudaBackendTest, GatedActivationsAndAdd) {
  for (size_t offset : {0, 1}) {  // offset 1: buffers not 16-byte aligned
    const size_t count = 1003;
    for (GatedAct act : {GatedAct::GeluTanh, GatedAct::Silu}) {
      std::vector<float> gate = normal(count + offset, 3.f), up = normal(count + offset);
      Buffer gd = device_copy(gate), ud = device_copy(up);
      be_->gated_act({gd.data + offset, count}, {ud.data + offset, count}, count, act);
      std::vector<double> want(gate.begin(), gate.end());
      for (size_t i = offset; i < count + offset; ++i) {
        const double g = gate[i];
        const double a = act == GatedAct::Silu
                             ? g / (1 + std::exp(-g))
                             : 0.5 * g * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (g + 0.044715 * g * g * g)));
        want[i] = a * up[i];
      }
      expect_close(fetch(gd, gate.size()), want, 1e-6, 1e-5, act == GatedAct::Silu ? "silu" : "gelu_tanh");
    }
    std::vector<float> x = normal(count + offset), y = normal(count + offset);
    Buffer xd = device_copy(x), yd = device_copy(y);
    be_->add({xd.data + offset, count}, {yd.data + offset, count}, count);
    std::vector<double> want(x.begin(), x.end());
    for (size_t i = offset; i < count + offset; ++i) want[i] = double(x[i]) + y[i];
    expect_close(fetch(xd, x.size()), want, 1e-6, 1e-6, "add");
  }
}

// fp64 attention over the full history of bf16-rounded keys: what the cache (dense or ring) must reproduce.
std::vector<double> reference_attention(const std::vector<float>& q, const std::vector<double>& k_hist,
                                        const std::vector<double>& v_hist, int32_t pos0, int n, const AttnParams& p) {
  const int hd = p.head_dim, group = p.n_head / p.n_head_kv;
  const int64_t kv_len = int64_t(pos0) + n;
  std::vector<double> out(size_t(n) * p.n_head * hd, 0.0);
  for (int t = 0; t < n; ++t) {
    const int64_t i = pos0 + t;
    const int64_t first = p.policy.windowed() ? std::max<int64_t>(0, i - p.policy.left) : 0;
    const int64_t last = std::min<int64_t>(kv_len - 1, i + p.policy.right);
    for (int h = 0; h < p.n_head; ++h) {
      const int kvh = h / group;
      std::vector<double> s;
      double mx = -1e300;
      for (int64_t j = first; j <= last; ++j) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += to_bf16(q[(size_t(t) * p.n_head + h) * hd + d]) * k_hist[(size_t(j) * p.n_head_kv + kvh) * hd + d];
        s.push_back(dot * p.scale);
        mx = std::max(mx, s.back());
      }
      double den = 0;
      for (double& e : s) den += (e = std::exp(e - mx));
      for (int64_t j = first; j <= last; ++j)
        for (int d = 0; d < hd; ++d)
          out[(size_t(t) * p.n_head + h) * hd + d] +=
              s[j - first] / den * v_hist[(size_t(j) * p.n_head_kv + kvh) * hd + d];
    }
  }
  return out;
}

TEST_F(CudaBackendTest, AttentionThroughTheCacheIncludingRingWrap) {
  struct Shape { int n_head, n_head_kv, head_dim; };
  for (Shape sh : {Shape{4, 2, 64}, Shape{4, 1, 256}, Shape{8, 1, 128}}) {
    SCOPED_TRACE("heads " + std::to_string(sh.n_head) + "/" + std::to_string(sh.n_head_kv) + " x " +
                 std::to_string(sh.head_dim));
    const int total = 45, max_batch = 6;
    const std::vector<AttnPolicy> policies = {AttnPolicy::dense(), AttnPolicy::sliding(7), AttnPolicy::dense_naive(),
                                              AttnPolicy{AttnKind::Sliding, 3, 2}, AttnPolicy::sliding(1)};
    std::vector<KvLayerSpec> specs;
    for (const AttnPolicy& pol : policies)
      specs.push_back({pol.windowed() ? pol.left + max_batch : total, sh.n_head_kv, sh.head_dim});
    auto be = make_cuda_backend(0);
    be->init_kv(specs);
    const size_t row = size_t(sh.n_head_kv) * sh.head_dim, qrow = size_t(sh.n_head) * sh.head_dim;
    Buffer q = be->alloc(max_batch * qrow), k = be->alloc(max_batch * row), v = be->alloc(max_batch * row);
    Buffer out = be->alloc(max_batch * qrow);
    std::vector<double> k_hist, v_hist;
    int32_t pos = 0;
    // Prefill chunks, then single-token decode steps (the decode kernel), then a chunk again; the rings of
    // 7..11 rows wrap several times over 45 positions.
    for (int n : {6, 5, 1, 1, 1, 6, 1, 3, 1, 1, 6, 1, 1, 1, 1, 6, 3}) {
      std::vector<float> qh = normal(n * qrow), kh = normal(n * row), vh = normal(n * row);
      for (float x : kh) k_hist.push_back(to_bf16(x));
      for (float x : vh) v_hist.push_back(to_bf16(x));
      EXPECT_EQ(cudaMemcpy(q.data, qh.data(), qh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(k.data, kh.data(), kh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(v.data, vh.data(), vh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      std::vector<int32_t> tokens(n, 0);
      be->begin_batch(tokens.data(), pos, n);
      for (size_t layer = 0; layer < policies.size(); ++layer) {
        AttnParams p{sh.n_head, sh.n_head_kv, sh.head_dim, 1.f / std::sqrt(float(sh.head_dim)), policies[layer]};
        poison(out);
        be->attention(int(layer), q, k, v, out, p);
        expect_close(fetch(*be, out, n * qrow), reference_attention(qh, k_hist, v_hist, pos, n, p), 2e-2, 2e-2,
                     describe(policies[layer]) + " at pos " + std::to_string(pos) + " n=" + std::to_string(n));
      }
      pos += n;
    }
    ASSERT_EQ(pos, total);
  }
}

TEST_F(CudaBackendTest, AttentionRefusesWhatTheCacheCannotHold) {
  be_->init_kv({{8, 1, 64}, {8, 1, 64}});
  Buffer q = be_->alloc(4 * 64), k = be_->alloc(4 * 64), v = be_->alloc(4 * 64), out = be_->alloc(4 * 64);
  std::vector<int32_t> tokens(4, 0);
  be_->begin_batch(tokens.data(), 6, 4);  // keys 0..9 do not fit 8 rows
  EXPECT_THROW(be_->attention(0, q, k, v, out, {1, 1, 64, 1.f, AttnPolicy::dense()}), Error);
  EXPECT_THROW(be_->attention(0, q, k, v, out, {1, 1, 64, 1.f, AttnPolicy::dense_naive()}), Error);
  EXPECT_THROW(be_->attention(1, q, k, v, out, {1, 1, 64, 1.f, AttnPolicy::sliding(6)}), Error);  // 5 + 4 rows
  EXPECT_NO_THROW(be_->attention(1, q, k, v, out, {1, 1, 64, 1.f, AttnPolicy::sliding(5)}));     // 4 + 4 rows
  EXPECT_THROW(be_->attention(2, q, k, v, out, {1, 1, 64, 1.f, AttnPolicy::dense()}), Error);    // no layer 2
}

TEST_F(CudaBackendTest, KvCacheTooLargeIsAClearError) {
  try {
    be_->init_kv({{1 << 30, 8, 256}});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache needs"), std::string::npos) << e.what();
  }
  be_->init_kv({{128, 2, 64}});
  EXPECT_EQ(be_->kv_bytes(), size_t(2 * 128 * 2 * 64 * 2));
  EXPECT_GE(be_->peak_memory_bytes(), be_->kv_bytes());
}

TEST_F(CudaBackendTest, UnsupportedTensorTypeIsAClearError) {
  std::vector<uint8_t> bytes(64);
  GgufTensor t;
  t.name = "blk.0.odd";
  t.type_id = 999;
  t.ne = {32};
  t.offset = 0;
  t.data = bytes.data();
  t.nbytes = bytes.size();
  EXPECT_THROW(be_->upload(t), Error);
}

// Every SWRUN_UPLOAD path (runtime/cuda/host_upload.h) delivers the file's bytes: a BF16 matrix of 9 MB (several
// pinned chunks, a device allocation of its own), a small Q4_K matrix and an F32 vector (sharing an allocation),
// all at unaligned host addresses, read back exactly through a one-hot matmul (the raw blocks' GEMV for one row,
// cuBLAS on the BF16 bytes or a dequantized bf16 slice for 12) and a bias add.
TEST_F(CudaBackendTest, EveryUploadPathDeliversTheFileBytes) {
  const int64_t big_cols = 4096, big_rows = 1100, q_cols = 256, q_rows = 24, vec = 640;
  std::vector<uint8_t> q4k = testing::random_blocks(GgmlType::Q4_K, q_rows * q_cols / 256, rng_);
  std::vector<float> q_want(size_t(q_rows * q_cols));
  dequantize_row(GgmlType::Q4_K, q4k.data(), q_want.data(), q_rows * q_cols);
  std::vector<uint16_t> big(size_t(big_cols * big_rows));
  std::normal_distribution<float> d(0.f, 1.f);
  for (uint16_t& v : big) v = fp32_to_bf16(d(rng_));
  const std::vector<float> bias = normal(size_t(vec));
  // One host image, each tensor at an odd offset, as tensors lie in a file mapping.
  std::vector<uint8_t> image(big.size() * 2 + q4k.size() + bias.size() * 4 + 64);
  const size_t big_at = 3, q_at = big_at + big.size() * 2 + 5, bias_at = q_at + q4k.size() + 7;
  std::memcpy(image.data() + big_at, big.data(), big.size() * 2);
  std::memcpy(image.data() + q_at, q4k.data(), q4k.size());
  std::memcpy(image.data() + bias_at, bias.data(), bias.size() * 4);

  for (const char* path : {"pageable", "pinned", "register"}) {
    SCOPED_TRACE(path);
    ASSERT_EQ(setenv("SWRUN_UPLOAD", path, 1), 0);
    auto be = make_cuda_backend(0);
    unsetenv("SWRUN_UPLOAD");
    Weight w_big = upload(*be, "big", GgmlType::BF16, {big_cols, big_rows}, image.data() + big_at, big.size() * 2);
    Weight w_q = upload(*be, "q", GgmlType::Q4_K, {q_cols, q_rows}, image.data() + q_at, q4k.size());
    Weight w_bias = upload(*be, "bias", GgmlType::F32, {vec}, image.data() + bias_at, bias.size() * 4);

    struct Check { const Weight* w; int64_t rows, cols; std::function<float(int64_t, int64_t)> at; };
    for (const Check& c : {Check{&w_big, big_rows, big_cols, [&](int64_t o, int64_t i) {
                             return bf16_to_fp32(big[size_t(o * big_cols + i)]); }},
                           Check{&w_q, q_rows, q_cols, [&](int64_t o, int64_t i) {
                             return q_want[size_t(o * q_cols + i)]; }}}) {
      SCOPED_TRACE(c.w->name);
      for (int64_t rows : {1, 12}) {
        // Row r of x picks column (r * 37) % cols, so out[r, o] = W[o, that column].
        std::vector<float> x(size_t(rows * c.cols), 0.f);
        for (int64_t r = 0; r < rows; ++r) x[size_t(r * c.cols + (r * 37) % c.cols)] = 1.f;
        Buffer out = be->alloc(size_t(rows * c.rows));
        poison(out);
        be->matmul(device_copy(*be, x), *c.w, rows, out);
        const std::vector<float> got = fetch(*be, out, out.count);
        size_t bad = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < c.rows; ++o) {
            // The bf16 slice of a Q4_K matrix (12 rows) rounds its values to bf16, within one bf16 step of the
            // CPU's rounding; the raw blocks' decoders and BF16 weights give the file's values to fp32 rounding.
            const bool rounded = rows > 1 && c.w == &w_q;
            const float want = rounded ? float(to_bf16(c.at(o, (r * 37) % c.cols))) : c.at(o, (r * 37) % c.cols);
            const float tol = (rounded ? 1.f / 128 : 1e-6f) * std::fabs(want);
            if (!(std::fabs(got[size_t(r * c.rows + o)] - want) <= tol) && bad++ < 5)
              ADD_FAILURE() << "rows " << rows << ": out[" << r << ", " << o << "] = " << got[size_t(r * c.rows + o)]
                            << ", want " << want << " (seed " << seed_ << ")";
          }
        EXPECT_EQ(bad, 0u) << "rows " << rows;
      }
    }
    Buffer x = device_copy(*be, std::vector<float>(size_t(vec), 0.f));
    be->add_bias(x, w_bias, 1);
    EXPECT_EQ(fetch(*be, x, size_t(vec)), bias);
  }
}

TEST_F(CudaBackendTest, UncapturableStepFallsBackToPlainLaunches) {
  const int hd = 64, steps = 6;
  be_->init_kv({{steps, 1, hd}});
  Buffer q = be_->alloc(hd), k = be_->alloc(hd), v = be_->alloc(hd), out = be_->alloc(hd);
  const AttnParams p{1, 1, hd, 0.125f, AttnPolicy::dense_naive()};  // sizes its scores on the host: no graph
  std::vector<double> k_hist, v_hist;
  for (int32_t pos = 0; pos < steps; ++pos) {
    std::vector<float> qh = normal(hd), kh = normal(hd), vh = normal(hd), got(hd, NAN);
    for (float x : kh) k_hist.push_back(to_bf16(x));
    for (float x : vh) v_hist.push_back(to_bf16(x));
    EXPECT_EQ(cudaMemcpy(q.data, qh.data(), hd * 4, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(k.data, kh.data(), hd * 4, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.data, vh.data(), hd * 4, cudaMemcpyHostToDevice), cudaSuccess);
    const bool from_graph = be_->run_captured(7, [&] {
      const int32_t token = 0;
      be_->begin_batch(&token, pos, 1);
      be_->attention(0, q, k, v, out, p);
      be_->read(out, 0, hd, got.data());
      be_->synchronize();
    });
    EXPECT_FALSE(from_graph);
    expect_close(got, reference_attention(qh, k_hist, v_hist, pos, 1, p), 2e-2, 2e-2,
                 "dense-naive step at pos " + std::to_string(pos));
  }
}

// ---- the seam for the next architectures (weight row views, bias, softcaps, LongRoPE), against the CPU backend ----

// Fused QKV: matmuls through row views of one matrix equal the same rows of the full matmul (on the GPU) and the
// CPU backend's matmul through its own views of the same bytes.
TEST_F(CudaBackendTest, WeightRowsOfAFusedMatrixMultiplyLikeTheirRowsOfTheWhole) {
  auto cpu = make_cpu_backend(2);
  const int64_t k = 256, q_rows = 64, kv_rows = 32, total = q_rows + 2 * kv_rows;
  struct Slice { int64_t first, count; };
  const Slice slices[] = {{0, q_rows}, {q_rows, kv_rows}, {q_rows + kv_rows, kv_rows}, {5, 11}, {total - 1, 1}};
  for (GgmlType type : {GgmlType::BF16, GgmlType::Q8_0, GgmlType::F16}) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    SCOPED_TRACE(info.name);
    const std::vector<uint8_t> bytes = testing::random_blocks(type, total * k / 32, rng_);  // the CPU keeps a pointer
    std::vector<float> w(size_t(total * k));
    dequantize_row(type, bytes.data(), w.data(), total * k);
    const Weight fused = upload(*be_, "blk.0.attn_qkv", type, {k, total}, bytes.data(), bytes.size());
    const Weight fused_cpu = upload(*cpu, "blk.0.attn_qkv", type, {k, total}, bytes.data(), bytes.size());
    for (int64_t rows : {1, 5}) {  // GEMV and cuBLAS
      const std::vector<float> x = normal(size_t(rows * k));
      Buffer full = poisoned(size_t(rows * total));
      be_->matmul(device_copy(x), fused, rows, full);
      const std::vector<float> full_out = fetch(full, full.count);
      for (Slice sl : slices) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " of the input, weight rows " + std::to_string(sl.first) +
                     ".." + std::to_string(sl.first + sl.count - 1));
        const Weight view = be_->weight_rows(fused, sl.first, sl.count);
        const Weight view_cpu = cpu->weight_rows(fused_cpu, sl.first, sl.count);
        ASSERT_EQ(view.rows, sl.count);
        ASSERT_EQ(view.cols, k);
        Buffer out = poisoned(size_t(rows * sl.count));
        be_->matmul(device_copy(x), view, rows, out);
        const std::vector<float> got = fetch(out, out.count);
        Buffer out_cpu = cpu->alloc(size_t(rows * sl.count));
        cpu->matmul(cpu_copy(*cpu, x), view_cpu, rows, out_cpu);
        size_t bad = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < sl.count; ++o) {
            double mag = 0;
            for (int64_t i = 0; i < k; ++i) mag += std::fabs(double(x[r * k + i]) * w[(sl.first + o) * k + i]);
            const double g = got[r * sl.count + o], whole = full_out[r * total + sl.first + o];
            const double c = out_cpu.data[r * sl.count + o];
            // The same rows of the same product: only the summation order may differ. The CPU keeps x in fp32.
            if (!(std::fabs(g - whole) <= 1e-5 * mag + 1e-30) && bad++ < 5)
              ADD_FAILURE() << "row " << r << " out " << o << ": view " << g << ", full matmul " << whole << " (seed "
                            << seed_ << ")";
            if (!(std::fabs(g - c) <= 4e-3 * mag + 1e-30) && bad++ < 5)
              ADD_FAILURE() << "row " << r << " out " << o << ": cuda " << g << ", cpu " << c << " (seed " << seed_
                            << ")";
          }
        EXPECT_EQ(bad, 0u);
      }
    }
    EXPECT_THROW(be_->weight_rows(fused, total - 3, 4), Error);
    EXPECT_THROW(be_->weight_rows(fused, -1, 2), Error);
    EXPECT_THROW(be_->weight_rows(fused, 0, 0), Error);
  }
  EXPECT_THROW(be_->weight_rows(upload_vector("norm", normal(64)), 0, 1), Error);
}

// Prefill GEMMs read a bf16 rounding of their input that the op producing it wrote beside it (norms, the gated
// activation) or that the first GEMM cast; later GEMMs on the same buffer reuse it. The same op sequence runs on
// both backends, and every GEMM must see its input as it is at that moment: after an add over it, a GEMM written
// over its own input, a residual step, and with the rounding of one buffer standing while another is multiplied.
TEST_F(CudaBackendTest, PrefillGemmsReadTheirInputAsItIsNow) {
  auto cpu = make_cpu_backend(2);
  const int64_t rows = 12, k = 128, n = 96;  // more rows than the quantized GEMV takes: cuBLAS on bf16 copies
  struct Pair {
    Buffer gpu, cpu;
  };
  auto both = [&](const std::vector<float>& v) { return Pair{device_copy(v), cpu_copy(*cpu, v)}; };
  struct Matrix {
    Weight gpu, cpu;
    std::vector<float> w;
  };
  auto matrix = [&](const std::string& name, int64_t out_rows, int64_t cols) {
    Matrix m;
    m.w = normal(size_t(out_rows * cols));
    m.gpu = upload(*be_, name, GgmlType::F32, {cols, out_rows}, m.w.data(), m.w.size() * 4);
    m.cpu = upload(*cpu, name, GgmlType::F32, {cols, out_rows}, m.w.data(), m.w.size() * 4);
    return m;
  };
  auto vector = [&](const std::string& name, int64_t len) {
    const std::vector<float> w = normal(size_t(len), 0.5f);
    return std::make_pair(upload(*be_, name, GgmlType::F32, {len}, w.data(), w.size() * 4),
                          upload(*cpu, name, GgmlType::F32, {len}, w.data(), w.size() * 4));
  };
  const Matrix w1 = matrix("blk.0.attn_q.weight", n, k), w2 = matrix("blk.0.attn_k.weight", n, k);
  const Matrix w_sq = matrix("blk.0.attn_output.weight", k, k), w_down = matrix("blk.0.ffn_down.weight", k, n);
  const auto norm = vector("blk.0.attn_norm.weight", k), post = vector("blk.0.post_attention_norm.weight", k);
  Pair x = both(normal(size_t(rows * k))), xn = both(std::vector<float>(size_t(rows * k)));
  Pair y = both(normal(size_t(rows * k))), gate = both(normal(size_t(rows * n))), up = both(normal(size_t(rows * n)));
  int step = 0;
  // got (the GPU's rows x w.rows products of in and w) against want (the CPU's), each within tolerance times
  // sum |in_i w_i|, which bounds what the bf16 roundings of in and w can move a product.
  auto expect_products_close = [&](const std::vector<float>& got, const float* want, const float* in,
                                   const Matrix& w, double tolerance) {
    const int64_t cols = w.gpu.cols, outs = w.gpu.rows;
    size_t bad = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < outs; ++o) {
        double mag = 0;
        for (int64_t i = 0; i < cols; ++i) mag += std::fabs(double(in[r * cols + i]) * w.w[o * cols + i]);
        const double err = std::fabs(double(got[r * outs + o]) - want[r * outs + o]);
        if (!(err <= tolerance * mag + 1e-30) && bad++ < 5)
          ADD_FAILURE() << "row " << r << " out " << o << ": cuda " << got[r * outs + o] << ", cpu "
                        << want[r * outs + o] << " (seed " << seed_ << ")";
      }
    EXPECT_EQ(bad, 0u);
  };
  // out = in @ w^T on both backends (the CPU through a copy when out is in), compared at once.
  auto matmul_both = [&](Pair in, const Matrix& w, Pair out, const char* what, double tolerance = 4e-3) {
    SCOPED_TRACE(std::string("step ") + std::to_string(++step) + ": " + what);
    const int64_t outs = w.gpu.rows;
    const std::vector<float> in_now(in.cpu.data, in.cpu.data + rows * w.gpu.cols);
    be_->matmul(in.gpu, w.gpu, rows, out.gpu);
    Buffer cpu_out = cpu->alloc(size_t(rows * outs));
    cpu->matmul(in.cpu, w.cpu, rows, cpu_out);
    std::copy(cpu_out.data, cpu_out.data + rows * outs, out.cpu.data);
    expect_products_close(fetch(out.gpu, size_t(rows * outs)), cpu_out.data, in_now.data(), w, tolerance);
  };
  Pair o1 = both(std::vector<float>(size_t(rows * n))), o2 = both(std::vector<float>(size_t(rows * n)));
  for (Backend* b : {be_.get(), static_cast<Backend*>(cpu.get())}) {
    const bool g = b == be_.get();
    b->rmsnorm(g ? x.gpu : x.cpu, g ? norm.first : norm.second, rows, 1e-6f, g ? xn.gpu : xn.cpu);
  }
  matmul_both(xn, w1, o1, "the norm's rounding");
  matmul_both(xn, w2, o2, "the same rounding again");
  be_->add(xn.gpu, y.gpu, size_t(rows * k));
  cpu->add(xn.cpu, y.cpu, size_t(rows * k));
  matmul_both(xn, w1, o1, "after an add over the input");
  matmul_both(y, w2, o2, "another buffer");
  matmul_both(xn, w2, o2, "back to the first");
  matmul_both(xn, w_sq, xn, "a GEMM written over its own input");
  matmul_both(xn, w1, o1, "after that");
  be_->residual_norm(y.gpu, &post.first, x.gpu, &norm.first, rows, k, 1e-6f, xn.gpu);
  cpu->residual_norm(y.cpu, &post.second, x.cpu, &norm.second, rows, k, 1e-6f, xn.cpu);
  matmul_both(xn, w1, o1, "the residual step's next norm");
  be_->gated_act(gate.gpu, up.gpu, size_t(rows * n), GatedAct::GeluTanh);
  cpu->gated_act(gate.cpu, up.cpu, size_t(rows * n), GatedAct::GeluTanh);
  Pair down = both(std::vector<float>(size_t(rows * k)));
  matmul_both(gate, w_down, down, "after the gated activation");
  {  // the attention's epilogue writes its output's rounding for the output projection
    const std::vector<int32_t> tokens(size_t(rows), 0);
    const AttnParams p{2, 1, 64, 0.125f, AttnPolicy::dense()};  // 2 heads of 64: rows of k floats
    Pair q = both(normal(size_t(rows * k))), kk = both(normal(size_t(rows * 64))), v = both(normal(size_t(rows * 64)));
    Pair att = both(std::vector<float>(size_t(rows * k)));
    for (Backend* b : {be_.get(), static_cast<Backend*>(cpu.get())}) {
      const bool g = b == be_.get();
      b->init_kv({{int32_t(rows), 1, 64}});
      b->begin_batch(tokens.data(), 0, int(rows));
      b->attention(0, g ? q.gpu : q.cpu, g ? kk.gpu : kk.cpu, g ? v.gpu : v.cpu, g ? att.gpu : att.cpu, p);
    }
    // The GPU's attention reads bf16 q, k and v: its output differs from the CPU's by ~1e-2 (a stale operand, by all).
    matmul_both(att, w1, o1, "the attention's output", 3e-2);
  }
  matmul_both(xn, w2, o2, "the norm output again, now cast");
  {
    SCOPED_TRACE("gated_mlp: the product only in the down projection's bf16 operand");
    be_->gated_mlp(xn.gpu, w1.gpu, w2.gpu, w_down.gpu, rows, GatedAct::GeluTanh, gate.gpu, up.gpu, down.gpu);
    cpu->gated_mlp(xn.cpu, w1.cpu, w2.cpu, w_down.cpu, rows, GatedAct::GeluTanh, gate.cpu, up.cpu, down.cpu);
    // Against |product| . |w_down| (the product from the CPU's gate): the product's own error follows its inputs'
    // bf16 roundings, a looser bound than one GEMM's.
    expect_products_close(fetch(down.gpu, size_t(rows * k)), down.cpu.data, gate.cpu.data, w_down, 2e-2);
  }
}

TEST_F(CudaBackendTest, AddBiasAndSoftcapMatchTheCpuBackend) {
  auto cpu = make_cpu_backend(2);
  for (int64_t cols : {640, 37})
    for (int64_t rows : {1, 7}) {
      const std::vector<float> x = normal(size_t(rows * cols)), bias = normal(size_t(cols));
      Buffer xd = device_copy(x), xc = cpu_copy(*cpu, x);
      be_->add_bias(xd, upload_vector("blk.0.attn_q.bias", bias), rows);
      cpu->add_bias(xc, upload(*cpu, "blk.0.attn_q.bias", GgmlType::F32, {cols}, bias.data(), bias.size() * 4), rows);
      expect_close(fetch(xd, x.size()), std::vector<double>(xc.data, xc.data + x.size()), 0, 0,
                   "add_bias " + std::to_string(rows) + "x" + std::to_string(cols));
    }
  EXPECT_THROW(be_->add_bias(be_->alloc(64), upload(*be_, "w", GgmlType::F32, {8, 8}, normal(64).data(), 256), 8),
               Error);  // a matrix is not a bias

  for (float cap : {50.f, 5.f, 0.5f}) {  // final-logit softcap; logits spread well past every cap
    const size_t count = 1003;
    const std::vector<float> x = normal(count, 40.f);
    Buffer xd = device_copy(x), xc = cpu_copy(*cpu, x);
    be_->softcap(xd, count, cap);
    cpu->softcap(xc, count, cap);
    expect_close(fetch(xd, count), std::vector<double>(xc.data, xc.data + count), 1e-6 * cap, 2e-6,
                 "softcap " + std::to_string(cap));
  }
  EXPECT_THROW(be_->softcap(be_->alloc(4), 4, 0.f), Error);
  EXPECT_THROW(be_->softcap(be_->alloc(4), 4, -1.f), Error);
}

// LongRoPE (Phi-3 128k): per-pair frequency divisors and a cos/sin factor.
TEST_F(CudaBackendTest, RopeWithFrequencyFactorsAndAttnFactorMatchesTheCpuBackend) {
  auto cpu = make_cpu_backend(2);
  struct Case { RopeStyle style; int head_dim; int32_t pos0; float base, scale, attn_factor; };
  for (Case c : {Case{RopeStyle::NeoX, 96, 70001, 10000.f, 1.f, 1.1902f},
                 Case{RopeStyle::Normal, 64, 3, 500000.f, 0.5f, 0.8f}, Case{RopeStyle::NeoX, 128, 4097, 1e6f, 1.f, 1.f}}) {
    const int n = 3, heads = 4, half = c.head_dim / 2;
    SCOPED_TRACE("head_dim " + std::to_string(c.head_dim) + " pos0 " + std::to_string(c.pos0));
    std::vector<float> factors(half);
    std::uniform_real_distribution<float> f(1.f, 60.f);
    for (float& x : factors) x = f(rng_);
    const std::vector<float> x = normal(size_t(n) * heads * c.head_dim);
    std::vector<int32_t> tokens(n, 0);
    be_->begin_batch(tokens.data(), c.pos0, n);
    cpu->begin_batch(tokens.data(), c.pos0, n);
    Buffer xd = device_copy(x), xc = cpu_copy(*cpu, x);
    RopeParams p{.freq_base = c.base, .freq_scale = c.scale, .style = c.style};
    p.attn_factor = c.attn_factor;
    p.freq_factors = upload_vector("rope_factors_long", factors);
    be_->rope(xd, heads, c.head_dim, p);
    p.freq_factors = upload(*cpu, "rope_factors_long", GgmlType::F32, {half}, factors.data(), factors.size() * 4);
    cpu->rope(xc, heads, c.head_dim, p);
    expect_close(fetch(xd, x.size()), std::vector<double>(xc.data, xc.data + x.size()), 1e-5, 1e-5, "rope");

    std::vector<float> wrong(half + 2, 1.f);
    p.freq_factors = upload_vector("rope_factors_long", wrong);
    EXPECT_THROW(be_->rope(xd, heads, c.head_dim, p), Error) << "head_dim/2 + 2 factors";
  }
}

// Gemma 2's attention softcapping through the cache (prefill chunks, decode steps, ring wrap) on every policy,
// against the CPU backend on the same bf16-rounded inputs.
TEST_F(CudaBackendTest, AttentionSoftcapMatchesTheCpuBackend) {
  struct Shape { int n_head, n_head_kv, head_dim; };
  struct Cap { float softcap, score_gain; };  // scores spread by the gain so the cap bites
  for (Shape sh : {Shape{8, 4, 256}, Shape{4, 2, 64}, Shape{8, 2, 128}})
    for (Cap cap : {Cap{50.f, 20.f}, Cap{5.f, 4.f}}) {
      SCOPED_TRACE("heads " + std::to_string(sh.n_head) + "/" + std::to_string(sh.n_head_kv) + " x " +
                   std::to_string(sh.head_dim) + " softcap " + std::to_string(cap.softcap));
      const int total = 35, max_batch = 6;  // expect_attention_through_the_cache_matches_cpu's chunks
      const std::vector<AttnPolicy> policies = {AttnPolicy::dense(), AttnPolicy::sliding(9),
                                                AttnPolicy::dense_naive()};
      std::vector<KvLayerSpec> specs;
      for (const AttnPolicy& pol : policies)
        specs.push_back({pol.windowed() ? pol.left + max_batch : total, sh.n_head_kv, sh.head_dim});
      auto gpu = make_cuda_backend(0);
      auto cpu = make_cpu_backend(2);
      gpu->init_kv(specs);
      cpu->init_kv(specs);
      expect_attention_through_the_cache_matches_cpu(
          *gpu, *cpu, sh.n_head, sh.n_head_kv, sh.head_dim, policies, [&](size_t layer, bool) {
            AttnParams p{sh.n_head, sh.n_head_kv, sh.head_dim, cap.score_gain / std::sqrt(float(sh.head_dim)),
                         policies[layer]};
            p.softcap = cap.softcap;
            return p;
          });
      const size_t row = size_t(sh.n_head_kv) * sh.head_dim, qrow = size_t(sh.n_head) * sh.head_dim;
      Buffer q = gpu->alloc(qrow), k = gpu->alloc(row), v = gpu->alloc(row), out = gpu->alloc(qrow);
      AttnParams bad{sh.n_head, sh.n_head_kv, sh.head_dim, 1.f, policies[0]};
      bad.softcap = -1.f;
      EXPECT_THROW(gpu->attention(0, q, k, v, out, bad), Error);
    }
}

// YaRN (gpt-oss's RoPE scaling) through the plain rope kernel and the fused q/k norm + RoPE (flushed on its own, not
// into an attention), against the CPU backend: both styles, the ramp in the middle of the pairs, over all of them,
// degenerate (low == high), positions from 0 to past YaRN's original context, with LongRoPE factors and an
// attention factor too. Plain RoPE at the same scale is far from it, so a YaRN ignored would show.
TEST_F(CudaBackendTest, RopeYarnMatchesTheCpuBackend) {
  EXPECT_TRUE(be_->features().yarn_rope);
  auto cpu = make_cpu_backend(2);
  struct Case { RopeStyle style; int head_dim; int32_t pos0; float base, scale, low, high, attn_factor; bool factors; };
  for (Case c : {Case{RopeStyle::NeoX, 64, 3, 150000.f, 1.f / 32, 8.f, 18.f, 1.f, false},
                 Case{RopeStyle::NeoX, 64, 100000, 150000.f, 1.f / 32, 8.f, 18.f, 1.f, false},
                 Case{RopeStyle::Normal, 128, 4097, 10000.f, 0.25f, 0.f, 63.f, 0.9f, false},
                 Case{RopeStyle::NeoX, 256, 70001, 1e6f, 1.f / 16, 20.f, 20.f, 1.f, false},
                 Case{RopeStyle::Normal, 64, 0, 10000.f, 0.5f, 4.f, 12.f, 1.2f, true}}) {
    const int n = 3, heads = 4, kv_heads = 2, half = c.head_dim / 2;
    SCOPED_TRACE("head_dim " + std::to_string(c.head_dim) + " pos0 " + std::to_string(c.pos0) + " ramp " +
                 std::to_string(c.low) + ".." + std::to_string(c.high));
    std::vector<float> factors(half);
    std::uniform_real_distribution<float> f(1.f, 8.f);
    for (float& x : factors) x = f(rng_);
    RopeParams p{.freq_base = c.base, .freq_scale = c.scale, .style = c.style};
    p.attn_factor = c.attn_factor;
    p.yarn = true;
    p.yarn_low = c.low;
    p.yarn_high = c.high;
    RopeParams cp = p;
    if (c.factors) {
      p.freq_factors = upload_vector("rope_factors_long", factors);
      cp.freq_factors = upload(*cpu, "rope_factors_long", GgmlType::F32, {half}, factors.data(), factors.size() * 4);
    }
    std::vector<int32_t> tokens(n, 0);
    be_->begin_batch(tokens.data(), c.pos0, n);
    cpu->begin_batch(tokens.data(), c.pos0, n);
    const std::vector<float> x = normal(size_t(n) * heads * c.head_dim), y = normal(size_t(n) * kv_heads * c.head_dim);
    Buffer xd = device_copy(x), xc = cpu_copy(*cpu, x);
    be_->rope(xd, heads, c.head_dim, p);
    cpu->rope(xc, heads, c.head_dim, cp);
    const std::vector<double> want(xc.data, xc.data + x.size());
    expect_close(fetch(xd, x.size()), want, 1e-5, 1e-5, "rope");
    // The fused norm + RoPE of q and k (with and without norms), flushed by the read.
    const std::vector<float> gq = normal(size_t(c.head_dim)), gk = normal(size_t(c.head_dim));
    const Weight wq = upload_vector("q_norm", gq), wk = upload_vector("k_norm", gk);
    const Weight cq = upload(*cpu, "q_norm", GgmlType::F32, {c.head_dim}, gq.data(), gq.size() * 4);
    const Weight ck = upload(*cpu, "k_norm", GgmlType::F32, {c.head_dim}, gk.data(), gk.size() * 4);
    for (bool norms : {false, true}) {
      Buffer qd = device_copy(x), kd = device_copy(y), qc = cpu_copy(*cpu, x), kc = cpu_copy(*cpu, y);
      be_->qk_norm_rope(qd, kd, norms ? &wq : nullptr, norms ? &wk : nullptr, n, heads, kv_heads, c.head_dim, 1e-6f, p);
      cpu->qk_norm_rope(qc, kc, norms ? &cq : nullptr, norms ? &ck : nullptr, n, heads, kv_heads, c.head_dim, 1e-6f,
                        cp);
      expect_close(fetch(qd, x.size()), std::vector<double>(qc.data, qc.data + x.size()), 1e-5, 1e-5,
                   norms ? "qk_norm_rope q, norms" : "qk_norm_rope q");
      expect_close(fetch(kd, y.size()), std::vector<double>(kc.data, kc.data + y.size()), 1e-5, 1e-5,
                   norms ? "qk_norm_rope k, norms" : "qk_norm_rope k");
    }
    // Plain RoPE at the same scale (no ramp, no magnitude) differs from YaRN far beyond the tolerance.
    RopeParams plain = cp;
    plain.yarn = false;
    Buffer pc = cpu_copy(*cpu, x);
    cpu->rope(pc, heads, c.head_dim, plain);
    double diff = 0;
    for (size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::fabs(double(pc.data[i]) - want[i]));
    EXPECT_GT(diff, 0.05) << "YaRN barely differs from plain RoPE here: the test would not see it ignored";
  }
}

// gpt-oss's attention sinks through the cache (prefill chunks, decode steps, ring wrap) on every policy the backend
// runs (flash dense over split-K, flash sliding, dense-naive), against the CPU backend on the same bf16-rounded
// inputs: gpt-oss's shape (64/8 heads of 64), other head dims and groups, and sinks with softcapping. A sinks weight
// of the wrong length is an Error.
TEST_F(CudaBackendTest, AttentionSinksMatchTheCpuBackend) {
  EXPECT_TRUE(be_->features().attention_sinks);
  struct Shape { int n_head, n_head_kv, head_dim; float softcap; };
  for (Shape sh : {Shape{64, 8, 64, 0.f}, Shape{8, 2, 128, 0.f}, Shape{4, 1, 256, 0.f}, Shape{8, 4, 256, 30.f}}) {
    SCOPED_TRACE("heads " + std::to_string(sh.n_head) + "/" + std::to_string(sh.n_head_kv) + " x " +
                 std::to_string(sh.head_dim) + " softcap " + std::to_string(sh.softcap));
    const int total = 35, max_batch = 6;  // expect_attention_through_the_cache_matches_cpu's chunks
    const std::vector<AttnPolicy> policies = {AttnPolicy::dense(), AttnPolicy::sliding(9), AttnPolicy::dense_naive()};
    // The dense layer's cache is far longer than the positions reached: its decode steps run split-K over many
    // splits, most of them without keys.
    std::vector<KvLayerSpec> specs = {{3000, sh.n_head_kv, sh.head_dim}, {9 + max_batch, sh.n_head_kv, sh.head_dim},
                                      {total, sh.n_head_kv, sh.head_dim}};
    auto gpu = make_cuda_backend(0);
    auto cpu = make_cpu_backend(2);
    gpu->init_kv(specs);
    cpu->init_kv(specs);
    std::vector<float> sinks(size_t(sh.n_head));
    std::uniform_real_distribution<float> spread(-3.f, 6.f);
    for (float& x : sinks) x = spread(rng_);
    const Weight gpu_sinks = upload(*gpu, "blk.0.attn_sinks.weight", GgmlType::F32, {sh.n_head}, sinks.data(),
                                    sinks.size() * 4);
    const Weight cpu_sinks = upload(*cpu, "blk.0.attn_sinks.weight", GgmlType::F32, {sh.n_head}, sinks.data(),
                                    sinks.size() * 4);
    expect_attention_through_the_cache_matches_cpu(
        *gpu, *cpu, sh.n_head, sh.n_head_kv, sh.head_dim, policies, [&](size_t layer, bool on_gpu) {
          AttnParams p{sh.n_head, sh.n_head_kv, sh.head_dim, 1.f / std::sqrt(float(sh.head_dim)), policies[layer]};
          p.softcap = sh.softcap;
          p.sinks = on_gpu ? gpu_sinks : cpu_sinks;
          return p;
        });
    const size_t row = size_t(sh.n_head_kv) * sh.head_dim, qrow = size_t(sh.n_head) * sh.head_dim;
    Buffer q = gpu->alloc(qrow), k = gpu->alloc(row), v = gpu->alloc(row), out = gpu->alloc(qrow);
    std::vector<float> short_sinks(size_t(sh.n_head) - 1, 0.f);
    AttnParams bad{sh.n_head, sh.n_head_kv, sh.head_dim, 1.f, policies[0]};
    bad.sinks = upload(*gpu, "short_sinks", GgmlType::F32, {sh.n_head - 1}, short_sinks.data(), short_sinks.size() * 4);
    EXPECT_THROW(gpu->attention(0, q, k, v, out, bad), Error) << "n_head - 1 sinks";
  }
}

// A decode step's q/k norm + RoPE and attention: the flash kernel stages the projection's fp32 rows itself
// (FlashAttnArgs::fresh) on layer 0; layer 1 gets the same rows through the separate norm + RoPE launch and its
// staging (forced apart by reading q in between) and must agree bit for bit, in the outputs and so in the cache
// rows later steps read; the CPU backend runs the same steps. Positions run over several key tiles (split-K), the
// sliding rings wrap, and the cases cover every flash head_dim, GQA groups of 1 to 8, both rotation styles, norms
// on q, k, both or neither, softcapping and LongRoPE factors; and gpt-oss's layers (64/8 heads of 64, no norms,
// NeoX with YaRN, sinks, a 128-key window and dense). (At d 128 on sm_90a the backend keeps the separate
// launch, flash_decode_stages_fresh_rows: both layers then take the same path.)
TEST_F(CudaBackendTest, DecodeAttentionStagingItsOwnRowsEqualsTheSeparateLaunch) {
  struct Case { int n_head, n_head_kv, head_dim; RopeStyle style; bool q_norm, k_norm; AttnPolicy policy; int total;
                float softcap; bool factors; bool yarn = false, sinks = false; };
  for (Case c : {Case{4, 1, 256, RopeStyle::NeoX, true, true, AttnPolicy::dense(), 300, 0.f, false},
                 Case{4, 1, 256, RopeStyle::NeoX, true, true, AttnPolicy::sliding(100), 300, 0.f, false},
                 Case{8, 2, 128, RopeStyle::Normal, false, false, AttnPolicy::dense(), 700, 30.f, true},
                 Case{8, 2, 128, RopeStyle::NeoX, true, true, AttnPolicy::sliding(200), 450, 0.f, false},
                 Case{8, 8, 64, RopeStyle::NeoX, true, false, AttnPolicy::dense(), 330, 0.f, false},
                 Case{16, 2, 64, RopeStyle::Normal, false, true, AttnPolicy::sliding(50), 200, 0.f, true},
                 Case{64, 8, 64, RopeStyle::NeoX, false, false, AttnPolicy::sliding(128), 300, 0.f, false, true, true},
                 Case{64, 8, 64, RopeStyle::NeoX, false, false, AttnPolicy::dense(), 300, 0.f, false, true, true},
                 Case{8, 2, 128, RopeStyle::NeoX, true, true, AttnPolicy::dense(), 300, 0.f, false, true, true}}) {
    const std::string what = std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + "x" +
                             std::to_string(c.head_dim) + " " + describe(c.policy) +
                             (c.style == RopeStyle::NeoX ? " neox" : " normal") + (c.yarn ? " yarn" : "") +
                             (c.sinks ? " sinks" : "");
    SCOPED_TRACE(what);
    const int first = 5, hd = c.head_dim;  // a prefill chunk, then one decode step per position
    auto cpu = make_cpu_backend(2);
    const KvLayerSpec spec{c.policy.windowed() ? c.policy.left + first : c.total, c.n_head_kv, hd};
    be_->init_kv({spec, spec});
    cpu->init_kv({spec});
    const std::vector<float> gq = normal(size_t(hd)), gk = normal(size_t(hd));
    std::vector<float> factors(size_t(hd / 2));
    std::uniform_real_distribution<float> divisor(1.f, 40.f);
    for (float& x : factors) x = divisor(rng_);
    RopeParams rope{.freq_base = c.style == RopeStyle::NeoX ? 1e6f : 10000.f, .freq_scale = 1.f, .style = c.style};
    if (c.yarn) {  // gpt-oss's: base 150000, factor 32, the ramp over pairs 8 .. 18 (at head_dim 64)
      rope.freq_base = 150000.f;
      rope.freq_scale = 1.f / 32;
      rope.yarn = true;
      rope.yarn_low = float(hd / 8);
      rope.yarn_high = float(hd * 18 / 64);
    }
    RopeParams cpu_rope = rope;
    if (c.factors) {
      rope.attn_factor = cpu_rope.attn_factor = 1.19f;
      rope.freq_factors = upload_vector("rope_factors_long", factors);
      cpu_rope.freq_factors = upload(*cpu, "rope_factors_long", GgmlType::F32, {hd / 2}, factors.data(), hd * 2);
    }
    const Weight wq = upload_vector("q_norm", gq), wk = upload_vector("k_norm", gk);
    const Weight cq = upload(*cpu, "q_norm", GgmlType::F32, {hd}, gq.data(), hd * 4);
    const Weight ck = upload(*cpu, "k_norm", GgmlType::F32, {hd}, gk.data(), hd * 4);
    AttnParams p{c.n_head, c.n_head_kv, hd, 1.f / std::sqrt(float(hd)), c.policy};
    p.softcap = c.softcap;
    AttnParams cpu_p = p;
    if (c.sinks) {
      std::vector<float> sinks(size_t(c.n_head));
      std::uniform_real_distribution<float> spread(-3.f, 6.f);
      for (float& x : sinks) x = spread(rng_);
      p.sinks = upload_vector("attn_sinks", sinks);
      cpu_p.sinks = upload(*cpu, "attn_sinks", GgmlType::F32, {c.n_head}, sinks.data(), sinks.size() * 4);
    }
    const size_t qrow = size_t(c.n_head) * hd, kvrow = size_t(c.n_head_kv) * hd;
    Buffer q[2] = {be_->alloc(first * qrow), be_->alloc(first * qrow)};
    Buffer k[2] = {be_->alloc(first * kvrow), be_->alloc(first * kvrow)};
    Buffer v = be_->alloc(first * kvrow), out[2] = {be_->alloc(first * qrow), be_->alloc(first * qrow)};
    Buffer cpu_out = cpu->alloc(first * qrow);
    std::vector<float> q_seen(first * qrow);
    for (int32_t pos = 0; pos < c.total;) {
      const int n = pos == 0 ? first : 1;
      const std::vector<float> qh = normal(n * qrow), kh = normal(n * kvrow), vh = normal(n * kvrow);
      std::vector<int32_t> tokens(size_t(n), 0);
      be_->begin_batch(tokens.data(), pos, n);
      cpu->begin_batch(tokens.data(), pos, n);
      for (int layer = 0; layer < 2; ++layer) {
        EXPECT_EQ(cudaMemcpy(q[layer].data, qh.data(), qh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(k[layer].data, kh.data(), kh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(v.data, vh.data(), vh.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        poison(out[layer]);
        be_->qk_norm_rope(q[layer], k[layer], c.q_norm ? &wq : nullptr, c.k_norm ? &wk : nullptr, n, c.n_head,
                          c.n_head_kv, hd, 1e-6f, rope);
        if (layer == 1) be_->read(q[layer], 0, n * qrow, q_seen.data());
        be_->attention(layer, q[layer], k[layer], v, out[layer], p);
      }
      const Buffer qc = cpu_copy(*cpu, qh), kc = cpu_copy(*cpu, kh);
      cpu->qk_norm_rope(qc, kc, c.q_norm ? &cq : nullptr, c.k_norm ? &ck : nullptr, n, c.n_head, c.n_head_kv, hd,
                        1e-6f, cpu_rope);
      cpu->attention(0, qc, kc, cpu_copy(*cpu, vh), cpu_out, cpu_p);
      const std::vector<float> fresh = fetch(out[0], n * qrow), separate = fetch(out[1], n * qrow);
      ASSERT_EQ(fresh, separate) << "staged in the kernel and staged apart differ at pos " << pos << " (seed "
                                 << seed_ << ")";
      expect_close(fresh, std::vector<double>(cpu_out.data, cpu_out.data + n * qrow), 2e-2, 2e-2,
                   "against the CPU backend at pos " + std::to_string(pos));
      if (HasFailure()) return;
      pos += n;
    }
  }
}

// A tiny decoder layer + logits, run as a decode step: plainly on one backend, through run_captured on another.
struct TinyModel {
  static constexpr int kVocab = 96, kDim = 256, kHeads = 4, kKvHeads = 1, kHeadDim = 64, kFfn = 512;
  Weight embd, norm, qnorm, wq, wk, wv, wo, gate, up, down;
  Buffer x, xn, q, k, v, att, proj, g, u, logits;

  TinyModel(Backend& be, std::mt19937_64& rng, int max_batch) {
    auto mat = [&](const char* name, int64_t rows, int64_t cols) {
      std::mt19937_64 r(rng());
      std::vector<uint8_t> bytes = testing::random_blocks(GgmlType::Q8_0, rows * cols / 32, r);
      // Q8_0 scales of up to 10 would blow activations up over a layer; keep them near 1/sqrt(cols).
      for (int64_t b = 0; b < rows * cols / 32; ++b) {
        const uint16_t h = fp32_to_fp16(float(0.02 / std::sqrt(double(cols))) * float(1 + b % 3));
        std::memcpy(bytes.data() + b * 34, &h, 2);
      }
      GgufTensor t{name, uint32_t(GgmlType::Q8_0), {cols, rows}, 0, bytes.data(), bytes.size()};
      return be.upload(t);
    };
    auto vec = [&](const char* name, int64_t n) {
      std::vector<float> w(n);
      std::normal_distribution<float> d(1.f, 0.1f);
      for (float& x : w) x = d(rng);
      GgufTensor t{name, uint32_t(GgmlType::F32), {n}, 0, w.data(), w.size() * 4};
      return be.upload(t);
    };
    embd = mat("token_embd", kVocab, kDim);
    norm = vec("norm", kDim);
    qnorm = vec("q_norm", kHeadDim);
    wq = mat("wq", kHeads * kHeadDim, kDim);
    wk = mat("wk", kKvHeads * kHeadDim, kDim);
    wv = mat("wv", kKvHeads * kHeadDim, kDim);
    wo = mat("wo", kDim, kHeads * kHeadDim);
    gate = mat("gate", kFfn, kDim);
    up = mat("up", kFfn, kDim);
    down = mat("down", kDim, kFfn);
    const size_t b = size_t(max_batch);
    x = be.alloc(b * kDim); xn = be.alloc(b * kDim); proj = be.alloc(b * kDim);
    q = be.alloc(b * kHeads * kHeadDim); att = be.alloc(b * kHeads * kHeadDim);
    k = be.alloc(b * kKvHeads * kHeadDim); v = be.alloc(b * kKvHeads * kHeadDim);
    g = be.alloc(b * kFfn); u = be.alloc(b * kFfn); logits = be.alloc(kVocab);
  }

  // Layer 0 attends densely, layer 1 through a sliding window; both share the weights.
  void step(Backend& be, const int32_t* tokens, int32_t pos0, int n, float* host_logits) {
    be.begin_batch(tokens, pos0, n);
    be.embed(embd, 16.f, x);
    for (int layer = 0; layer < 2; ++layer) {
      be.rmsnorm(x, norm, n, 1e-6f, xn);
      be.matmul(xn, wq, n, q);
      be.matmul(xn, wk, n, k);
      be.matmul(xn, wv, n, v);
      be.rmsnorm(q, qnorm, int64_t(n) * kHeads, 1e-6f, q);
      be.rmsnorm(k, qnorm, int64_t(n) * kKvHeads, 1e-6f, k);
      be.rope(q, kHeads, kHeadDim, {10000.f, 1.f, RopeStyle::NeoX});
      be.rope(k, kKvHeads, kHeadDim, {10000.f, 1.f, RopeStyle::NeoX});
      const AttnPolicy pol = layer == 0 ? AttnPolicy::dense() : AttnPolicy::sliding(4);
      be.attention(layer, q, k, v, att, {kHeads, kKvHeads, kHeadDim, 0.125f, pol});
      be.matmul(att, wo, n, proj);
      be.add(x, proj, size_t(n) * kDim);
      be.rmsnorm(x, norm, n, 1e-6f, xn);
      be.matmul(xn, gate, n, g);
      be.matmul(xn, up, n, u);
      be.gated_act(g, u, size_t(n) * kFfn, layer == 0 ? GatedAct::GeluTanh : GatedAct::Silu);
      be.matmul(g, down, n, proj);
      be.add(x, proj, size_t(n) * kDim);
    }
    Buffer last{x.data + size_t(n - 1) * kDim, kDim};
    be.rmsnorm(last, norm, 1, 1e-6f, xn);
    be.matmul(xn, embd, 1, logits);
    be.read(logits, 0, kVocab, host_logits);
    be.synchronize();
  }
};

TEST_F(CudaBackendTest, CapturedDecodeStepsReplayLikePlainSteps) {
  const int max_batch = 4, ctx = 40;
  auto plain_be = make_cuda_backend(0), graph_be = make_cuda_backend(0);
  const uint64_t weights_seed = rng_();
  std::mt19937_64 r1(weights_seed), r2(weights_seed);
  TinyModel plain(*plain_be, r1, max_batch), graph(*graph_be, r2, max_batch);
  const std::vector<KvLayerSpec> kv = {{ctx, 1, 64}, {4 + max_batch, 1, 64}};  // the ring of 8 wraps 4 times
  plain_be->init_kv(kv);
  graph_be->init_kv(kv);

  std::vector<int32_t> prompt = {3, 17, 42, 5};
  std::vector<float> a(TinyModel::kVocab), b(TinyModel::kVocab), previous;
  plain.step(*plain_be, prompt.data(), 0, max_batch, a.data());
  graph.step(*graph_be, prompt.data(), 0, max_batch, b.data());
  EXPECT_EQ(a, b);
  int replays = 0;
  for (int32_t pos = max_batch; pos < ctx; ++pos) {
    const int32_t token = int32_t(rng_() % TinyModel::kVocab);
    std::fill(a.begin(), a.end(), NAN);
    std::fill(b.begin(), b.end(), NAN);
    plain.step(*plain_be, &token, pos, 1, a.data());
    const bool from_graph =
        graph_be->run_captured(1, [&] { graph.step(*graph_be, &token, pos, 1, b.data()); });
    replays += from_graph;
    for (int i = 0; i < TinyModel::kVocab; ++i)
      ASSERT_NEAR(b[i], a[i], 1e-4 * (1 + std::fabs(a[i]))) << "pos " << pos << " logit " << i << " seed " << seed_;
    EXPECT_NE(previous, b) << "logits did not change at pos " << pos;
    previous = b;
  }
  EXPECT_EQ(replays, ctx - max_batch) << "every decode step should run from the graph";
}

// ---- profiler hooks: CUDA-event op times ----------------------------------------------------------------------

// A step of GPU-heavy matmuls (~0.1 ms each on an H100, so the GPU, not the host, sets the pace) bracketed by
// ranges the way TracedOps brackets the model's ops, inside one enclosing "block" range.
struct TimedWorkload {
  static constexpr int64_t kDim = 4096, kRows = 2048, kMatmuls = 8;
  Weight w, norm;
  Buffer a, b;

  explicit TimedWorkload(Backend& be) {
    const std::vector<uint16_t> weights(size_t(kDim * kDim), fp32_to_bf16(1.f / kDim));
    GgufTensor t{"w", uint32_t(GgmlType::BF16), {kDim, kDim}, 0, weights.data(), weights.size() * 2};
    w = be.upload(t);
    const std::vector<float> ones(kDim, 1.f);
    GgufTensor n{"norm", uint32_t(GgmlType::F32), {kDim}, 0, ones.data(), ones.size() * 4};
    norm = be.upload(n);
    a = be.alloc(size_t(kRows * kDim));
    b = be.alloc(size_t(kRows * kDim));
    EXPECT_EQ(cudaMemset(a.data, 0, a.count * 4), cudaSuccess);
  }

  void step(Backend& be) {
    be.push_range("block", 0, OpKind::Other);
    for (int i = 0; i < kMatmuls; ++i) {
      be.push_range(i % 2 ? "mm_odd" : "mm_even", 0, OpKind::Matmul);
      be.matmul(i % 2 ? b : a, w, kRows, i % 2 ? a : b);
      be.pop_range();
    }
    be.push_range("norm", 0, OpKind::Norm);
    be.rmsnorm(a, norm, kRows, 1e-6f, b);
    be.pop_range();
    be.push_range("empty", 0, OpKind::Other);
    be.pop_range();
    be.pop_range();
  }
};

const OpTiming* find_op(const Profile& p, const std::string& name) {
  for (const OpTiming& op : p.ops)
    if (op.name == name) return &op;
  return nullptr;
}

TEST_F(CudaBackendTest, ProfilerGetsExclusiveOpTimesThatAddUpToTheStep) {
  TimedWorkload work(*be_);
  Profiler prof({AttnPolicy::dense()});
  be_->attach_profiler(&prof);
  work.step(*be_);  // warm-up: cuBLAS picks its kernels
  be_->synchronize();
  prof.discard_run();
  for (int run = 0; run < 3; ++run) {
    const double t0 = now_ms();
    work.step(*be_);
    be_->synchronize();
    prof.end_run(now_ms() - t0);
  }
  be_->attach_profiler(nullptr);
  const Profile p = prof.finish(RunInfo{});
  for (const char* name : {"mm_even", "mm_odd", "norm"}) {
    const OpTiming* op = find_op(p, name);
    ASSERT_NE(op, nullptr) << name;
    EXPECT_GT(op->ms, 0.0) << name;
  }
  const OpTiming* block = find_op(p, "block");
  const OpTiming* empty = find_op(p, "empty");
  ASSERT_NE(block, nullptr);
  ASSERT_NE(empty, nullptr);
  const double matmuls = find_op(p, "mm_even")->ms + find_op(p, "mm_odd")->ms;
  // Exclusive: the enclosing range keeps only the gaps between its children, an empty range next to nothing.
  EXPECT_GE(block->ms, 0.0);
  EXPECT_LT(block->ms, 0.1 * matmuls);
  EXPECT_LT(empty->ms, 0.02 * matmuls);
  // The ops cover the GPU's part of each run: no more than the wall time, and most of it.
  for (int run = 0; run < p.repeat(); ++run) {
    const double ops = p.op_ms_runs[size_t(run)], wall = p.prefill_ms_runs[size_t(run)];
    EXPECT_LE(ops, wall * 1.01 + 0.01) << "run " << run;
    EXPECT_GE(ops, wall * 0.7) << "run " << run;
  }
}

TEST_F(CudaBackendTest, RangesClosedBeforeASynchronizeReachTheProfilerWhenItReturns) {
  TimedWorkload work(*be_);
  Profiler prof({AttnPolicy::dense()});
  be_->attach_profiler(&prof);
  be_->push_range("outer", 0, OpKind::Other);
  be_->push_range("inner", 0, OpKind::Matmul);
  be_->matmul(work.a, work.w, TimedWorkload::kRows, work.b);
  be_->pop_range();
  be_->synchronize();
  prof.end_run(1.0);
  Profile p = prof.finish(RunInfo{});
  ASSERT_NE(find_op(p, "inner"), nullptr);
  EXPECT_GT(find_op(p, "inner")->ms, 0.0);
  EXPECT_EQ(find_op(p, "outer"), nullptr) << "an open range was reported";

  be_->matmul(work.b, work.w, TimedWorkload::kRows, work.a);
  be_->pop_range();
  be_->synchronize();
  prof.end_run(1.0);
  p = prof.finish(RunInfo{});
  ASSERT_NE(find_op(p, "outer"), nullptr);
  EXPECT_GT(p.op_ms_runs[1], 0.0);  // the outer range's own matmul; "inner" was delivered once, in run 0
  be_->attach_profiler(nullptr);
}

TEST_F(CudaBackendTest, NothingIsTimedWhileDetachedOrInsideCapturedSteps) {
  TimedWorkload work(*be_);
  Profiler prof({AttnPolicy::dense()});
  be_->attach_profiler(&prof);
  be_->push_range("closed_after_detach", 0, OpKind::Other);
  be_->attach_profiler(nullptr);
  be_->pop_range();
  work.step(*be_);
  be_->synchronize();

  be_->attach_profiler(&prof);
  be_->push_range("opened_while_attached", 0, OpKind::Other);  // stays untimed across the detach below
  be_->attach_profiler(nullptr);
  be_->attach_profiler(&prof);
  be_->pop_range();
  std::vector<float> got(TimedWorkload::kDim);
  int from_graph = 0;
  for (int32_t pos = 0; pos < 3; ++pos)  // a capture, then two replays
    from_graph += be_->run_captured(5, [&] {
      const int32_t token = 0;
      be_->begin_batch(&token, pos, 1);
      be_->push_range("captured", 0, OpKind::Matmul);
      be_->matmul(work.a, work.w, 1, work.b);
      be_->pop_range();
      be_->read(work.b, 0, got.size(), got.data());
      be_->synchronize();
    });
  EXPECT_EQ(from_graph, 3) << "a profiler must not keep decode steps out of graphs";
  prof.end_run(1.0);
  EXPECT_TRUE(prof.finish(RunInfo{}).ops.empty());
  EXPECT_THROW(be_->pop_range(), Error);  // more pops than pushes

  work.step(*be_);  // attached again and plain: timed
  be_->synchronize();
  prof.end_run(1.0);
  EXPECT_NE(find_op(prof.finish(RunInfo{}), "mm_even"), nullptr);
  be_->attach_profiler(nullptr);
}

// score_rows and compress_rows (kernels/logprob) against the CPU backend's (runtime/logprob.cpp) on fresh rows of
// tests/logit_rows.h (-inf entries, huge magnitudes, ties, near-flat rows) at Gemma 3's and Qwen's vocabulary sizes
// and an odd small one, outputs poisoned first: the same tokens, codes and padding; sums to 1e-5.
TEST_F(CudaBackendTest, ScoreAndCompressRowsMatchTheCpuBackend) {
  auto cpu = make_cpu_backend(2);
  for (const int vocab : {262144, 151936, 1001}) {
    const int rows = 30;
    const testing::LogitRows t = testing::make_logit_rows(rng_, rows, vocab);
    const size_t width = size_t(kl_row_width(vocab));
    const Buffer on_gpu = device_copy(t.logits);
    Buffer on_cpu = cpu->alloc(t.logits.size());
    std::memcpy(on_cpu.data, t.logits.data(), t.logits.size() * sizeof(float));

    for (const bool with_base : {false, true}) {
      RowScore poison;
      poison.nll = poison.kld = std::nan("");
      poison.nll_base = NAN;
      poison.top = poison.top_base = -7;
      std::vector<RowScore> got(rows, poison), want(rows, poison);
      const uint16_t* base = with_base ? t.base.data() : nullptr;
      be_->score_rows(on_gpu, rows, vocab, t.targets.data(), base, got.data());
      be_->synchronize();
      cpu->score_rows(on_cpu, rows, vocab, t.targets.data(), base, want.data());
      for (int r = 0; r < rows; ++r) {
        SCOPED_TRACE(std::string(testing::logit_row_kind(r)) + " row " + std::to_string(r) + ", vocab " +
                     std::to_string(vocab) + (with_base ? ", with a base" : "") + ", seed " + std::to_string(seed_));
        auto near = [](double a, double b, double tol) {
          return std::isinf(b) ? a == b : std::fabs(a - b) <= tol * (1 + std::fabs(b));
        };
        EXPECT_TRUE(near(got[r].nll, want[r].nll, 1e-5)) << got[r].nll << " vs " << want[r].nll;
        EXPECT_EQ(got[r].top, want[r].top);
        if (!with_base) continue;
        EXPECT_TRUE(near(got[r].kld, want[r].kld, 1e-5)) << got[r].kld << " vs " << want[r].kld;
        EXPECT_EQ(got[r].nll_base, want[r].nll_base);  // the same fp32 terms, no fused multiply-add
        EXPECT_EQ(got[r].top_base, want[r].top_base);
      }
    }

    std::vector<uint16_t> got_rows(rows * width, 0xBEEF), want_rows(rows * width);
    std::vector<double> got_nll(rows, std::nan("")), want_nll(rows);
    be_->compress_rows(on_gpu, rows, vocab, t.targets.data(), got_rows.data(), got_nll.data());
    be_->synchronize();
    cpu->compress_rows(on_cpu, rows, vocab, t.targets.data(), want_rows.data(), want_nll.data());
    for (int r = 0; r < rows; ++r) {
      SCOPED_TRACE(std::string(testing::logit_row_kind(r)) + " row " + std::to_string(r) + ", vocab " +
                   std::to_string(vocab) + ", seed " + std::to_string(seed_));
      const uint16_t* g = got_rows.data() + r * width;
      const uint16_t* w = want_rows.data() + r * width;
      float g_head[2], w_head[2];
      std::memcpy(g_head, g, 8);
      std::memcpy(w_head, w, 8);
      EXPECT_EQ(g_head[0], w_head[0]) << "scale";  // from the row's max and min only
      EXPECT_NEAR(g_head[1], w_head[1], 1e-5 * (1 + std::fabs(w_head[1]))) << "min_log_prob";
      EXPECT_NEAR(got_nll[r], want_nll[r], 1e-5 * (1 + std::fabs(want_nll[r])));
      size_t differ = 0;
      for (size_t i = 4; i < width; ++i) differ += g[i] != w[i];
      EXPECT_EQ(differ, 0u) << "codes or padding differ";
    }
  }
}

TEST_F(CudaBackendTest, ScoreRowsRefusesTargetsOutsideTheVocabulary) {
  const Buffer logits = poisoned(8);
  const int32_t targets[] = {1, 4};
  RowScore out[2];
  EXPECT_THROW(be_->score_rows(logits, 2, 4, targets, nullptr, out), Error);
  std::vector<uint16_t> rows(2 * kl_row_width(4));
  double nll[2];
  EXPECT_THROW(be_->compress_rows(logits, 3, 4, targets, rows.data(), nll), Error);
}

}  // namespace
}  // namespace swrun
