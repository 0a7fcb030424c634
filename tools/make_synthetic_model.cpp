// Writes a small random gemma3 or llama GGUF for the reference comparison: few layers, small dims, matrices
// spread over every tensor type the runtime dequantizes, GQA, a sliding window shorter than the test prompts
// (gemma3), RoPE scaling (gemma3), tied or untied output.
//
// Weight scales are chosen so that the comparison can fail: attention scores have a spread of a few units (the
// softmax is far from uniform, so masking and RoPE errors show) and final logits have an RMS of a few units (an
// absolute tolerance of 0.05 is then a tight relative one).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "runtime/common.h"
#include "runtime/gguf_writer.h"

namespace {

using swrun::GgmlType;

struct Shape {
  int n_layer, dim, n_head, n_head_kv, head_dim, ffn_dim, vocab;
};

// Every matrix type the runtime supports, handed out in turn. Rows of the K-quant types need 256 elements,
// so every matrix row length below is a multiple of 256.
const GgmlType kMatrixTypes[] = {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q6_K,
                                 GgmlType::F16,  GgmlType::Q4_0, GgmlType::Q5_K, GgmlType::Q4_1,
                                 GgmlType::BF16, GgmlType::Q5_1, GgmlType::F32};

class SyntheticModel {
 public:
  SyntheticModel(uint32_t seed) : rng_(seed) {}

  // rows x cols matrix with entries of standard deviation gain / sqrt(cols): each output element of x @ W^T
  // has standard deviation ~ gain for unit-RMS inputs.
  void matrix(const std::string& name, int64_t rows, int64_t cols, float gain) {
    matrix_of_type(name, rows, cols, gain, next_type());
  }

  void matrix_of_type(const std::string& name, int64_t rows, int64_t cols, float gain, GgmlType type) {
    std::normal_distribution<float> normal(0.f, gain / std::sqrt(static_cast<float>(cols)));
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& x : v) x = normal(rng_);
    w_.add_tensor_f32(name, type, {cols, rows}, v.data());
  }

  // A norm weight around 1 (GGUF norm weights are the full multiplier, Gemma's +1 included).
  void norm(const std::string& name, int64_t n, float center) {
    std::normal_distribution<float> normal(center, 0.15f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng_);
    w_.add_tensor_f32(name, GgmlType::F32, {n}, v.data());
  }

  swrun::GgufWriter& writer() { return w_; }

 private:
  GgmlType next_type() { return kMatrixTypes[next_++ % std::size(kMatrixTypes)]; }
  std::mt19937 rng_;
  size_t next_ = 0;
  swrun::GgufWriter w_;
};

void common_keys(swrun::GgufWriter& w, const std::string& arch, const Shape& s) {
  w.set_string("general.architecture", arch);
  w.set_string("general.name", "synthetic " + arch);
  w.set_u32(arch + ".context_length", 4096);
  w.set_u32(arch + ".block_count", s.n_layer);
  w.set_u32(arch + ".embedding_length", s.dim);
  w.set_u32(arch + ".feed_forward_length", s.ffn_dim);
  w.set_u32(arch + ".attention.head_count", s.n_head);
  w.set_u32(arch + ".attention.head_count_kv", s.n_head_kv);
}

void attention_weights(SyntheticModel& m, const std::string& p, const Shape& s, float qk_gain) {
  const int64_t q_dim = int64_t{s.n_head} * s.head_dim, kv_dim = int64_t{s.n_head_kv} * s.head_dim;
  m.matrix(p + "attn_q.weight", q_dim, s.dim, qk_gain);
  m.matrix(p + "attn_k.weight", kv_dim, s.dim, qk_gain);
  m.matrix(p + "attn_v.weight", kv_dim, s.dim, 1.f);
  m.matrix(p + "attn_output.weight", s.dim, q_dim, 1.f);
}

void mlp_weights(SyntheticModel& m, const std::string& p, const Shape& s) {
  m.matrix(p + "ffn_gate.weight", s.ffn_dim, s.dim, 1.f);
  m.matrix(p + "ffn_up.weight", s.ffn_dim, s.dim, 1.f);
  m.matrix(p + "ffn_down.weight", s.dim, s.ffn_dim, 1.f);
}

