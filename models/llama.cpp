// Llama family (Llama 2, TinyLlama, Mistral): pre-norm blocks, GQA, RoPE on (2i, 2i+1) pairs, SwiGLU MLP.
// Sliding only when the file declares `llama.attention.sliding_window` or the user asks for it.
#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {
namespace {

struct LlamaLayer {
  Weight attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
};

class Llama final : public DecoderModel {
 public:
  Llama(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch) : DecoderModel(be, std::move(cfg), max_batch) {
    const auto& c = cfg_;
    const int64_t d = c.dim, qd = int64_t{c.n_head} * c.head_dim, kvd = int64_t{c.n_head_kv} * c.head_dim;
    tok_embd_ = tensor(f, "token_embd.weight", {d, c.vocab});
    out_norm_ = tensor(f, "output_norm.weight", {d});
    output_ = optional_tensor(f, "output.weight", {d, c.vocab});
    if (!output_.impl) output_ = tok_embd_;
    for (int l = 0; l < c.n_layer; ++l) {
      const TracedOps::Range layer_range = ops_.layer(l);
      const std::string p = "blk." + std::to_string(l) + ".";
      LlamaLayer w;
      w.attn_norm = tensor(f, p + "attn_norm.weight", {d});
      w.wq = tensor(f, p + "attn_q.weight", {d, qd});
      w.wk = tensor(f, p + "attn_k.weight", {d, kvd});
      w.wv = tensor(f, p + "attn_v.weight", {d, kvd});
      w.wo = tensor(f, p + "attn_output.weight", {qd, d});
      w.ffn_norm = tensor(f, p + "ffn_norm.weight", {d});
      w.gate = tensor(f, p + "ffn_gate.weight", {d, c.ffn_dim});
      w.up = tensor(f, p + "ffn_up.weight", {d, c.ffn_dim});
      w.down = tensor(f, p + "ffn_down.weight", {c.ffn_dim, d});
      layers_.push_back(std::move(w));
    }
  }

  void forward(const int32_t* tokens, int32_t pos0, int n, LogitsMode mode, float* logits) override {
    check_batch(n);
    const auto& c = cfg_;
    const int64_t rows = n;
    be_->begin_batch(tokens, pos0, n);
    ops_.embed("embed", tok_embd_, 1.f, s_.x);
    // Each residual add also applies the next block's pre-norm (attn_norm of layer l+1 at the end of layer l).
    ops_.rmsnorm("attn_norm", 0, s_.x, layers_[0].attn_norm, rows, c.norm_eps, s_.xn);
    for (int l = 0; l < c.n_layer; ++l) {
      const LlamaLayer& w = layers_[l];
      const LayerConfig& lc = c.layers[l];
      ops_.matmuls("attn_qkv", l, s_.xn, rows, {{&w.wq, s_.q}, {&w.wk, s_.k}, {&w.wv, s_.v}});
      ops_.qk_norm_rope("rope_qk", l, s_.q, s_.k, nullptr, nullptr, rows, c.n_head, c.n_head_kv, c.head_dim,
                        c.norm_eps, lc.rope);
      ops_.attention(l, s_.q, s_.k, s_.v, s_.att, {c.n_head, c.n_head_kv, c.head_dim, c.attn_scale, lc.policy});
      ops_.matmul("attn_out", l, s_.att, w.wo, rows, s_.proj);
      ops_.residual_norm("attn_residual", l, s_.proj, nullptr, s_.x, &w.ffn_norm, rows, c.dim, c.norm_eps, s_.xn);
      ops_.gated_matmul("ffn_gate_up", l, s_.xn, w.gate, w.up, rows, GatedAct::Silu, s_.gate, s_.up);
      ops_.matmul("ffn_down", l, s_.gate, w.down, rows, s_.proj);
      const Weight* next_norm = l + 1 < c.n_layer ? &layers_[l + 1].attn_norm : nullptr;
      ops_.residual_norm("ffn_residual", l, s_.proj, nullptr, s_.x, next_norm, rows, c.dim, c.norm_eps, s_.xn);
    }
    finish(n, mode, out_norm_, output_, logits);
  }

 private:
  Weight tok_embd_, out_norm_, output_;
  std::vector<LlamaLayer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_llama(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "llama");
  const int64_t rope_dims = f.get_int("llama.rope.dimension_count", c.head_dim);
  if (rope_dims != c.head_dim) fail(f.path() + ": partial RoPE (rope.dimension_count != head dim) is not supported");
  RopeParams rope;
  rope.freq_base = static_cast<float>(f.get_float("llama.rope.freq_base", 10000.0));
  rope.freq_scale = read_rope_freq_scale(f, "llama");
  rope.style = RopeStyle::Normal;
  const AttnPolicy own = c.sliding_window > 0 ? AttnPolicy::sliding(c.sliding_window) : AttnPolicy::dense();
  const std::vector<AttnPolicy> declared(c.n_layer, own);
  const std::vector<AttnPolicy> chosen = spec.resolve(declared, c.sliding_window);
  for (int l = 0; l < c.n_layer; ++l) c.layers.push_back({chosen[l], declared[l], rope});
  return std::make_unique<Llama>(f, be, std::move(c), max_batch);
}

}  // namespace swrun
