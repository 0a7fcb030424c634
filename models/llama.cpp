// Llama family (Llama 2, TinyLlama, Mistral): pre-norm blocks, GQA, RoPE on (2i, 2i+1) pairs, SwiGLU MLP.
// Sliding only when the file declares `llama.attention.sliding_window` or the user asks for it.
#include "models/decoder.h"

namespace swrun {

std::unique_ptr<Model> load_llama(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "llama");
  const RopeParams rope = read_rope(f, "llama", c, RopeStyle::Normal);
  resolve_layers(c, uniform_policy(c), spec, std::vector<RopeParams>(c.n_layer, rope));
  return std::make_unique<Decoder>(f, be, std::move(c), max_batch, DecoderStyle{});
}

}  // namespace swrun