void output_weights(SyntheticModel& m, const Shape& s, bool tied, GgmlType embd_type) {
  // Tied: the embedding doubles as the output matrix, so it gets the output's scale (the RMSNorm'd stream has
  // unit RMS; embedding rows of RMS ~0.2 give logits of RMS ~3).
  m.matrix_of_type("token_embd.weight", s.vocab, s.dim, 3.f, embd_type);
  m.norm("output_norm.weight", s.dim, 1.f);
  if (!tied) m.matrix_of_type("output.weight", s.vocab, s.dim, 3.f, GgmlType::Q4_K);
}

// Seven layers: five sliding, one global (layer 5), then a sliding one after it. head_dim * n_head != dim
// exercises attention.key_length.
void make_gemma3(SyntheticModel& m, int window, bool tied) {
  const Shape s{7, 256, 4, 2, 128, 512, 1024};
  auto& w = m.writer();
  common_keys(w, "gemma3", s);
  w.set_u32("gemma3.attention.key_length", s.head_dim);
  w.set_u32("gemma3.attention.value_length", s.head_dim);
  w.set_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32("gemma3.attention.sliding_window", window);
  w.set_f32("gemma3.rope.freq_base", 1000000.f);
  w.set_string("gemma3.rope.scaling.type", "linear");
  w.set_f32("gemma3.rope.scaling.factor", 4.f);
  output_weights(m, s, tied, GgmlType::Q8_0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.norm(p + "attn_norm.weight", s.dim, 1.f);
    attention_weights(m, p, s, 1.f);
    // q and k are RMS-normalized per head, so these weights set the score spread: ~2.5^2 = 6 units.
    m.norm(p + "attn_q_norm.weight", s.head_dim, 2.5f);
    m.norm(p + "attn_k_norm.weight", s.head_dim, 2.5f);
    // Block outputs larger than the scaled embedding, so a tied output does not just echo the input token.
    m.norm(p + "post_attention_norm.weight", s.dim, 3.f);
    m.norm(p + "ffn_norm.weight", s.dim, 1.f);
    mlp_weights(m, p, s);
    m.norm(p + "post_ffw_norm.weight", s.dim, 3.f);
  }
}

// Three layers, GQA 4:2. The tied variant leaves rope.freq_base out so the default base is exercised.
void make_llama(SyntheticModel& m, bool tied) {
  const Shape s{3, 256, 4, 2, 64, 512, 1024};
  auto& w = m.writer();
  common_keys(w, "llama", s);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("llama.rope.dimension_count", s.head_dim);
  if (!tied) w.set_f32("llama.rope.freq_base", 500000.f);
  output_weights(m, s, tied, tied ? GgmlType::Q6_K : GgmlType::F16);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.norm(p + "attn_norm.weight", s.dim, 1.f);
    // Unnormalized q, k: entries of std 1.6 give score spreads of ~1.6^2 = 2.5 units after 1/sqrt(head_dim).
    attention_weights(m, p, s, 1.6f);
    m.norm(p + "ffn_norm.weight", s.dim, 1.f);
    mlp_weights(m, p, s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"make_synthetic_model: a small random gemma3 or llama GGUF for correctness tests"};
  std::string arch, out_path;
  bool tied = false;
  int window = 8;
  uint32_t seed = 1;
  app.add_option("--arch", arch, "gemma3 | llama")->required()->check(CLI::IsMember({"gemma3", "llama"}));
  app.add_option("-o,--out", out_path, "output GGUF path")->required();
  app.add_flag("--tied", tied, "no output.weight: the output projection reuses token_embd");
  app.add_option("--window", window, "gemma3 sliding window (keys)")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "random seed");
  CLI11_PARSE(app, argc, argv);

  try {
    SyntheticModel m(seed);
    if (arch == "gemma3")
      make_gemma3(m, window, tied);
    else
      make_llama(m, tied);
    m.writer().write(out_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_synthetic_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
