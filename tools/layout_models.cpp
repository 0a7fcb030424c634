#include "tools/layout_models.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <thread>

#include "runtime/common.h"
#include "runtime/dequant.h"
#include "runtime/quant_blocks.h"

namespace swrun::layout {

// The layouts, from each model's config.json on Hugging Face (text_config for the multimodal Gemma 3 4B/12B/27B)
// and, for which keys a GGUF carries, llama.cpp's converter (conversion/*.py of llama-cpp-python 0.3.36's vendored
// llama.cpp). Vocab is the embedding rows (config vocab_size; the converter pads the token list to it).
//
// | layout       | arch   | source                            | layers | dim  | heads/kv | head | ffn   | vocab  | ctx    |
// | gemma3-270m  | gemma3 | google/gemma-3-270m               |   18   |  640 |   4/1    | 256  |  2048 | 262144 |  32768 |
// | gemma3-1b    | gemma3 | google/gemma-3-1b-it              |   26   | 1152 |   4/1    | 256  |  6912 | 262144 |  32768 |
// | gemma3-4b    | gemma3 | google/gemma-3-4b-it              |   34   | 2560 |   8/4    | 256  | 10240 | 262208 | 131072 |
// | gemma3-12b   | gemma3 | google/gemma-3-12b-it             |   48   | 3840 |  16/8    | 256  | 15360 | 262208 | 131072 |
// | gemma3-27b   | gemma3 | google/gemma-3-27b-it             |   62   | 5376 |  32/16   | 128  | 21504 | 262208 | 131072 |
// | gemma2-9b    | gemma2 | google/gemma-2-9b-it              |   42   | 3584 |  16/8    | 256  | 14336 | 256000 |   8192 |
// | llama3.1-8b  | llama  | meta-llama/Llama-3.1-8B-Instruct  |   32   | 4096 |  32/8    | 128  | 14336 | 128256 | 131072 |
// | llama3.1-70b | llama  | meta-llama/Llama-3.1-70B-Instruct |   80   | 8192 |  64/8    | 128  | 28672 | 128256 | 131072 |
// | qwen2.5-0.5b | qwen2  | Qwen/Qwen2.5-0.5B-Instruct        |   24   |  896 |  14/2    |  64  |  4864 | 151936 |  32768 |
// | qwen2.5-7b   | qwen2  | Qwen/Qwen2.5-7B-Instruct          |   28   | 3584 |  28/4    | 128  | 18944 | 152064 |  32768 |
// | qwen3-8b     | qwen3  | Qwen/Qwen3-8B                     |   36   | 4096 |  32/8    | 128  | 12288 | 151936 |  40960 |
// | phi3-mini    | phi3   | microsoft/Phi-3-mini-4k-instruct  |   32   | 3072 |  32/32   |  96  |  8192 |  32064 |   4096 |
//
// Per family: Gemma 3: RMS eps 1e-6, rope_theta 1e6 (global layers) and rope_local_base_freq 1e4 (sliding
// layers), sliding_window 512 (270M, 1B) or 1024, five of six layers sliding (pattern 6), linear RoPE scaling 8 on
// 4B/12B/27B, no softcaps, tied embeddings. Gemma 2 9B: eps 1e-6, rope_theta 1e4, sliding_window 4096 on every
// other layer (pattern 2), attn_logit_softcapping 50, final_logit_softcapping 30, tied. Llama 3.1: eps 1e-5,
// rope_theta 5e5, rope_scaling llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original context 8192; a
// GGUF carries it as the rope_freqs.weight tensor), untied. Qwen 2.5: eps 1e-6, rope_theta 1e6, q/k/v biases,
// tied on 0.5B, untied on 7B. Qwen 3: eps 1e-6, rope_theta 1e6, q/k norms, head_dim 128, untied. Phi-3 mini 4k:
// eps 1e-5, rope_theta 1e4, sliding_window 2047, original_max_position_embeddings 4096, no rope scaling, fused
// qkv and gate/up, untied.
// clang-format off
const std::vector<Layout>& layouts() {
  static const std::vector<Layout> table = {
    // name           arch      source                               L   dim  H   KV  hd   ffn    vocab   ctx     base  swa-base eps   win  pat soft soft rope-lin llama3 orig tied  bias   qknorm post   fused  hdkey  ropedim vocabkey
    {"gemma3-270m",  "gemma3", "google/gemma-3-270m",               18,  640,  4,  1, 256,  2048, 262144,  32768, 1e6, 1e4, 1e-6,  512, 6, 0,  0,  0, 0, 0,    true,  false, true,  true,  false, true,  false, false},
    {"gemma3-1b",    "gemma3", "google/gemma-3-1b-it",              26, 1152,  4,  1, 256,  6912, 262144,  32768, 1e6, 1e4, 1e-6,  512, 6, 0,  0,  0, 0, 0,    true,  false, true,  true,  false, true,  false, false},
    {"gemma3-4b",    "gemma3", "google/gemma-3-4b-it",              34, 2560,  8,  4, 256, 10240, 262208, 131072, 1e6, 1e4, 1e-6, 1024, 6, 0,  0,  8, 0, 0,    true,  false, true,  true,  false, true,  false, false},
    {"gemma3-12b",   "gemma3", "google/gemma-3-12b-it",             48, 3840, 16,  8, 256, 15360, 262208, 131072, 1e6, 1e4, 1e-6, 1024, 6, 0,  0,  8, 0, 0,    true,  false, true,  true,  false, true,  false, false},
    {"gemma3-27b",   "gemma3", "google/gemma-3-27b-it",             62, 5376, 32, 16, 128, 21504, 262208, 131072, 1e6, 1e4, 1e-6, 1024, 6, 0,  0,  8, 0, 0,    true,  false, true,  true,  false, true,  false, false},
    {"gemma2-9b",    "gemma2", "google/gemma-2-9b-it",              42, 3584, 16,  8, 256, 14336, 256000,   8192, 0,   0,   1e-6, 4096, 2, 50, 30, 0, 0, 0,    true,  false, false, true,  false, true,  false, false},
    {"llama3.1-8b",  "llama",  "meta-llama/Llama-3.1-8B-Instruct",  32, 4096, 32,  8, 128, 14336, 128256, 131072, 5e5, 0,   1e-5,    0, 0, 0,  0,  0, 8, 0,    false, false, false, false, false, false, true,  true},
    {"llama3.1-70b", "llama",  "meta-llama/Llama-3.1-70B-Instruct", 80, 8192, 64,  8, 128, 28672, 128256, 131072, 5e5, 0,   1e-5,    0, 0, 0,  0,  0, 8, 0,    false, false, false, false, false, false, true,  true},
    {"qwen2.5-0.5b", "qwen2",  "Qwen/Qwen2.5-0.5B-Instruct",        24,  896, 14,  2,  64,  4864, 151936,  32768, 1e6, 0,   1e-6,    0, 0, 0,  0,  0, 0, 0,    true,  true,  false, false, false, false, false, false},
    {"qwen2.5-7b",   "qwen2",  "Qwen/Qwen2.5-7B-Instruct",          28, 3584, 28,  4, 128, 18944, 152064,  32768, 1e6, 0,   1e-6,    0, 0, 0,  0,  0, 0, 0,    false, true,  false, false, false, false, false, false},
    {"qwen3-8b",     "qwen3",  "Qwen/Qwen3-8B",                     36, 4096, 32,  8, 128, 12288, 151936,  40960, 1e6, 0,   1e-6,    0, 0, 0,  0,  0, 0, 0,    false, false, true,  false, false, true,  false, false},
    {"phi3-mini",    "phi3",   "microsoft/Phi-3-mini-4k-instruct",  32, 3072, 32, 32,  96,  8192,  32064,   4096, 1e4, 0,   1e-5, 2047, 0, 0,  0,  0, 0, 4096, false, false, false, false, true,  false, true,  false},
  };
  return table;
}
// clang-format on

const Layout* find_layout(const std::string& name) {
  for (const Layout& l : layouts())
    if (name == l.name) return &l;
  return nullptr;
}

bool parse_mix(const std::string& s, Mix* out) {
  std::string t = s;
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "q4_k_m") *out = Mix::Q4_K_M;
  else if (t == "q8_0") *out = Mix::Q8_0;
  else if (t == "f16") *out = Mix::F16;
  else return false;
  return true;
}

