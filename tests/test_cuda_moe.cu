// The CUDA backend's mixture of experts (Backend::moe, kernels/moe) against the CPU backend's (the reference) on
// fresh random MoE layers: 8 experts, top-2 and top-4, MXFP4 / Q8_0 / F16 experts quantized from random weights,
// router logits with exact ties (two experts share their router row and bias, so the lower index must win where
// only one of them makes the cut), a SwiGLU limit the gate and up values cross, and 1, 7 (GEMVs over the chosen
// experts' rows) and 300 rows (grouped tensor-core GEMMs). Outputs are poisoned (NaN) first. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/gguf_writer.h"

namespace swrun {
namespace {

struct MoeCase {
  GgmlType type;
  int n_used;
  int64_t ffn;
};
constexpr int kExperts = 8;
constexpr int64_t kDim = 256;
constexpr int kTiedLow = 1, kTiedHigh = 3;  // experts with the same router row and bias
constexpr MoeCase kCases[] = {{GgmlType::MXFP4, 2, 128}, {GgmlType::MXFP4, 4, 192}, {GgmlType::Q8_0, 4, 192},
                              {GgmlType::F16, 2, 128}};

class CudaMoe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    seed_ = std::random_device{}();
    rng_.seed(seed_);
    cpu_ = make_cpu_backend(2);
    gpu_ = make_cuda_backend(0);
  }

  std::vector<float> normal(size_t n, float sd) {
    std::normal_distribution<float> d(0.f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng_);
    return v;
  }

  // The same tensor on both backends (the CPU backend reads the bytes in place: they live as long as the test).
  struct Both {
    Weight cpu, gpu;
  };
  Both upload(const std::string& name, GgmlType type, std::vector<int64_t> ne, const std::vector<float>& values) {
    std::vector<uint8_t>& bytes = bytes_.emplace_back(
        ggml_row_bytes(ggml_type_info(uint32_t(type)), int64_t(values.size())));
    quantize_row(type, values.data(), bytes.data(), int64_t(values.size()));
    GgufTensor t;
    t.name = name;
    t.type_id = uint32_t(type);
    t.ne = std::move(ne);
    t.data = bytes.data();
    t.nbytes = bytes.size();
    return {cpu_->upload(t), gpu_->upload(t)};
  }

  // A random layer: logits ~ N(0, 1) before the bias, gate/up pre-activations ~ N(0, 1) plus biases, so that
  // `limit` cuts a good share of them.
  struct Layer {
    MoeFfn cpu, gpu;
    std::vector<float> router, router_bias;
  };
  Layer make(const MoeCase& c, float limit) {
    Layer l;
    l.router = normal(size_t(kExperts) * kDim, 1.f / std::sqrt(float(kDim)));
    std::copy_n(l.router.begin() + kTiedLow * kDim, kDim, l.router.begin() + kTiedHigh * kDim);
    l.router_bias = normal(kExperts, 0.5f);
    l.router_bias[kTiedHigh] = l.router_bias[kTiedLow];
    const size_t ffn = size_t(c.ffn);
    Both router = upload("blk.0.ffn_gate_inp.weight", GgmlType::F32, {kDim, kExperts}, l.router);
    Both router_bias = upload("blk.0.ffn_gate_inp.bias", GgmlType::F32, {kExperts}, l.router_bias);
    Both gate = upload("blk.0.ffn_gate_exps.weight", c.type, {kDim, c.ffn, kExperts},
                       normal(kExperts * ffn * kDim, 1.f / std::sqrt(float(kDim))));
    Both up = upload("blk.0.ffn_up_exps.weight", c.type, {kDim, c.ffn, kExperts},
                     normal(kExperts * ffn * kDim, 1.f / std::sqrt(float(kDim))));
    Both down = upload("blk.0.ffn_down_exps.weight", c.type, {c.ffn, kDim, kExperts},
                       normal(kExperts * ffn * kDim, 1.f / std::sqrt(float(ffn))));
    Both gate_bias = upload("blk.0.ffn_gate_exps.bias", GgmlType::F32, {c.ffn, kExperts}, normal(kExperts * ffn, 0.5f));
    Both up_bias = upload("blk.0.ffn_up_exps.bias", GgmlType::F32, {c.ffn, kExperts}, normal(kExperts * ffn, 0.5f));
    Both down_bias = upload("blk.0.ffn_down_exps.bias", GgmlType::F32, {kDim, kExperts}, normal(kExperts * kDim, 0.1f));
    for (bool on_gpu : {false, true}) {
      MoeFfn& f = on_gpu ? l.gpu : l.cpu;
      auto pick = [&](const Both& b) { return on_gpu ? b.gpu : b.cpu; };
      f.router = pick(router);
      f.router_bias = pick(router_bias);
      f.gate = pick(gate);
      f.up = pick(up);
      f.down = pick(down);
      f.gate_bias = pick(gate_bias);
      f.up_bias = pick(up_bias);
      f.down_bias = pick(down_bias);
      f.n_expert = kExperts;
      f.n_used = c.n_used;
      f.ffn = int(c.ffn);
      f.alpha = 1.702f;
      f.limit = limit;
    }
    return l;
  }

