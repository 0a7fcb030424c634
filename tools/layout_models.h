// Published model layouts as GGUF files with random weights (tools/make_layout_model): the hyperparameters of
// each model's config.json, the tensors llama.cpp's converter writes for it (names, shapes, tied output, Phi-3's
// fused tensors, Llama 3.1's rope_freqs), and the tensor types llama.cpp's quantizer picks for a file type
// (llama-quant.cpp's Q4_K_M rule). Weights come from small pools of valid random blocks, tiled, so that a
// full-size file is written at disk speed.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/ggml_types.h"
#include "runtime/gguf_writer.h"

namespace swrun::layout {

struct Layout {
  const char* name;    // --layout NAME
  const char* arch;    // general.architecture
  const char* source;  // where the numbers come from (Hugging Face repository of the config.json)
  int n_layer, dim, n_head, n_head_kv, head_dim, ffn, vocab, ctx;
  double rope_base;      // rope.freq_base (0: not written, the loaders' default)
  double rope_base_swa;  // rope.freq_base_swa (0: not written)
  double norm_eps;
  int sliding_window;  // attention.sliding_window (0: not written)
  int swa_pattern;     // attention.sliding_window_pattern (0: not written)
  double attn_softcap, final_softcap;  // 0: not written
  double rope_linear;  // rope.scaling linear factor (0: none)
  double llama3_rope;  // Llama 3.1 "llama3" rope scaling factor (0: none): rope_freqs.weight, low/high 1/4, 8192
  int orig_ctx;        // rope.scaling.original_context_length (0: not written)
  bool tied;           // no output.weight: the output projection is token_embd
  bool qkv_bias;       // attn_q/k/v.bias (Qwen 2)
  bool qk_norm;        // attn_q_norm / attn_k_norm (Gemma 3, Qwen 3)
  bool post_norms;     // post_attention_norm / post_ffw_norm (Gemma 2/3)
  bool fused;          // attn_qkv and ffn_up holding gate then up (Phi-3)
  bool head_dim_keys;  // attention.key_length / value_length written (the config has head_dim)
  bool rope_dim_key;   // rope.dimension_count written
  bool vocab_size_key; // <arch>.vocab_size written (llama)
};

const std::vector<Layout>& layouts();
const Layout* find_layout(const std::string& name);  // nullptr when unknown

enum class Mix { Q4_K_M, Q8_0, F16 };
bool parse_mix(const std::string& s, Mix* out);  // "q4_k_m", "q8_0", "f16" (any case)
const char* mix_name(Mix m);
uint32_t file_type(Mix m);  // general.file_type: 15, 7, 1

enum class Role { Norm, Bias, RopeFreqs, TokenEmbd, Output, AttnQ, AttnK, AttnV, AttnQKV, AttnOut, FfnGate, FfnUp,
                  FfnDown };

struct TensorSpec {
  std::string name;
  Role role;
  std::vector<int64_t> ne;  // ne[0] is the row length
  int layer = -1;
  GgmlType type = GgmlType::F32;
  uint64_t bytes() const;
};

// The tensors of a layout in the converter's order, each with the type `mix` gives it (llama.cpp's rules for
// that file type, including its fallback for rows that are not a multiple of the block size).
std::vector<TensorSpec> layout_tensors(const Layout& l, Mix mix);

// Every hyperparameter key of the layout (general.*, <arch>.*), general.file_type included.
void set_layout_keys(GgufWriter& w, const Layout& l, Mix mix);

// Llama 3.1's rope_freqs.weight: per rotary pair, the divisor of its frequency under "llama3" scaling.
std::vector<float> llama3_rope_factors(const Layout& l);

// Valid random blocks of one type, drawn once and tiled: a tensor's bytes are the pool's, read cyclically from a
// per-tensor start block. Values are ~N(0, sigma) (sigma = 1 / sqrt(row length)): quants uniformly random,
// fp16 scales positive and finite, K-quant 6-bit scales and mins random with the mins centring each sub-block.
class BlockPool {
 public:
  BlockPool(GgmlType type, float sigma, size_t target_bytes, uint64_t seed);
  GgmlType type() const { return type_; }
  size_t block_bytes() const { return block_bytes_; }
  size_t size() const { return bytes_.size(); }
  const uint8_t* data() const { return bytes_.data(); }
  // Bytes [offset, offset + n) of a tensor that starts at pool block `start_block`.
  void read(uint64_t start_block, uint64_t offset, uint8_t* dst, size_t n) const;

 private:
  GgmlType type_;
  size_t block_bytes_;
  std::vector<uint8_t> bytes_;
};

// Adds `tensors` (from layout_tensors) to `w`: matrices as fills from pools (one per type and row length, built
// on `threads` threads, kept alive by the fills), 1-D tensors in memory (norm weights 1, small random biases,
// rope_freqs).
void add_layout_tensors(GgufWriter& w, const Layout& l, const std::vector<TensorSpec>& tensors, uint64_t seed,
                        int threads, size_t pool_bytes = size_t{8} << 20);

}  // namespace swrun::layout