const char* mix_name(Mix m) {
  switch (m) {
    case Mix::Q4_K_M: return "q4_k_m";
    case Mix::Q8_0: return "q8_0";
    case Mix::F16: return "f16";
  }
  return "?";
}

uint32_t file_type(Mix m) {
  switch (m) {
    case Mix::Q4_K_M: return 15;  // LLAMA_FTYPE_MOSTLY_Q4_K_M
    case Mix::Q8_0: return 7;     // LLAMA_FTYPE_MOSTLY_Q8_0
    case Mix::F16: return 1;      // LLAMA_FTYPE_MOSTLY_F16
  }
  return 0;
}

uint64_t TensorSpec::bytes() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(type)), n);
}

namespace {

uint32_t block_elems(GgmlType t) { return ggml_type_info(static_cast<uint32_t>(t)).block_elems; }

// llama.cpp's model size classes that change a type choice: only LLM_TYPE_70B does (attn_v one step up), which
// its loaders give a llama with 80 layers and GQA, or a qwen2 with 80 layers.
bool llamacpp_70b(const Layout& l) {
  const std::string arch = l.arch;
  return (arch == "llama" && l.n_layer == 80 && l.n_head != l.n_head_kv) || (arch == "qwen2" && l.n_layer == 80);
}

// llama-quant.cpp's tensor_type_fallback: a type whose block does not divide the rows falls back to a 32-block
// one, and to F16 if even that does not divide them.
GgmlType fallback(GgmlType t, int64_t cols) {
  if (cols % block_elems(t) == 0) return t;
  switch (t) {
    case GgmlType::Q4_K: t = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: t = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: t = GgmlType::Q8_0; break;
    default: break;
  }
  return cols % block_elems(t) == 0 ? t : GgmlType::F16;
}

// llama-quant.cpp's use_more_bits: the first and last eighth of the layers and every third one between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The type llama.cpp's quantizer gives a 2-D weight for `mix` (llama_tensor_get_type with default parameters).
// i_wv and i_down count the attn_v (attn_qkv) and ffn_down tensors seen so far, as its quantize state does.
GgmlType matrix_type(const Layout& l, Mix mix, const TensorSpec& t, int* i_wv, int* i_down) {
  const int64_t cols = t.ne[0];
  if (mix == Mix::F16) return GgmlType::F16;
  if (mix == Mix::Q8_0) return fallback(GgmlType::Q8_0, cols);  // output: Q8_0 stays Q8_0
  GgmlType type = GgmlType::Q4_K;  // the default type of Q4_K_M
  const bool output_like = t.role == Role::Output || (l.tied && t.role == Role::TokenEmbd);
  if (output_like) {
    type = cols % block_elems(GgmlType::Q4_K) != 0 ? GgmlType::Q8_0 : GgmlType::Q6_K;
  } else if (t.role == Role::TokenEmbd) {
    type = GgmlType::Q4_K;
  } else if (t.role == Role::AttnV || t.role == Role::AttnQKV) {
    if (use_more_bits(*i_wv, l.n_layer)) type = GgmlType::Q6_K;
    if (llamacpp_70b(l) && type == GgmlType::Q4_K) type = GgmlType::Q5_K;
    ++*i_wv;
  } else if (t.role == Role::FfnDown) {
    if (use_more_bits(*i_down, l.n_layer)) type = GgmlType::Q6_K;
    ++*i_down;
  }
  return fallback(type, cols);
}

}  // namespace

