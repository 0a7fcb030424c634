// Writes a small random GGUF of one architecture for the correctness tests: few layers, small dims, GQA, a sliding
// window shorter than the test prompts (gemma2/gemma3/phi3), RoPE scaling, tied or untied output, and each
// architecture's own features exercised (qwen2 biases, qwen3/gemma3 q/k norms, gemma2 softcaps that bite, phi3
// fused QKV and gate/up and LongRoPE factors that are not 1, gemma3's 27B query scale with --gemma3-27b, gpt-oss
// attention sinks that bite, YaRN RoPE and a mixture of experts with MXFP4 experts; gemma4's sliding and global
// layers of different head shapes, shared KV layers, values from the keys and per-layer inputs, its MoE variant
// with routed experts beside the MLP, and partial RoPE).
// Matrices are spread over every tensor type the runtime dequantizes, or all of one --type; --vocab copies a
// real tokenizer (tokenizer.* keys) so that llama.cpp can tokenize for the peer comparison (tests/peer).
//
// Weight scales are chosen so that the comparison can fail: attention scores have a spread of a few units (the
// softmax is far from uniform, so masking and RoPE errors show) and final logits have an RMS of a few units (an
// absolute tolerance of 0.05 is then a tight relative one).
#include <CLI/CLI.hpp>
#include <cmath>
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "runtime/common.h"
#include "runtime/gguf_vocab_copy.h"
#include "runtime/gguf_writer.h"

namespace {

using swrun::GgmlType;
using swrun::GgufValueType;

struct Shape {
  int n_layer, dim, n_head, n_head_kv, head_dim, ffn_dim, vocab;
  int64_t q_dim() const { return int64_t{n_head} * head_dim; }      // rows of the query projection
  int64_t kv_dim() const { return int64_t{n_head_kv} * head_dim; }  // rows of the key and value projections
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

  // A bias vector of standard deviation `spread`.
  void vector(const std::string& name, int64_t n, float spread) {
    std::normal_distribution<float> normal(0.f, spread);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng_);
    w_.add_tensor_f32(name, GgmlType::F32, {n}, v.data());
  }

  // n values drawn uniformly from [lo, hi] (LongRoPE factors).
  void uniform(const std::string& name, int64_t n, float lo, float hi) {
    std::uniform_real_distribution<float> uni(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = uni(rng_);
    w_.add_tensor_f32(name, GgmlType::F32, {n}, v.data());
  }

  // A [n_expert, rows, cols] stack of expert matrices (GGUF ne = {cols, rows, n_expert}), each as matrix().
  void experts(const std::string& name, int64_t n_expert, int64_t rows, int64_t cols, float gain, GgmlType type) {
    std::normal_distribution<float> normal(0.f, gain / std::sqrt(static_cast<float>(cols)));
    std::vector<float> v(static_cast<size_t>(n_expert * rows * cols));
    for (float& x : v) x = normal(rng_);
    w_.add_tensor_f32(name, type, {cols, rows, n_expert}, v.data());
  }

  // A [rows, cols] matrix of F32 values of standard deviation `spread` (the experts' biases: one row each).
  void bias_matrix(const std::string& name, int64_t rows, int64_t cols, float spread) {
    std::normal_distribution<float> normal(0.f, spread);
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& x : v) x = normal(rng_);
    w_.add_tensor_f32(name, GgmlType::F32, {cols, rows}, v.data());
  }

  // Every matrix of one type from now on.
  void set_single_type(GgmlType t) { single_ = t; }
  std::optional<GgmlType> single_type() const { return single_; }

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
  GgmlType next_type() { return single_ ? *single_ : kMatrixTypes[next_++ % std::size(kMatrixTypes)]; }
  std::mt19937 rng_;
  std::optional<GgmlType> single_;
  size_t next_ = 0;
  swrun::GgufWriter w_;
};

