// The persistent decode kernel (kernels/persistent) against the same steps launched op by op and against the CPU
// backend: a small decoder built from the fused ops the Decoder uses (embed, q/k/v in one GEMV, q/k norm + RoPE,
// attention through dense and ring caches, residual norms, gated MLP, tied logits), prefilled in chunks, then decoded
// one token at a time through captured steps on three backends: CUDA with the program (SWRUN_DECODE_PROGRAM=1),
// CUDA with the graph of fused kernels (the default), and the CPU reference. Fresh random weights every run (the seed is printed); the logits
// are poisoned before each step. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/dequant.h"
#include "tests/quant_random_blocks.h"

namespace swrun {
namespace {

struct Shape {
  const char* name;
  int n_head, n_head_kv, head_dim;
  GgmlType mat_type;
  GatedAct act;
  float softcap;
  bool qk_norm;
};

constexpr int kDim = 256, kFfn = 512, kVocab = 160, kLayers = 2, kChunk = 64, kWindow = 48;

struct Model {
  const Shape& sh;
  Weight embd, out_norm;
  struct Layer {
    Weight attn_norm, q_norm, k_norm, wq, wk, wv, wo, post_attn, ffn_norm, gate, up, down, post_ffn;
  } layers[kLayers];
  Buffer x, xn, q, k, v, att, proj, g, u, logits;

  Model(Backend& be, const Shape& shape, uint64_t seed) : sh(shape) {
    std::mt19937_64 rng(seed);
    auto mat = [&](const std::string& name, GgmlType type, int64_t rows, int64_t cols) {
      const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
      std::vector<uint8_t> bytes = testing::random_blocks(type, rows * cols / info.block_elems, rng);
      // Scale the blocks so a row's dot with an O(1) activation stays O(1) through the layers.
      std::vector<float> values(size_t(rows * cols));
      dequantize_row(type, bytes.data(), values.data(), rows * cols);
      double ss = 0;
      for (float f : values) ss += double(f) * f;
      scaled_.push_back(scale_blocks(type, bytes, float(1.0 / std::sqrt(ss / double(rows)))));
      GgufTensor t{name, uint32_t(type), {cols, rows}, 0, scaled_.back().data(), scaled_.back().size()};
      return be.upload(t);
    };
    auto vec = [&](const std::string& name, int64_t n) {
      std::normal_distribution<float> d(1.f, 0.1f);
      std::vector<float> w(static_cast<size_t>(n));
      for (float& f : w) f = d(rng);
      GgufTensor t{name, uint32_t(GgmlType::F32), {n}, 0, w.data(), w.size() * 4};
      return be.upload(t);
    };
    const int qd = sh.n_head * sh.head_dim, kvd = sh.n_head_kv * sh.head_dim;
    embd = mat("token_embd.weight", GgmlType::Q8_0, kVocab, kDim);
    out_norm = vec("output_norm.weight", kDim);
    for (int l = 0; l < kLayers; ++l) {
      Layer& L = layers[l];
      const std::string p = "blk." + std::to_string(l) + ".";
      L.attn_norm = vec(p + "attn_norm", kDim);
      L.q_norm = vec(p + "q_norm", sh.head_dim);
      L.k_norm = vec(p + "k_norm", sh.head_dim);
      L.wq = mat(p + "wq", sh.mat_type, qd, kDim);
      L.wk = mat(p + "wk", GgmlType::Q8_0, kvd, kDim);
      L.wv = mat(p + "wv", sh.mat_type, kvd, kDim);
      L.wo = mat(p + "wo", sh.mat_type, kDim, qd);
      L.post_attn = vec(p + "post_attn", kDim);
      L.ffn_norm = vec(p + "ffn_norm", kDim);
      L.gate = mat(p + "gate", sh.mat_type, kFfn, kDim);
      L.up = mat(p + "up", sh.mat_type, kFfn, kDim);
      L.down = mat(p + "down", GgmlType::Q6_K, kDim, kFfn);
      L.post_ffn = vec(p + "post_ffn", kDim);
    }
    const size_t b = kChunk;
    x = be.alloc(b * kDim), xn = be.alloc(b * kDim), proj = be.alloc(b * kDim);
    q = be.alloc(b * qd), att = be.alloc(b * qd), k = be.alloc(b * kvd), v = be.alloc(b * kvd);
    g = be.alloc(b * kFfn), u = be.alloc(b * kFfn), logits = be.alloc(kVocab);
  }