std::vector<TensorSpec> layout_tensors(const Layout& l, Mix mix) {
  const int64_t d = l.dim, q = int64_t{l.n_head} * l.head_dim, kv = int64_t{l.n_head_kv} * l.head_dim;
  const int64_t hd = l.head_dim, ff = l.ffn, vocab = l.vocab;
  std::vector<TensorSpec> t;
  auto add = [&](const std::string& name, Role role, std::vector<int64_t> ne, int layer = -1) {
    t.push_back({name, role, std::move(ne), layer});
  };
  add("token_embd.weight", Role::TokenEmbd, {d, vocab});
  if (l.llama3_rope > 0) add("rope_freqs.weight", Role::RopeFreqs, {hd / 2});
  for (int i = 0; i < l.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", Role::Norm, {d}, i);
    if (l.fused) {
      add(p + "attn_qkv.weight", Role::AttnQKV, {d, q + 2 * kv}, i);
    } else {
      add(p + "attn_q.weight", Role::AttnQ, {d, q}, i);
      add(p + "attn_k.weight", Role::AttnK, {d, kv}, i);
      add(p + "attn_v.weight", Role::AttnV, {d, kv}, i);
    }
    if (l.qkv_bias) {
      add(p + "attn_q.bias", Role::Bias, {q}, i);
      add(p + "attn_k.bias", Role::Bias, {kv}, i);
      add(p + "attn_v.bias", Role::Bias, {kv}, i);
    }
    add(p + "attn_output.weight", Role::AttnOut, {q, d}, i);
    if (l.qk_norm) {
      add(p + "attn_q_norm.weight", Role::Norm, {hd}, i);
      add(p + "attn_k_norm.weight", Role::Norm, {hd}, i);
    }
    if (l.post_norms) add(p + "post_attention_norm.weight", Role::Norm, {d}, i);
    add(p + "ffn_norm.weight", Role::Norm, {d}, i);
    if (l.fused) {
      add(p + "ffn_up.weight", Role::FfnUp, {d, 2 * ff}, i);  // gate rows, then up rows
    } else {
      add(p + "ffn_gate.weight", Role::FfnGate, {d, ff}, i);
      add(p + "ffn_up.weight", Role::FfnUp, {d, ff}, i);
    }
    add(p + "ffn_down.weight", Role::FfnDown, {ff, d}, i);
    if (l.post_norms) add(p + "post_ffw_norm.weight", Role::Norm, {d}, i);
  }
  add("output_norm.weight", Role::Norm, {d});
  if (!l.tied) add("output.weight", Role::Output, {d, vocab});

  int i_wv = 0, i_down = 0;
  for (TensorSpec& s : t) {
    const bool matrix = s.ne.size() >= 2;
    s.type = matrix ? matrix_type(l, mix, s, &i_wv, &i_down) : GgmlType::F32;
  }
  return t;
}

