// Qwen 3 (dense): the Qwen 2 block without projection biases and with per-head RMSNorms of q and k before RoPE;
// head_dim from attention.key_length (n_head * head_dim may differ from dim).
#include "models/decoder.h"

namespace swrun {

std::unique_ptr<Model> load_qwen3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "qwen3");
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  const RopeParams rope = read_rope(f, "qwen3", c, RopeStyle::NeoX);
  resolve_layers(c, uniform_policy(c), spec, std::vector<RopeParams>(c.n_layer, rope));
  DecoderStyle style;
  style.attn.qk_norm = true;
  return std::make_unique<Decoder>(f, be, std::move(c), max_batch, style);
}

}  // namespace swrun