  // Every block's values times `gain`: the formats used here scale their values by fp16 factors at known places
  // (GGUF's block layouts), so scaling those scales the block.
  static std::vector<uint8_t> scale_blocks(GgmlType type, std::vector<uint8_t> bytes, float gain) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    auto scale_half = [&](uint8_t* p) {
      uint16_t h;
      std::memcpy(&h, p, 2);
      h = fp32_to_fp16(fp16_to_fp32(h) * gain);
      std::memcpy(p, &h, 2);
    };
    for (size_t off = 0; off < bytes.size(); off += info.block_bytes) {
      uint8_t* blk = bytes.data() + off;
      switch (type) {
        case GgmlType::Q8_0: scale_half(blk); break;                    // d
        case GgmlType::Q4_K: scale_half(blk); scale_half(blk + 2); break;  // d, dmin
        case GgmlType::Q6_K: scale_half(blk + info.block_bytes - 2); break;  // d at the end
        default: ADD_FAILURE() << "no scale rule for " << info.name;
      }
    }
    return bytes;
  }

  void forward(Backend& be, const int32_t* tokens, int32_t pos0, int n, float* host_logits) {
    be.begin_batch(tokens, pos0, n);
    be.embed(embd, 4.f, x);
    be.rmsnorm(x, layers[0].attn_norm, n, 1e-6f, xn);
    for (int l = 0; l < kLayers; ++l) {
      const Layer& L = layers[l];
      const Weight* ws[] = {&L.wq, &L.wk, &L.wv};
      const Buffer outs[] = {q, k, v};
      be.matmuls(xn, n, ws, outs, 3);
      be.qk_norm_rope(q, k, sh.qk_norm ? &L.q_norm : nullptr, sh.qk_norm ? &L.k_norm : nullptr, n, sh.n_head,
                      sh.n_head_kv, sh.head_dim, 1e-6f, {10000.f, 1.f, l == 0 ? RopeStyle::NeoX : RopeStyle::Normal});
      AttnParams p{sh.n_head, sh.n_head_kv, sh.head_dim, 1.f / std::sqrt(float(sh.head_dim)),
                   l == 0 ? AttnPolicy::sliding(kWindow) : AttnPolicy::dense()};
      p.softcap = sh.softcap;
      be.attention(l, q, k, v, att, p);
      be.matmul(att, L.wo, n, proj);
      be.residual_norm(proj, &L.post_attn, x, &L.ffn_norm, n, kDim, 1e-6f, xn);
      be.gated_matmul(xn, L.gate, L.up, n, sh.act, g, u);
      be.matmul(g, L.down, n, proj);
      be.residual_norm(proj, &L.post_ffn, x, l + 1 < kLayers ? &layers[l + 1].attn_norm : nullptr, n, kDim, 1e-6f,
                       xn);
    }
    Buffer last{x.data + size_t(n - 1) * kDim, kDim};
    be.rmsnorm(last, out_norm, 1, 1e-6f, xn);
    be.matmul(xn, embd, 1, logits);
    be.read(logits, 0, kVocab, host_logits);
    be.synchronize();
  }

  std::deque<std::vector<uint8_t>> scaled_;  // the uploaded bytes (uploads may read them later)
};

std::unique_ptr<Backend> cuda_backend(bool program) {
  setenv("SWRUN_DECODE_PROGRAM", program ? "1" : "0", 1);
  auto be = make_cuda_backend(0);
  unsetenv("SWRUN_DECODE_PROGRAM");
  return be;
}

class CudaProgram : public ::testing::TestWithParam<Shape> {};

TEST_P(CudaProgram, DecodeStepsMatchKernelStepsAndTheCpu) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const Shape& sh = GetParam();
  const uint64_t seed = std::random_device{}();
  auto prog_be = cuda_backend(true), plain_be = cuda_backend(false);
  auto cpu_be = make_cpu_backend(2);
  Model prog(*prog_be, sh, seed), plain(*plain_be, sh, seed), cpu(*cpu_be, sh, seed);
  const int ctx = 6 * kChunk;
  // Layer 0 slides over a ring of window + chunk rows (it wraps several times); layer 1 keeps every position.
  const std::vector<KvLayerSpec> kv = {{kWindow + kChunk, sh.n_head_kv, sh.head_dim}, {ctx, sh.n_head_kv, sh.head_dim}};
  for (Backend* be : {prog_be.get(), plain_be.get(), cpu_be.get()}) be->init_kv(kv);