void set_layout_keys(GgufWriter& w, const Layout& l, Mix mix) {
  const std::string a = std::string(l.arch) + ".";
  w.set_string("general.architecture", l.arch);
  w.set_string("general.name", std::string(l.name) + " (random weights, layout of " + l.source + ")");
  w.set_u32(a + "context_length", static_cast<uint32_t>(l.ctx));
  w.set_u32(a + "embedding_length", static_cast<uint32_t>(l.dim));
  w.set_u32(a + "block_count", static_cast<uint32_t>(l.n_layer));
  w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(l.ffn));
  w.set_u32(a + "attention.head_count", static_cast<uint32_t>(l.n_head));
  w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(l.n_head_kv));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(l.norm_eps));
  if (l.head_dim_keys) {
    w.set_u32(a + "attention.key_length", static_cast<uint32_t>(l.head_dim));
    w.set_u32(a + "attention.value_length", static_cast<uint32_t>(l.head_dim));
  }
  if (l.rope_dim_key) w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(l.head_dim));
  if (l.vocab_size_key) w.set_u32(a + "vocab_size", static_cast<uint32_t>(l.vocab));
  if (l.rope_base > 0) w.set_f32(a + "rope.freq_base", static_cast<float>(l.rope_base));
  if (l.rope_base_swa > 0) w.set_f32(a + "rope.freq_base_swa", static_cast<float>(l.rope_base_swa));
  if (l.rope_linear > 0) {
    w.set_string(a + "rope.scaling.type", "linear");
    w.set_f32(a + "rope.scaling.factor", static_cast<float>(l.rope_linear));
  }
  if (l.orig_ctx > 0) w.set_u32(a + "rope.scaling.original_context_length", static_cast<uint32_t>(l.orig_ctx));
  if (l.sliding_window > 0) w.set_u32(a + "attention.sliding_window", static_cast<uint32_t>(l.sliding_window));
  if (l.swa_pattern > 0) w.set_u32(a + "attention.sliding_window_pattern", static_cast<uint32_t>(l.swa_pattern));
  if (l.attn_softcap > 0) w.set_f32(a + "attn_logit_softcapping", static_cast<float>(l.attn_softcap));
  if (l.final_softcap > 0) w.set_f32(a + "final_logit_softcapping", static_cast<float>(l.final_softcap));
  w.set_u32("general.file_type", file_type(mix));
  w.set_u32("general.quantization_version", 2);
}

