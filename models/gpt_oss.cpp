// gpt-oss (20B, 120B): pre-norm blocks with biases on the q/k/v and output projections, a learned attention-sink
// logit per head (attn_sinks), NeoX RoPE with YaRN scaling, and a mixture-of-experts FFN (router with bias, top-k
// experts weighted by the softmax of their logits, clamped SwiGLU experts with biases; Backend::moe) whose pre-norm
// the file calls post_attention_norm. Layers alternate sliding (even layers, attention.sliding_window keys) and
// dense, unless attention.sliding_window_pattern says otherwise; rope.freq_base_swa may set the sliding layers' base.
// Query scale 1/sqrt(head_dim); output untied.
#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {

std::unique_ptr<Model> load_gpt_oss(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  const std::string arch = "gpt-oss";
  ModelConfig c = read_common_config(f, arch);
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  if (c.sliding_window <= 0) fail(f.path() + ": gpt-oss.attention.sliding_window must be positive");
  read_expert_config(f, arch, c);
  const std::vector<bool> sliding = read_sliding_layers(f, arch, c.n_layer, 2);
  const RopeParams dense_rope = read_rope(f, arch, c, RopeStyle::NeoX);
  RopeParams sliding_rope = dense_rope;
  sliding_rope.freq_base = static_cast<float>(f.get_float(arch + ".rope.freq_base_swa", dense_rope.freq_base));
  resolve_sliding_layers(c, sliding, spec, sliding_rope, dense_rope);
  for (LayerConfig& l : c.layers) l.experts = true;
  DecoderStyle style;
  style.attn.sinks = true;
  style.moe = true;
  return std::make_unique<Decoder>(f, be, std::move(c), max_batch, style);
}

}  // namespace swrun