  std::mt19937_64 rng(seed);
  std::vector<float> a(kVocab), b(kVocab), c(kVocab);
  std::vector<int32_t> prompt(kChunk);
  int32_t pos = 0;
  for (; pos < 4 * kChunk; pos += kChunk) {
    for (int32_t& t : prompt) t = int32_t(rng() % kVocab);
    prog.forward(*prog_be, prompt.data(), pos, kChunk, a.data());
    plain.forward(*plain_be, prompt.data(), pos, kChunk, b.data());
    cpu.forward(*cpu_be, prompt.data(), pos, kChunk, c.data());
  }
  auto* cuda = dynamic_cast<cuda::CudaBackend*>(prog_be.get());
  ASSERT_NE(cuda, nullptr);
  double worst_plain = 0, worst_cpu = 0, worst_plain_cpu = 0;
  for (; pos < ctx; ++pos) {
    const int32_t token = int32_t(rng() % kVocab);
    std::fill(a.begin(), a.end(), NAN);
    std::fill(b.begin(), b.end(), NAN);
    const bool replayed = prog_be->run_captured(1, [&] { prog.forward(*prog_be, &token, pos, 1, a.data()); });
    plain_be->run_captured(1, [&] { plain.forward(*plain_be, &token, pos, 1, b.data()); });
    cpu.forward(*cpu_be, &token, pos, 1, c.data());
    EXPECT_TRUE(replayed) << sh.name << ": every decode step runs from a graph";
    double scale = 0;
    for (float f : c) scale = std::max(scale, double(std::fabs(f)));
    for (int i = 0; i < kVocab; ++i) {
      ASSERT_TRUE(std::isfinite(a[i])) << sh.name << " pos " << pos << " logit " << i << " seed " << seed;
      worst_plain = std::max(worst_plain, std::fabs(double(a[i]) - b[i]) / scale);
      worst_cpu = std::max(worst_cpu, std::fabs(double(a[i]) - c[i]) / scale);
      worst_plain_cpu = std::max(worst_plain_cpu, std::fabs(double(b[i]) - c[i]) / scale);
    }
  }
  // Every op of the step is in the program: embed, norm, per layer (q/k/v GEMV, norm + RoPE + K/V store,
  // attention, output GEMV, residual, gated GEMV, down GEMV, residual), final norm, the (small) logits.
  EXPECT_EQ(cuda->captured_program_instructions(1), 4 + 8 * kLayers) << sh.name;
  // Both GPU paths keep K/V in bf16; the op-by-op attention also rounds q to bf16, the program keeps it fp32. The
  // program must be as close to the CPU as the kernels are.
  EXPECT_LT(worst_cpu, 1.5 * worst_plain_cpu + 2e-3) << sh.name << " seed " << seed;
  std::printf("%s: worst logit error / largest logit: program - kernels %.2e, program - cpu %.2e, kernels - cpu %.2e\n",
              sh.name, worst_plain, worst_cpu, worst_plain_cpu);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaProgram,
    ::testing::Values(Shape{"gemma3_4x1x256", 4, 1, 256, GgmlType::Q8_0, GatedAct::GeluTanh, 0.f, true},
                      Shape{"gemma2_8x2x128_softcap", 8, 2, 128, GgmlType::Q4_K, GatedAct::GeluTanh, 50.f, true},
                      Shape{"llama_8x1x64_no_qk_norm", 8, 1, 64, GgmlType::Q4_K, GatedAct::Silu, 0.f, false}),
    [](const ::testing::TestParamInfo<Shape>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace swrun
