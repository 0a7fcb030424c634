// Llama family (Llama 2/3, TinyLlama, Mistral): pre-norm blocks, GQA, RoPE on (2i, 2i+1) pairs, SwiGLU MLP.
// Llama 3.1+ files carry their RoPE scaling as `rope_freqs.weight`, a divisor of each pair's frequency, which
// llama.cpp applies in every layer's RoPE (its rope factors). Sliding only when the file declares
// `llama.attention.sliding_window` or the user asks for it.
#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {
namespace {

class Llama final : public Decoder {
 public:
  Llama(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch)
      : Decoder(f, be, std::move(cfg), max_batch, DecoderStyle{}) {
    const GgufTensor* t = f.find_tensor("rope_freqs.weight");
    if (t && t->type() != GgmlType::F32) fail(f.path() + ": tensor 'rope_freqs.weight' must be F32");
    const Weight factors = optional_tensor(f, "rope_freqs.weight", {cfg_.head_dim / 2});
    for (LayerConfig& l : cfg_.layers) l.rope.freq_factors = factors;
  }
};

}  // namespace

std::unique_ptr<Model> load_llama(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  ModelConfig c = read_common_config(f, "llama");
  const RopeParams rope = read_rope(f, "llama", c, RopeStyle::Normal);
  resolve_layers(c, uniform_policy(c), spec, std::vector<RopeParams>(c.n_layer, rope));
  return std::make_unique<Llama>(f, be, std::move(c), max_batch);
}

}  // namespace swrun
