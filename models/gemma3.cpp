// Gemma 3 (270M, 1B, 4B, 12B, 27B text): scaled embedding, sandwich RMSNorms around attention and MLP, per-head
// q/k norms, NeoX RoPE, GeGLU MLP, tied output. Sliding layers (by default five of every six, window from the
// file) use their own RoPE base (rope.freq_base_swa, default 10000) and no RoPE scaling; the global layers use
// rope.freq_base and rope.scaling.* (linear, 4B and up). A file without a window has only global layers.
#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {

std::unique_ptr<Model> load_gemma3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "gemma3");
  c.attn_scale = gemma_query_scale(c, /*layers_of_27b=*/62);
  c.final_softcap = static_cast<float>(f.get_float("gemma3.final_logit_softcapping", 0.0));
  const std::vector<bool> sliding = c.sliding_window > 0 ? read_sliding_layers(f, "gemma3", c.n_layer, 6)
                                                         : std::vector<bool>(c.n_layer, false);
  RopeParams global = read_rope(f, "gemma3", c, RopeStyle::NeoX);
  global.freq_base = static_cast<float>(f.get_float("gemma3.rope.freq_base", 1000000.0));
  RopeParams local;
  local.freq_base = static_cast<float>(f.get_float("gemma3.rope.freq_base_swa", 10000.0));
  local.style = RopeStyle::NeoX;
  resolve_sliding_layers(c, sliding, spec, local, global);
  DecoderStyle style;
  style.attn = {.qk_norm = true, .post_norm = true};
  style.mlp_post_norm = true;
  style.act = GatedAct::GeluTanh;
  style.scale_embedding = true;
  return std::make_unique<Decoder>(f, be, std::move(c), max_batch, style);
}

}  // namespace swrun