std::vector<float> llama3_rope_factors(const Layout& l) {
  // Meta's "llama3" scaling: wavelengths shorter than original_context / high_freq_factor keep their frequency,
  // longer than original_context / low_freq_factor are divided by `factor`, and a smooth blend in between.
  const double factor = l.llama3_rope, low = 1.0, high = 4.0, original = 8192.0;
  std::vector<float> f;
  for (int i = 0; i < l.head_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(l.rope_base, 2.0 * i / l.head_dim);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < original / high) {
      f.push_back(1.f);
    } else if (wavelen > original / low) {
      f.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      f.push_back(static_cast<float>(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return f;
}

// ---- block pools ----

namespace {

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }  // [0, 1)
  int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<uint64_t>(hi - lo + 1)); }
  void bytes(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
      const uint64_t v = next();
      std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
    }
  }
  double normal() {  // Box-Muller
    const double u = 1.0 - uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2 * M_PI * v);
  }
};

// An fp16 scale near `d` (random within +-20%), never zero, inf or NaN.
void put_scale(uint8_t* p, double d, SplitMix& rng) {
  const double v = std::clamp(d * (0.8 + 0.4 * rng.uniform()), 0x1p-24, 60000.0);
  quant::store_u16(p, fp32_to_fp16(static_cast<float>(v)));
}

// 6-bit scales sc[8] and mins m[8] packed as quant::k_scale_min reads them.
void pack_k_scales(uint8_t* s, const int* sc, const int* m) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

// K-quant sub-block scales are drawn from [kScLo, kScHi]; E[sc^2] over that range sets d for a target sigma.
constexpr int kScLo = 8, kScHi = 31;
double mean_sc2() {
  double s = 0;
  for (int v = kScLo; v <= kScHi; ++v) s += double(v) * v;
  return s / (kScHi - kScLo + 1);
}

