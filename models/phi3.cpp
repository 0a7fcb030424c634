// Phi-3 / Phi-3.5 / Phi-4-mini-style: the Llama block with NeoX RoPE, a fused attn_qkv projection (q, k, v rows)
// and a fused ffn_up holding gate then up rows. 128k variants carry LongRoPE: per-pair frequency divisors
// rope_factors_long / rope_factors_short (long once the context exceeds rope.scaling.original_context_length,
// as llama.cpp picks them) and rope.scaling.attn_factor on cos/sin. A window (attention.sliding_window) is
// declared for every layer when the file has one. llama.cpp itself runs Phi-3 dense (it disables Phi's window),
// so the peer comparison (tests/peer) runs with --attn dense.
#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {
namespace {

class Phi3 final : public Decoder {
 public:
  Phi3(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch, int32_t original_ctx)
      : Decoder(f, be, std::move(cfg), max_batch, DecoderStyle{}), original_ctx_(original_ctx) {
    const int64_t half = cfg_.head_dim / 2;
    long_ = factors(f, "rope_factors_long.weight", half);
    short_ = factors(f, "rope_factors_short.weight", half);
    if (!long_.impl != !short_.impl) fail(f.path() + ": LongRoPE needs both rope_factors_long and rope_factors_short");
  }

  void init_kv(int ctx, int max_batch) override {
    const Weight& chosen = ctx > original_ctx_ ? long_ : short_;
    for (LayerConfig& l : cfg_.layers) l.rope.freq_factors = chosen;
    Decoder::init_kv(ctx, max_batch);
  }

 private:
  Weight factors(const GgufFile& f, const std::string& name, int64_t half) {
    const GgufTensor* t = f.find_tensor(name);
    if (t && t->type() != GgmlType::F32) fail(f.path() + ": tensor '" + name + "' must be F32");
    return optional_tensor(f, name, {half});
  }

  int32_t original_ctx_;
  Weight long_, short_;
};

}  // namespace

std::unique_ptr<Model> load_phi3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "phi3");
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  RopeParams rope = read_rope(f, "phi3", c, RopeStyle::NeoX);
  rope.attn_factor = static_cast<float>(f.get_float("phi3.rope.scaling.attn_factor", 1.0));
  const int64_t original_ctx = f.get_int("phi3.rope.scaling.original_context_length", c.ctx_train);
  if (original_ctx <= 0 || original_ctx > INT32_MAX) fail(f.path() + ": bad phi3.rope.scaling.original_context_length");
  resolve_layers(c, uniform_policy(c), spec, std::vector<RopeParams>(c.n_layer, rope));
  return std::make_unique<Phi3>(f, be, std::move(c), max_batch, static_cast<int32_t>(original_ctx));
}

}  // namespace swrun