void common_keys(swrun::GgufWriter& w, const std::string& arch, const Shape& s, const std::string& vocab_path) {
  w.set_string("general.architecture", arch);
  w.set_string("general.name", "synthetic " + arch);
  w.set_u32(arch + ".context_length", 4096);
  w.set_u32(arch + ".block_count", s.n_layer);
  w.set_u32(arch + ".embedding_length", s.dim);
  w.set_u32(arch + ".feed_forward_length", s.ffn_dim);
  w.set_u32(arch + ".attention.head_count", s.n_head);
  w.set_u32(arch + ".attention.head_count_kv", s.n_head_kv);
  w.set_u32(arch + ".attention.key_length", s.head_dim);
  w.set_u32(arch + ".attention.value_length", s.head_dim);
  if (!vocab_path.empty()) swrun::copy_tokenizer(*swrun::GgufFile::open(vocab_path), w);
}

// Vocabulary size: the --vocab file's token count, else a small synthetic one.
int vocab_size(const std::string& vocab_path) {
  if (vocab_path.empty()) return 1024;
  return static_cast<int>(swrun::vocab_token_count(*swrun::GgufFile::open(vocab_path)));
}

void attention_weights(SyntheticModel& m, const std::string& p, const Shape& s, float qk_gain) {
  m.matrix(p + "attn_q.weight", s.q_dim(), s.dim, qk_gain);
  m.matrix(p + "attn_k.weight", s.kv_dim(), s.dim, qk_gain);
  m.matrix(p + "attn_v.weight", s.kv_dim(), s.dim, 1.f);
  m.matrix(p + "attn_output.weight", s.dim, s.q_dim(), 1.f);
}

void mlp_weights(SyntheticModel& m, const std::string& p, const Shape& s) {
  m.matrix(p + "ffn_gate.weight", s.ffn_dim, s.dim, 1.f);
  m.matrix(p + "ffn_up.weight", s.ffn_dim, s.dim, 1.f);
  m.matrix(p + "ffn_down.weight", s.dim, s.ffn_dim, 1.f);
}

void output_weights(SyntheticModel& m, const Shape& s, bool tied, GgmlType embd_type) {
  // Tied: the embedding doubles as the output matrix, so it gets the output's scale (the RMSNorm'd stream has
  // unit RMS; embedding rows of RMS ~0.2 give logits of RMS ~3).
  m.matrix_of_type("token_embd.weight", s.vocab, s.dim, 3.f, m.single_type().value_or(embd_type));
  m.norm("output_norm.weight", s.dim, 1.f);
  if (!tied) m.matrix_of_type("output.weight", s.vocab, s.dim, 3.f, m.single_type().value_or(GgmlType::Q4_K));
}

struct Options {
  std::string arch;
  bool tied = false;
  int window = 8;
  std::string vocab;  // GGUF whose tokenizer.* keys are copied ("" = none, vocabulary of 1024)
  bool gemma3_27b = false;
  bool gemma4_31b = false;  // gemma4 without per-layer inputs and shared KV layers
  bool gemma4_moe = false;  // gemma4 as the 31B's kind, every layer with routed experts beside its MLP (26B-A4B)
  bool partial_rope = false;  // gemma4: rope.dimension_count[_swa] half of each head dim
  bool rope_freqs = false;  // llama: Llama 3.1's rope_freqs.weight (per-pair frequency divisors)
  // Gains. The defaults make attention sharp and block outputs large (the Python reference computes in fp64, so
  // any error shows); --peer tones them down for the comparison against llama.cpp, whose CPU matmuls round the
  // activations to 8 bits (Q8_0/Q4_K weights) or fp16: sharp attention amplifies that rounding into differences
  // that say nothing about either implementation.
  float qk_norm = 2.5f;  // q/k norm weights: score spread ~ qk_norm^2
  float qk = 1.6f;       // unnormalized q/k projections: score spread ~ qk^2
  float post = 3.f;      // post-attention / post-FFN norm weights: block outputs larger than the scaled embedding,
                         // so a tied output does not just echo the input token
};