// Q4_K / Q5_K block: y = d * sc * q - dmin * m with q uniform in [0, 2^bits); dmin = k * d and m = round(mid * sc / k)
// put each sub-block's mean near zero.
void make_k_block(uint8_t* b, int bits, double sigma, SplitMix& rng) {
  const double mid = ((1 << bits) - 1) / 2.0;                          // 7.5 or 15.5
  const double var_q = (double(1 << bits) * (1 << bits) - 1) / 12.0;  // variance of a uniform quant
  const double d = sigma / std::sqrt(var_q * mean_sc2());
  const double k = bits == 4 ? 4.0 : 8.0;  // m = mid * sc / k stays within 6 bits for sc <= 31
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = rng.range(kScLo, kScHi);
    m[j] = std::min(63, static_cast<int>(std::lround(mid * sc[j] / k)));
  }
  uint8_t* scales = b + 4;
  put_scale(b, d, rng);
  const uint16_t dbits = quant::load_u16(b);
  quant::store_u16(b + 2, fp32_to_fp16(static_cast<float>(fp16_to_fp32(dbits) * k)));
  pack_k_scales(scales, sc, m);
  // The quant bytes after the 16-byte header: Q4_K qs[128]; Q5_K qh[32] then qs[128].
  rng.bytes(b + 16, bits == 4 ? sizeof(quant::BlockQ4_K) - 16 : sizeof(quant::BlockQ5_K) - 16);
}

void make_block(GgmlType type, uint8_t* b, double sigma, SplitMix& rng) {
  using namespace quant;
  switch (type) {
    case GgmlType::Q4_0:  // d * (q - 8)
      put_scale(b, sigma / std::sqrt((16.0 * 16 - 1) / 12), rng);
      rng.bytes(b + 2, 16);
      return;
    case GgmlType::Q4_1: {  // d * q + m, m = -7.5 d
      put_scale(b, sigma / std::sqrt((16.0 * 16 - 1) / 12), rng);
      store_u16(b + 2, fp32_to_fp16(-7.5f * fp16_to_fp32(load_u16(b))));
      rng.bytes(b + 4, 16);
      return;
    }
    case GgmlType::Q5_0:  // d * (q - 16)
      put_scale(b, sigma / std::sqrt((32.0 * 32 - 1) / 12), rng);
      rng.bytes(b + 2, 20);
      return;
    case GgmlType::Q5_1:
      put_scale(b, sigma / std::sqrt((32.0 * 32 - 1) / 12), rng);
      store_u16(b + 2, fp32_to_fp16(-15.5f * fp16_to_fp32(load_u16(b))));
      rng.bytes(b + 4, 20);
      return;
    case GgmlType::Q8_0: {  // d * q, q in [-127, 127]
      put_scale(b, sigma / std::sqrt((255.0 * 255 - 1) / 12), rng);
      rng.bytes(b + 2, 32);
      for (int i = 0; i < 32; ++i)
        if (b[2 + i] == 0x80) b[2 + i] = 0x81;
      return;
    }
    case GgmlType::Q4_K: make_k_block(b, 4, sigma, rng); return;
    case GgmlType::Q5_K: make_k_block(b, 5, sigma, rng); return;
    case GgmlType::Q6_K: {  // d * sc * (q - 32), int8 scales
      auto* blk = reinterpret_cast<BlockQ6_K*>(b);
      rng.bytes(blk->ql, sizeof blk->ql);
      rng.bytes(blk->qh, sizeof blk->qh);
      for (int8_t& s : blk->scales) s = static_cast<int8_t>(rng.range(kScLo, kScHi));
      put_scale(blk->d, sigma / std::sqrt((64.0 * 64 - 1) / 12 * mean_sc2()), rng);
      return;
    }
    case GgmlType::F16:
      store_u16(b, fp32_to_fp16(static_cast<float>(sigma * rng.normal())));
      return;
    case GgmlType::BF16:
      store_u16(b, fp32_to_bf16(static_cast<float>(sigma * rng.normal())));
      return;
    case GgmlType::F32: {
      const float v = static_cast<float>(sigma * rng.normal());
      std::memcpy(b, &v, 4);
      return;
    }
    default:
      fail(std::string("no random blocks for type ") + ggml_type_name(static_cast<uint32_t>(type)));
  }
}

}  // namespace

