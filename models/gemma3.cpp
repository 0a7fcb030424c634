// Gemma 3: scaled embedding, sandwich RMSNorms around attention and MLP, per-head q/k norms, NeoX RoPE with a
// local base on sliding layers, GeGLU MLP, tied output. Five of every six layers are sliding-window layers.
#include <cmath>

#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {
namespace {

constexpr float kLocalRopeBase = 10000.f;  // Gemma 3's sliding layers use a fixed base
constexpr int kGlobalLayerPeriod = 6;      // layer l is global when (l + 1) % 6 == 0

struct Gemma3Layer {
  Weight attn_norm, wq, wk, wv, q_norm, k_norm, wo, post_attn_norm;
  Weight ffn_norm, gate, up, down, post_ffn_norm;
};

class Gemma3 final : public DecoderModel {
 public:
  Gemma3(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch) : DecoderModel(be, std::move(cfg), max_batch) {
    const auto& c = cfg_;
    const int64_t d = c.dim, qd = int64_t{c.n_head} * c.head_dim, kvd = int64_t{c.n_head_kv} * c.head_dim;
    tok_embd_ = tensor(f, "token_embd.weight", {d, c.vocab});
    out_norm_ = tensor(f, "output_norm.weight", {d});
    output_ = optional_tensor(f, "output.weight", {d, c.vocab});
    if (!output_.impl) output_ = tok_embd_;
    for (int l = 0; l < c.n_layer; ++l) {
      const TracedOps::Range layer_range = ops_.layer(l);
      const std::string p = "blk." + std::to_string(l) + ".";
      Gemma3Layer w;
      w.attn_norm = tensor(f, p + "attn_norm.weight", {d});
      w.wq = tensor(f, p + "attn_q.weight", {d, qd});
      w.wk = tensor(f, p + "attn_k.weight", {d, kvd});
      w.wv = tensor(f, p + "attn_v.weight", {d, kvd});
      w.q_norm = tensor(f, p + "attn_q_norm.weight", {c.head_dim});
      w.k_norm = tensor(f, p + "attn_k_norm.weight", {c.head_dim});
      w.wo = tensor(f, p + "attn_output.weight", {qd, d});
      w.post_attn_norm = tensor(f, p + "post_attention_norm.weight", {d});
      w.ffn_norm = tensor(f, p + "ffn_norm.weight", {d});
      w.gate = tensor(f, p + "ffn_gate.weight", {d, c.ffn_dim});
      w.up = tensor(f, p + "ffn_up.weight", {d, c.ffn_dim});
      w.down = tensor(f, p + "ffn_down.weight", {c.ffn_dim, d});
      w.post_ffn_norm = tensor(f, p + "post_ffw_norm.weight", {d});
      layers_.push_back(std::move(w));
    }
  }

  void forward(const int32_t* tokens, int32_t pos0, int n, LogitsMode mode, float* logits) override {
    check_batch(n);
    const auto& c = cfg_;
    const int64_t rows = n;
    be_->begin_batch(tokens, pos0, n);
    ops_.embed("embed", tok_embd_, std::sqrt(static_cast<float>(c.dim)), s_.x);
    // Each residual step also applies the next block's pre-norm (attn_norm of layer l+1 at the end of layer l).
    ops_.rmsnorm("attn_norm", 0, s_.x, layers_[0].attn_norm, rows, c.norm_eps, s_.xn);
    for (int l = 0; l < c.n_layer; ++l) {
      const Gemma3Layer& w = layers_[l];
      const LayerConfig& lc = c.layers[l];
      // attention block
      ops_.matmuls("attn_qkv", l, s_.xn, rows, {{&w.wq, s_.q}, {&w.wk, s_.k}, {&w.wv, s_.v}});
      ops_.qk_norm_rope("qk_norm_rope", l, s_.q, s_.k, &w.q_norm, &w.k_norm, rows, c.n_head, c.n_head_kv,
                        c.head_dim, c.norm_eps, lc.rope);
      ops_.attention(l, s_.q, s_.k, s_.v, s_.att, {c.n_head, c.n_head_kv, c.head_dim, c.attn_scale, lc.policy});
      ops_.matmul("attn_out", l, s_.att, w.wo, rows, s_.proj);
      ops_.residual_norm("attn_residual", l, s_.proj, &w.post_attn_norm, s_.x, &w.ffn_norm, rows, c.dim,
                         c.norm_eps, s_.xn);
      // MLP block
      ops_.gated_matmul("ffn_gate_up", l, s_.xn, w.gate, w.up, rows, GatedAct::GeluTanh, s_.gate, s_.up);
      ops_.matmul("ffn_down", l, s_.gate, w.down, rows, s_.proj);
      const Weight* next_norm = l + 1 < c.n_layer ? &layers_[l + 1].attn_norm : nullptr;
      ops_.residual_norm("ffn_residual", l, s_.proj, &w.post_ffn_norm, s_.x, next_norm, rows, c.dim, c.norm_eps,
                         s_.xn);
    }
    finish(n, mode, out_norm_, output_, logits);
  }

 private:
  Weight tok_embd_, out_norm_, output_;
  std::vector<Gemma3Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_gemma3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "gemma3");
  if (c.sliding_window <= 0) fail(f.path() + ": missing or invalid gemma3.attention.sliding_window");
  const float global_base = static_cast<float>(f.get_float("gemma3.rope.freq_base", 1000000.0));
  const float global_scale = read_rope_freq_scale(f, "gemma3");
  std::vector<AttnPolicy> declared;
  for (int l = 0; l < c.n_layer; ++l) {
    const bool global = (l + 1) % kGlobalLayerPeriod == 0;
    declared.push_back(global ? AttnPolicy::dense() : AttnPolicy::sliding(c.sliding_window));
  }
  const std::vector<AttnPolicy> chosen = spec.resolve(declared, c.sliding_window);
  for (int l = 0; l < c.n_layer; ++l) {
    const bool global = (l + 1) % kGlobalLayerPeriod == 0;
    // RoPE follows the layer's role in the model, not the attention kernel chosen for it.
    RopeParams rope;
    rope.freq_base = global ? global_base : kLocalRopeBase;
    rope.freq_scale = global ? global_scale : 1.f;
    rope.style = RopeStyle::NeoX;
    c.layers.push_back({chosen[l], declared[l], rope});
  }
  return std::make_unique<Gemma3>(f, be, std::move(c), max_batch);
}

}  // namespace swrun