void layer_norms(SyntheticModel& m, const std::string& p, const Shape& s) {
  m.norm(p + "attn_norm.weight", s.dim, 1.f);
  m.norm(p + "ffn_norm.weight", s.dim, 1.f);
}

// Gemma 3: five sliding layers, one global (layer 5), then sliding ones. head_dim * n_head != dim exercises
// attention.key_length. --gemma3-27b: 62 layers (llama.cpp's marker of the 27B, whose query scale is
// 1/sqrt(dim / n_head) = 1/8 here instead of 1/sqrt(head_dim)).
void make_gemma3(SyntheticModel& m, const Options& o) {
  const Shape s{o.gemma3_27b ? 62 : 7, 256, 4, 2, 128, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "gemma3", s, o.vocab);
  w.set_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32("gemma3.attention.sliding_window", o.window);
  w.set_f32("gemma3.rope.freq_base", 1000000.f);
  w.set_string("gemma3.rope.scaling.type", "linear");
  w.set_f32("gemma3.rope.scaling.factor", 4.f);
  output_weights(m, s, o.tied, GgmlType::Q8_0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.norm(p + "attn_norm.weight", s.dim, 1.f);
    attention_weights(m, p, s, 1.f);
    // q and k are RMS-normalized per head, so these weights set the score spread: ~2.5^2 = 6 units.
    m.norm(p + "attn_q_norm.weight", s.head_dim, o.qk_norm);
    m.norm(p + "attn_k_norm.weight", s.head_dim, o.qk_norm);
    // Block outputs larger than the scaled embedding, so a tied output does not just echo the input token.
    m.norm(p + "post_attention_norm.weight", s.dim, o.post);
    m.norm(p + "ffn_norm.weight", s.dim, 1.f);
    mlp_weights(m, p, s);
    m.norm(p + "post_ffw_norm.weight", s.dim, o.post);
  }
}

