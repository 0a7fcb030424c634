// Gemma 2: Gemma 3's block without q/k norms but with softcapping of the attention scores
// (attn_logit_softcapping, default 50) and of the final logits (final_logit_softcapping, default 30).
// Layers alternate sliding (even layers, window attention.sliding_window, default 4096) and global (odd).
// Both kinds share RoPE (rope.freq_base; rope.freq_base_swa overrides it on sliding layers). Output tied.
#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {

std::unique_ptr<Model> load_gemma2(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "gemma2");
  c.sliding_window = static_cast<int32_t>(f.get_int("gemma2.attention.sliding_window", 4096));
  if (c.sliding_window <= 0) fail(f.path() + ": gemma2.attention.sliding_window must be positive");
  c.attn_scale = gemma_query_scale(c, /*layers_of_27b=*/46);
  c.attn_softcap = static_cast<float>(f.get_float("gemma2.attn_logit_softcapping", 50.0));
  c.final_softcap = static_cast<float>(f.get_float("gemma2.final_logit_softcapping", 30.0));
  if (!(c.attn_softcap > 0) || !(c.final_softcap > 0)) fail(f.path() + ": gemma2 softcapping values must be positive");
  const std::vector<bool> sliding = read_sliding_layers(f, "gemma2", c.n_layer, 2);
  const RopeParams global = read_rope(f, "gemma2", c, RopeStyle::NeoX);
  RopeParams local = global;
  local.freq_base = static_cast<float>(f.get_float("gemma2.rope.freq_base_swa", global.freq_base));
  resolve_sliding_layers(c, sliding, spec, local, global);
  DecoderStyle style;
  style.attn.post_norm = true;
  style.mlp_post_norm = true;
  style.act = GatedAct::GeluTanh;
  style.scale_embedding = true;
  return std::make_unique<Decoder>(f, be, std::move(c), max_batch, style);
}

}  // namespace swrun