BlockPool::BlockPool(GgmlType type, float sigma, size_t target_bytes, uint64_t seed) : type_(type) {
  const GgmlTypeInfo ti = ggml_type_info(static_cast<uint32_t>(type));
  if (!ti.name || ti.block_bytes == 0) fail("BlockPool: unknown type");
  block_bytes_ = ti.block_bytes;
  const size_t blocks = std::max<size_t>(1, target_bytes / block_bytes_);
  bytes_.resize(blocks * block_bytes_);
  SplitMix rng{seed};
  for (size_t i = 0; i < blocks; ++i) make_block(type, bytes_.data() + i * block_bytes_, sigma, rng);
}

void BlockPool::read(uint64_t start_block, uint64_t offset, uint8_t* dst, size_t n) const {
  const uint64_t period = bytes_.size();
  uint64_t pos = (start_block * block_bytes_ + offset) % period;
  while (n > 0) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n, period - pos));
    std::memcpy(dst, bytes_.data() + pos, take);
    dst += take;
    n -= take;
    pos = 0;
  }
}

void add_layout_tensors(GgufWriter& w, const Layout& l, const std::vector<TensorSpec>& tensors, uint64_t seed,
                        int threads, size_t pool_bytes) {
  // One pool per (type, row length): the row length sets the values' scale.
  std::map<std::pair<GgmlType, int64_t>, std::shared_ptr<BlockPool>> pools;
  for (const TensorSpec& t : tensors)
    if (t.role != Role::Norm && t.role != Role::Bias && t.role != Role::RopeFreqs)
      pools[{t.type, t.ne[0]}] = nullptr;
  std::vector<std::pair<GgmlType, int64_t>> keys;
  for (const auto& [key, _] : pools) keys.push_back(key);
  std::vector<std::shared_ptr<BlockPool>> built(keys.size());
  std::atomic<size_t> next{0};
  std::vector<std::exception_ptr> errors(keys.size());
  auto build = [&] {
    for (size_t i; (i = next.fetch_add(1)) < keys.size();) {
      try {
        const auto [type, cols] = keys[i];
        const float sigma = 1.f / std::sqrt(static_cast<float>(cols));
        built[i] = std::make_shared<BlockPool>(type, sigma, pool_bytes,
                                               seed * 0x100000001B3ull + static_cast<uint64_t>(type) * 65537 + cols);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < std::min<int>(threads, static_cast<int>(keys.size())); ++t) workers.emplace_back(build);
  build();
  for (std::thread& t : workers) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (size_t i = 0; i < keys.size(); ++i) pools[keys[i]] = built[i];

  SplitMix small{seed ^ 0x5EED};
  for (const TensorSpec& t : tensors) {
    if (t.role == Role::Norm) {
      const std::vector<float> ones(static_cast<size_t>(t.ne[0]), 1.f);
      w.add_tensor(t.name, GgmlType::F32, t.ne, ones.data(), ones.size() * 4);
    } else if (t.role == Role::Bias) {
      std::vector<float> v(static_cast<size_t>(t.ne[0]));
      for (float& x : v) x = static_cast<float>(0.02 * small.normal());
      w.add_tensor(t.name, GgmlType::F32, t.ne, v.data(), v.size() * 4);
    } else if (t.role == Role::RopeFreqs) {
      const std::vector<float> f = llama3_rope_factors(l);
      w.add_tensor(t.name, GgmlType::F32, t.ne, f.data(), f.size() * 4);
    } else {
      std::shared_ptr<BlockPool> pool = pools.at({t.type, t.ne[0]});
      // A start block per tensor (from its name), so that tensors sharing a pool do not repeat each other.
      uint64_t h = 1469598103934665603ull;
      for (char c : t.name) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
      const uint64_t start = h % (pool->size() / pool->block_bytes());
      w.add_tensor_fill(t.name, t.type, t.ne, [pool, start](uint64_t offset, uint8_t* dst, size_t n) {
        pool->read(start, offset, dst, n);
      });
    }
  }
}

}  // namespace swrun::layout
