// Qwen 2 / 2.5: the Llama block with biases on the q/k/v projections, NeoX RoPE (pairs (i, i + d/2)), tied or
// untied output (optional output bias). Query scale 1/sqrt(head_dim); sliding only if the file declares a window.
#include "models/decoder.h"

namespace swrun {

std::unique_ptr<Model> load_qwen2(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "qwen2");
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  const RopeParams rope = read_rope(f, "qwen2", c, RopeStyle::NeoX);
  resolve_layers(c, uniform_policy(c), spec, std::vector<RopeParams>(c.n_layer, rope));
  return std::make_unique<Decoder>(f, be, std::move(c), max_batch, DecoderStyle{});
}

}  // namespace swrun