// Gemma 2: four layers alternating sliding (0, 2) and global (1, 3); unnormalized q, k with a score spread
// equal to the attention softcap (a score of 2 spreads lands at 0.96 of the cap), final logits of RMS ~3 with
// top values of 10-15 against a cap of 8: both bite.
void make_gemma2(SyntheticModel& m, const Options& o) {
  const Shape s{4, 256, 4, 2, 128, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "gemma2", s, o.vocab);
  w.set_f32("gemma2.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32("gemma2.attention.sliding_window", o.window);
  w.set_f32("gemma2.rope.freq_base", 10000.f);
  w.set_f32("gemma2.attn_logit_softcapping", o.qk_norm * o.qk_norm);
  w.set_f32("gemma2.final_logit_softcapping", 8.f);
  output_weights(m, s, /*tied=*/true, GgmlType::Q8_0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layer_norms(m, p, s);
    attention_weights(m, p, s, o.qk_norm);
    m.norm(p + "post_attention_norm.weight", s.dim, o.post);
    mlp_weights(m, p, s);
    m.norm(p + "post_ffw_norm.weight", s.dim, o.post);
  }
}

// Qwen 2: three layers, GQA 4:2, q/k/v biases of the size of the projections' outputs (Qwen's k biases are
// large), NeoX RoPE.
void make_qwen2(SyntheticModel& m, const Options& o) {
  const Shape s{3, 256, 4, 2, 64, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "qwen2", s, o.vocab);
  w.set_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_f32("qwen2.rope.freq_base", 1000000.f);
  output_weights(m, s, o.tied, GgmlType::Q8_0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layer_norms(m, p, s);
    attention_weights(m, p, s, o.qk);
    m.vector(p + "attn_q.bias", s.q_dim(), 1.f);
    m.vector(p + "attn_k.bias", s.kv_dim(), 1.5f);
    m.vector(p + "attn_v.bias", s.kv_dim(), 0.5f);
    mlp_weights(m, p, s);
  }
}

// Qwen 3: three layers, GQA 4:2, head_dim 128 (n_head * head_dim != dim), per-head q/k norms.
void make_qwen3(SyntheticModel& m, const Options& o) {
  const Shape s{3, 256, 4, 2, 128, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "qwen3", s, o.vocab);
  w.set_f32("qwen3.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_f32("qwen3.rope.freq_base", 1000000.f);
  output_weights(m, s, o.tied, GgmlType::Q8_0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layer_norms(m, p, s);
    attention_weights(m, p, s, 1.f);
    m.norm(p + "attn_q_norm.weight", s.head_dim, o.qk_norm);
    m.norm(p + "attn_k_norm.weight", s.head_dim, o.qk_norm);
    mlp_weights(m, p, s);
  }
}

// Phi-3: three layers, GQA 4:2, fused attn_qkv and gate/up, a window, LongRoPE factors in [1, 4] (long) and
// [1, 1.5] (short) with an attention factor of 1.2. original_context_length 128: contexts over 128 tokens use
// the long factors, shorter ones the short factors.
void make_phi3(SyntheticModel& m, const Options& o) {
  const Shape s{3, 256, 4, 2, 64, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "phi3", s, o.vocab);
  w.set_f32("phi3.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("phi3.attention.sliding_window", o.window);
  w.set_u32("phi3.rope.dimension_count", s.head_dim);
  w.set_f32("phi3.rope.freq_base", 10000.f);
  w.set_u32("phi3.rope.scaling.original_context_length", 128);
  w.set_f32("phi3.rope.scaling.attn_factor", 1.2f);
  output_weights(m, s, o.tied, GgmlType::Q8_0);
  m.uniform("rope_factors_long.weight", s.head_dim / 2, 1.f, 4.f);
  m.uniform("rope_factors_short.weight", s.head_dim / 2, 1.f, 1.5f);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layer_norms(m, p, s);
    m.matrix(p + "attn_qkv.weight", s.q_dim() + 2 * s.kv_dim(), s.dim, o.qk);
    m.matrix(p + "attn_output.weight", s.dim, s.q_dim(), 1.f);
    m.matrix(p + "ffn_up.weight", 2 * int64_t{s.ffn_dim}, s.dim, 1.f);
    m.matrix(p + "ffn_down.weight", s.dim, s.ffn_dim, 1.f);
  }
}

// Three layers, GQA 4:2. The tied variant leaves rope.freq_base out so the default base is exercised.
void make_llama(SyntheticModel& m, const Options& o) {
  const Shape s{3, 256, 4, 2, 64, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "llama", s, o.vocab);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("llama.rope.dimension_count", s.head_dim);
  if (!o.tied) w.set_f32("llama.rope.freq_base", 500000.f);
  output_weights(m, s, o.tied, o.tied ? GgmlType::Q6_K : GgmlType::F16);
  // Llama 3.1 files carry rope scaling as divisors of each pair's frequency, 1 for the fast pairs up to 8 for the
  // slow ones: drawn from that range so that skipping them shows.
  if (o.rope_freqs) m.uniform("rope_freqs.weight", s.head_dim / 2, 1.f, 8.f);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.norm(p + "attn_norm.weight", s.dim, 1.f);
    // Unnormalized q, k: entries of std 1.6 give score spreads of ~1.6^2 = 2.5 units after 1/sqrt(head_dim).
    attention_weights(m, p, s, 1.6f);
    m.norm(p + "ffn_norm.weight", s.dim, 1.f);
    mlp_weights(m, p, s);
  }
}

// gpt-oss: a byte-level BPE vocabulary with GPT-4o's pre-tokenizer, four layers alternating sliding (0, 2) and
// dense (1, 3), GQA 8:2, biases on q/k/v and the output projection, sink logits of the size of the scores (uniform
// in [-1, 3]: some heads give the sink most of the weight), YaRN RoPE as gpt-oss sets it (factor 32 over an
// original context of 4096, so the ramp falls inside the head dimension), and 8 experts of which 2 are used, with
// biases. The experts are MXFP4 (as gpt-oss ships them) with --type mix or MXFP4, else of --type; with --type MXFP4
// every other matrix is F32.
void make_gpt_oss(SyntheticModel& m, const Options& o, GgmlType expert_type) {
  const Shape s{4, 256, 8, 2, 32, 128, vocab_size(o.vocab)};
  const int n_expert = 8, n_used = 2;
  auto& w = m.writer();
  common_keys(w, "gpt-oss", s, o.vocab);
  // gpt-oss splits text with GPT-4o's pre-tokenizer, whatever byte-level BPE vocabulary --vocab lends.
  if (!o.vocab.empty()) {
    if (swrun::GgufFile::open(o.vocab)->get_string("tokenizer.ggml.model", "") != "gpt2")
      throw swrun::Error("gpt-oss needs a byte-level BPE (gpt2) --vocab");
    w.set_string("tokenizer.ggml.pre", "gpt-4o");
  }
  w.set_f32("gpt-oss.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("gpt-oss.attention.sliding_window", o.window);
  w.set_f32("gpt-oss.rope.freq_base", 150000.f);
  w.set_string("gpt-oss.rope.scaling.type", "yarn");
  w.set_f32("gpt-oss.rope.scaling.factor", 32.f);
  w.set_u32("gpt-oss.rope.scaling.original_context_length", 4096);
  w.set_u32("gpt-oss.expert_count", n_expert);
  w.set_u32("gpt-oss.expert_used_count", n_used);
  w.set_u32("gpt-oss.expert_feed_forward_length", s.ffn_dim);
  output_weights(m, s, /*tied=*/false, GgmlType::Q8_0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.norm(p + "attn_norm.weight", s.dim, 1.f);
    attention_weights(m, p, s, o.qk);
    m.vector(p + "attn_q.bias", s.q_dim(), 0.5f);
    m.vector(p + "attn_k.bias", s.kv_dim(), 0.5f);
    m.vector(p + "attn_v.bias", s.kv_dim(), 0.5f);
    m.vector(p + "attn_output.bias", s.dim, 0.5f);
    m.uniform(p + "attn_sinks.weight", s.n_head, -1.f, 3.f);
    m.norm(p + "post_attention_norm.weight", s.dim, 1.f);  // gpt-oss's name for the FFN's pre-norm
    m.matrix_of_type(p + "ffn_gate_inp.weight", n_expert, s.dim, 2.f, GgmlType::F32);
    m.vector(p + "ffn_gate_inp.bias", n_expert, 0.5f);
    // Gate and up outputs of std ~4: the clamps at +-7 bite on a few percent of them.
    m.experts(p + "ffn_gate_exps.weight", n_expert, s.ffn_dim, s.dim, 4.f, expert_type);
    m.experts(p + "ffn_up_exps.weight", n_expert, s.ffn_dim, s.dim, 4.f, expert_type);
    m.experts(p + "ffn_down_exps.weight", n_expert, s.dim, s.ffn_dim, 0.3f, expert_type);
    m.bias_matrix(p + "ffn_gate_exps.bias", n_expert, s.ffn_dim, 0.5f);
    m.bias_matrix(p + "ffn_up_exps.bias", n_expert, s.ffn_dim, 0.5f);
    m.bias_matrix(p + "ffn_down_exps.bias", n_expert, s.dim, 0.5f);
  }
}


// Gemma 4, E-variant layout (E2B/E4B's features on 8 small layers): sliding layers 0, 1, 3, 5, 6 and global
// layers 2, 4, 7 as a per-layer pattern array; the sliding layers with head_dim 64 and 2 KV heads, the global
// ones with head_dim 128, 1 KV head (head_count_kv a per-layer array), no attn_v (their keys serve as values) and
// Gemma 4's proportional RoPE (rope_freqs: a quarter of the pairs rotate, the rest get factors of 1e30); the last
// 3 layers share KV (5 and 6 read layer 3's cache, 7 reads layer 4's) and have a double-wide FFN
// (feed_forward_length a per-layer array); per-layer inputs of width 32; a per-layer output scale in [0.5, 1.5]
// and a final-logit softcap of 10 (logits of RMS ~3 with top values beyond it). --gemma4-31b: the 31B's kind of
// layout, without per-layer inputs and shared KV layers. --gemma4-moe: that layout with 8 experts of width 256 (2
// used) beside every layer's MLP, as the 26B-A4B: a fused gate_up tensor, per-expert output scales in [0.5, 1.5], an
// F32 router whose logits have a spread of ~2 (its input is normalized and divided by sqrt(dim)); experts of --type
// (Q4_K with mix). --partial-rope: rope.dimension_count[_swa] half of each head dim.
void make_gemma4(SyntheticModel& m, const Options& o) {
  const std::vector<bool> sliding = {true, true, false, true, false, true, true, false};
  const int n_layer = static_cast<int>(sliding.size());
  const bool plain = o.gemma4_31b || o.gemma4_moe;  // no shared KV, no per-layer inputs
  const int shared_kv = plain ? 0 : 3, per_layer = plain ? 0 : 32;
  const int n_expert = 8, n_used = 2, expert_ffn = 256;
  const Shape swa{n_layer, 256, 4, 2, 64, 512, vocab_size(o.vocab)};
  const Shape global{n_layer, 256, 4, 1, 128, 512, vocab_size(o.vocab)};
  auto& w = m.writer();
  common_keys(w, "gemma4", global, o.vocab);
  auto per_layer_array = [&](const std::string& key, GgufValueType type, auto value_of) {
    auto a = std::make_shared<swrun::GgufArray>();
    a->elem_type = type;
    for (int l = 0; l < n_layer; ++l) a->items.push_back(value_of(l));
    w.set_value(key, swrun::GgufValue{GgufValueType::ARRAY, a});
  };
  per_layer_array("gemma4.attention.sliding_window_pattern", GgufValueType::BOOL,
                  [&](int l) { return swrun::GgufValue{GgufValueType::BOOL, bool(sliding[l])}; });
  per_layer_array("gemma4.attention.head_count_kv", GgufValueType::INT32, [&](int l) {
    return swrun::GgufValue{GgufValueType::INT32, int64_t{sliding[l] ? swa.n_head_kv : global.n_head_kv}};
  });
  auto ffn_of = [&](int l) { return l < n_layer - shared_kv ? swa.ffn_dim : 2 * swa.ffn_dim; };
  per_layer_array("gemma4.feed_forward_length", GgufValueType::INT32,
                  [&](int l) { return swrun::GgufValue{GgufValueType::INT32, int64_t{ffn_of(l)}}; });
  w.set_u32("gemma4.attention.key_length_swa", swa.head_dim);
  w.set_u32("gemma4.attention.value_length_swa", swa.head_dim);
  const int rot_divisor = o.partial_rope ? 2 : 1;
  w.set_u32("gemma4.rope.dimension_count", global.head_dim / rot_divisor);
  w.set_u32("gemma4.rope.dimension_count_swa", swa.head_dim / rot_divisor);
  if (o.gemma4_moe) {
    w.set_u32("gemma4.expert_count", n_expert);
    w.set_u32("gemma4.expert_used_count", n_used);
    w.set_u32("gemma4.expert_feed_forward_length", expert_ffn);
  }
  w.set_f32("gemma4.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32("gemma4.attention.sliding_window", o.window);
  w.set_u32("gemma4.attention.shared_kv_layers", shared_kv);
  w.set_u32("gemma4.embedding_length_per_layer_input", per_layer);
  w.set_f32("gemma4.rope.freq_base", 1000000.f);
  w.set_f32("gemma4.rope.freq_base_swa", 10000.f);
  w.set_f32("gemma4.final_logit_softcapping", 10.f);
  output_weights(m, global, /*tied=*/true, GgmlType::Q8_0);
  std::vector<float> rope_freqs(global.head_dim / 2, 1e30f);
  std::fill(rope_freqs.begin(), rope_freqs.begin() + global.head_dim / 8, 1.f);
  w.add_tensor_f32("rope_freqs.weight", GgmlType::F32, {global.head_dim / 2}, rope_freqs.data());
  // Rows of 32 (the per-layer projection's input) take no K-quant blocks: Q8_0 there unless one type is asked.
  const GgmlType narrow_type =
      m.single_type() == GgmlType::Q4_K ? GgmlType::Q8_0 : m.single_type().value_or(GgmlType::Q8_0);
  if (per_layer > 0) {
    m.matrix_of_type("per_layer_token_embd.weight", swa.vocab, int64_t{per_layer} * n_layer, 3.f,
                     m.single_type().value_or(GgmlType::Q8_0));
    m.matrix("per_layer_model_proj.weight", int64_t{per_layer} * n_layer, swa.dim, 1.f);
    m.norm("per_layer_proj_norm.weight", per_layer, 1.f);
  }
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const Shape& s = sliding[l] ? swa : global;
    const bool own_kv = l < n_layer - shared_kv;
    // Gemma 4 does not scale its queries: the q/k norm weights carry 1/sqrt(head_dim) for the score spread of the
    // other architectures (~qk_norm^2).
    const float qk_norm = o.qk_norm / std::pow(static_cast<float>(s.head_dim), 0.25f);
    m.norm(p + "attn_norm.weight", s.dim, 1.f);
    m.matrix(p + "attn_q.weight", s.q_dim(), s.dim, 1.f);
    m.norm(p + "attn_q_norm.weight", s.head_dim, qk_norm);
    if (own_kv) {
      m.matrix(p + "attn_k.weight", s.kv_dim(), s.dim, 1.f);
      if (sliding[l]) m.matrix(p + "attn_v.weight", s.kv_dim(), s.dim, 1.f);
      m.norm(p + "attn_k_norm.weight", s.head_dim, qk_norm);
    }
    m.matrix(p + "attn_output.weight", s.dim, s.q_dim(), 1.f);
    m.norm(p + "post_attention_norm.weight", s.dim, o.post);
    m.norm(p + "ffn_norm.weight", s.dim, 1.f);
    m.matrix(p + "ffn_gate.weight", ffn_of(l), s.dim, 1.f);
    m.matrix(p + "ffn_up.weight", ffn_of(l), s.dim, 1.f);
    m.matrix(p + "ffn_down.weight", s.dim, ffn_of(l), 1.f);
    m.norm(p + "post_ffw_norm.weight", s.dim, o.post);
    if (o.gemma4_moe) {
      const GgmlType expert_type = m.single_type().value_or(GgmlType::Q4_K);
      m.norm(p + "post_ffw_norm_1.weight", s.dim, 1.f);
      m.norm(p + "pre_ffw_norm_2.weight", s.dim, 1.f);
      m.norm(p + "post_ffw_norm_2.weight", s.dim, 1.f);
      m.norm(p + "ffn_gate_inp.scale", s.dim, 1.f);
      // The router reads a unit-RMS row divided by sqrt(dim) = 16: a gain of 2 * 16 gives logits of spread ~2.
      m.matrix_of_type(p + "ffn_gate_inp.weight", n_expert, s.dim, 32.f, GgmlType::F32);
      m.experts(p + "ffn_gate_up_exps.weight", n_expert, 2 * expert_ffn, s.dim, 1.f, expert_type);
      m.experts(p + "ffn_down_exps.weight", n_expert, s.dim, expert_ffn, 1.f, expert_type);
      m.uniform(p + "ffn_down_exps.scale", n_expert, 0.5f, 1.5f);
    }
    if (per_layer > 0) {
      m.matrix(p + "inp_gate.weight", per_layer, s.dim, 1.f);
      m.matrix_of_type(p + "proj.weight", s.dim, per_layer, 1.f, narrow_type);
      m.norm(p + "post_norm.weight", s.dim, o.post);
    }
    m.uniform(p + "layer_output_scale.weight", 1, 0.5f, 1.5f);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"make_synthetic_model: a small random GGUF of one architecture for correctness tests"};
  Options o;
  std::string out_path, type = "mix";
  uint32_t seed = 1;
  app.add_option("--arch", o.arch, "gemma2 | gemma3 | gemma4 | gpt-oss | llama | phi3 | qwen2 | qwen3")
      ->required()
      ->check(CLI::IsMember({"gemma2", "gemma3", "gemma4", "gpt-oss", "llama", "phi3", "qwen2", "qwen3"}));
  app.add_option("-o,--out", out_path, "output GGUF path")->required();
  app.add_flag("--tied", o.tied, "no output.weight: the output projection reuses token_embd (gemma2 always)");
  app.add_option("--window", o.window, "sliding window (keys) of gemma2, gemma3, gemma4, gpt-oss, phi3")
      ->check(CLI::PositiveNumber);
  app.add_option("--type", type,
                 "matrix type: mix (every supported type in turn) | Q8_0 | Q4_K | F16 | F32 | MXFP4 (gpt-oss: "
                 "MXFP4 experts, the rest F32)")
      ->check(CLI::IsMember({"mix", "Q8_0", "Q4_K", "F16", "F32", "MXFP4"}));
  app.add_option("--vocab", o.vocab, "GGUF whose tokenizer.* keys (and vocabulary size) the model takes");
  app.add_flag("--gemma3-27b", o.gemma3_27b, "gemma3 with 62 layers, the 27B's query scale");
  app.add_flag("--gemma4-31b", o.gemma4_31b, "gemma4 without per-layer inputs and shared KV layers (the 31B's kind)");
  app.add_flag("--gemma4-moe", o.gemma4_moe, "gemma4 as --gemma4-31b with routed experts beside every MLP (26B-A4B)");
  app.add_flag("--partial-rope", o.partial_rope, "gemma4: rope.dimension_count[_swa] half of each head dim");
  app.add_flag("--rope-freqs", o.rope_freqs, "llama: a rope_freqs.weight tensor (Llama 3.1's RoPE frequency divisors)");
  bool peer = false;
  app.add_flag("--peer", peer, "milder attention and block gains, for the comparison against llama.cpp");
  app.add_option("--seed", seed, "random seed");
  CLI11_PARSE(app, argc, argv);

  if (peer) {
    o.qk_norm = 1.2f;
    o.qk = 1.f;
  }
  try {
    SyntheticModel m(seed);
    const std::map<std::string, GgmlType> types = {
        {"Q8_0", GgmlType::Q8_0}, {"Q4_K", GgmlType::Q4_K}, {"F16", GgmlType::F16}, {"F32", GgmlType::F32}};
    if (type == "MXFP4" && o.arch != "gpt-oss") throw swrun::Error("--type MXFP4 is for gpt-oss's experts");
    if (type == "MXFP4") m.set_single_type(GgmlType::F32);
    else if (type != "mix") m.set_single_type(types.at(type));
    const GgmlType expert_type = type == "mix" || type == "MXFP4" ? GgmlType::MXFP4 : types.at(type);
    if (o.arch == "gemma2") make_gemma2(m, o);
    else if (o.arch == "gpt-oss") make_gpt_oss(m, o, expert_type);
    else if (o.arch == "gemma3") make_gemma3(m, o);
    else if (o.arch == "gemma4") make_gemma4(m, o);
    else if (o.arch == "phi3") make_phi3(m, o);
    else if (o.arch == "qwen2") make_qwen2(m, o);
    else if (o.arch == "qwen3") make_qwen3(m, o);
    else make_llama(m, o);
    m.writer().write(out_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_synthetic_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