  std::vector<float> run_cpu(const MoeFfn& f, const std::vector<float>& x, int64_t rows) {
    Buffer xb = cpu_->alloc(x.size()), out = cpu_->alloc(x.size());
    std::copy(x.begin(), x.end(), xb.data);
    std::fill(out.data, out.data + out.count, NAN);
    cpu_->moe(xb, rows, f, out);
    return std::vector<float>(out.data, out.data + out.count);
  }

  // Into a poisoned output on the device.
  std::vector<float> run_gpu(const MoeFfn& f, const std::vector<float>& x, int64_t rows) {
    Buffer xb = gpu_->alloc(x.size()), out = gpu_->alloc(x.size());
    EXPECT_EQ(cudaMemcpy(xb.data, x.data(), x.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemset(out.data, 0xFF, out.count * 4), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the legacy stream's copies, before the backend's stream
    gpu_->moe(xb, rows, f, out);
    std::vector<float> got(x.size());
    gpu_->read(out, 0, got.size(), got.data());
    gpu_->synchronize();
    return got;
  }

  // The worst row's max |got - want| over that row's rms (NaN counts as infinitely wrong).
  static double row_error(const std::vector<float>& got, const std::vector<float>& want, int64_t rows) {
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double err = 0, ss = 0;
      for (int64_t c = 0; c < kDim; ++c) {
        const double d = std::fabs(double(got[r * kDim + c]) - want[r * kDim + c]);
        err = std::isnan(d) ? INFINITY : std::max(err, d);
        ss += double(want[r * kDim + c]) * want[r * kDim + c];
      }
      worst = std::max(worst, err / std::sqrt(ss / kDim + 1e-30));
    }
    return worst;
  }

  // Tokens whose top n_used take exactly one of the two tied experts (the lower index, when ties are broken
  // right): the logits in double from the same floats, so the tie is exact here too.
  int tie_cuts(const Layer& l, const std::vector<float>& x, int64_t rows, int n_used) const {
    int cuts = 0;
    for (int64_t t = 0; t < rows; ++t) {
      std::vector<double> logit(kExperts);
      for (int e = 0; e < kExperts; ++e) {
        double s = l.router_bias[e];
        for (int64_t i = 0; i < kDim; ++i) s += double(l.router[e * kDim + i]) * x[t * kDim + i];
        logit[e] = s;
      }
      int above = 0;
      for (int e = 0; e < kExperts; ++e) above += e != kTiedLow && e != kTiedHigh && logit[e] > logit[kTiedLow];
      cuts += above == n_used - 1;
    }
    return cuts;
  }

  uint32_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<Backend> cpu_, gpu_;
  std::deque<std::vector<uint8_t>> bytes_;
};

// GEMVs (1 and 7 rows: fp32 activations, the weights' exact values) within 1e-4 of a row's rms; the grouped GEMMs
// (300 rows: bf16 activations, weight tiles and products, about 0.25% rms each, fp32 accumulation) within 3e-2. The
// guards: the same layer without the clamps moves the CPU's output by more than 0.1, and tokens with the tie at the
// cut occur (a wrong choice there is a different expert: an error of the output's own size).
TEST_F(CudaMoe, MatchesTheCpuBackend) {
  constexpr float kLimit = 0.8f;
  for (const MoeCase& c : kCases) {
    const Layer l = make(c, kLimit);
    for (int64_t rows : {1, 7, 300}) {
      const std::string what = std::string(ggml_type_name(uint32_t(c.type))) + " top-" + std::to_string(c.n_used) +
                               " ffn " + std::to_string(c.ffn) + " rows " + std::to_string(rows) + " (seed " +
                               std::to_string(seed_) + ")";
      const std::vector<float> x = normal(size_t(rows) * kDim, 1.f);
      const std::vector<float> want = run_cpu(l.cpu, x, rows);
      const std::vector<float> got = run_gpu(l.gpu, x, rows);
      const double tolerance = rows > 8 ? 3e-2 : 1e-4;
      EXPECT_LE(row_error(got, want, rows), tolerance) << what;
      if (rows == 300) {
        MoeFfn unclamped = l.cpu;
        unclamped.limit = 1e30f;
        EXPECT_GT(row_error(run_cpu(unclamped, x, rows), want, rows), 0.1) << what << ": the limit does not bite";
        EXPECT_GT(tie_cuts(l, x, rows, c.n_used), 0) << what << ": no tie at the cut";
      }
    }
  }
}

// The same results twice (the grouping's order of slots inside a group must not show in the output).
TEST_F(CudaMoe, GroupedResultsAreDeterministic) {
  const Layer l = make(kCases[1], 0.8f);
  const std::vector<float> x = normal(size_t(300) * kDim, 1.f);
  const std::vector<float> a = run_gpu(l.gpu, x, 300), b = run_gpu(l.gpu, x, 300);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "element " << i << " (seed " << seed_ << ")";
}

// A one-token step with a MoE layer captured as a graph, replayed on new inputs: the expert choice stays on the
// device (a host round trip would have baked the first token's experts into the graph).
TEST_F(CudaMoe, DecodeStepReplaysFromAGraph) {
  const Layer l = make(kCases[0], 0.8f);
  Buffer xb = gpu_->alloc(kDim), out = gpu_->alloc(kDim);
  std::vector<float> got(kDim);
  int from_graph = 0;
  for (int step = 0; step < 4; ++step) {
    const std::vector<float> x = normal(kDim, 1.f);
    ASSERT_EQ(cudaMemcpy(xb.data, x.data(), kDim * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemset(out.data, 0xFF, kDim * 4), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const int32_t token = 0;
    from_graph += gpu_->run_captured(7, [&] {
      gpu_->begin_batch(&token, step, 1);
      gpu_->moe(xb, 1, l.gpu, out);
      gpu_->read(out, 0, kDim, got.data());
      gpu_->synchronize();
    });
    EXPECT_LE(row_error(got, run_cpu(l.cpu, x, 1), 1), 1e-4) << "step " << step << " (seed " << seed_ << ")";
  }
  EXPECT_GE(from_graph, 3);
}

// What the kernels do not take is one clear error before anything runs: K-quant experts in the grouped GEMMs,
// expert biases kept as bf16, gate and up of different types.
TEST_F(CudaMoe, UnsupportedLayersAreAnError) {
  const std::vector<float> x = normal(size_t(300) * kDim, 1.f);
  Layer k = make({GgmlType::Q4_K, 2, 256}, 0.8f);
  EXPECT_NO_THROW(run_gpu(k.gpu, x, 1));  // the GEMVs decode any block type
  EXPECT_THROW(run_gpu(k.gpu, x, 300), Error);
  Layer l = make(kCases[0], 0.8f);
  MoeFfn mixed = l.gpu;
  mixed.up = make({GgmlType::Q8_0, 2, 128}, 0.8f).gpu.up;  // Q8_0 up beside MXFP4 gate, the same shape
  EXPECT_THROW(run_gpu(mixed, x, 1), Error);
}

}  // namespace
}  // namespace swrun
