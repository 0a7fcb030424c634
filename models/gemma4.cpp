// Gemma 4 dense (E2B, E4B, 31B), as llama.cpp's src/models/gemma4.cpp builds it: Gemma 3's sandwich-normed blocks
// (scaled embedding, q/k norms, GeGLU, post norms) with
// - sliding and global layers of different head dims, KV head counts and RoPE bases (key_length_swa,
//   rope.freq_base_swa; head_count_kv may be per layer), the pattern a per-layer array; the global layers' RoPE
//   carries rope_freqs (Gemma 4's "proportional" RoPE: factors of 1e30 leave the unrotated pairs still);
// - values RMS-normalized without a gain, the key projection serving as values where a layer has no attn_v;
// - query scale 1 (the q norm sets the scores' size);
// - the last attention.shared_kv_layers layers computing no K/V: each attends over the cache of the last layer
//   before them of its own kind (sliding or global);
// - E2B/E4B's per-layer inputs: per_layer_token_embd (* sqrt(width)) plus the normalized projection of the
//   embedding, both halves scaled by 1/sqrt(2); after each layer's FFN, x += post_norm(proj(gelu(inp_gate(x)) *
//   input_l));
// - a per-layer output scale (layer_output_scale) and the final-logit softcap;
// - partial RoPE where rope.dimension_count[_swa] is below the layer's head dim (llama.cpp's n_rot: the first that
//   many values of each head rotate);
// - the MoE variant (26B-A4B): layers with a router (ffn_gate_inp) add routed GeGLU experts beside the MLP
//   (ExpertsBranchWeights: decoder's mlp_experts_block). llama.cpp weights the chosen experts by the softmax over
//   all experts renormalized over the chosen ones, which is Backend::moe's softmax over the chosen logits.
#include <algorithm>

#include "models/decoder.h"
#include "runtime/common.h"

namespace swrun {
namespace {

class Gemma4 final : public DecoderModel {
 public:
  Gemma4(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch, int per_layer_width)
      : DecoderModel(be, std::move(cfg), max_batch), pl_width_(per_layer_width) {
    require_features(be, BackendFeatures{.gemma4_blocks = true, .gemma4_moe = cfg_.n_expert > 0});
    load_output(f);
    const int64_t all_pl = int64_t{pl_width_} * cfg_.n_layer;
    if (pl_width_ > 0) {
      pl_token_embd_ = tensor(f, "per_layer_token_embd.weight", {all_pl, cfg_.vocab});
      pl_model_proj_ = tensor(f, "per_layer_model_proj.weight", {cfg_.dim, all_pl});
      pl_proj_norm_ = tensor(f, "per_layer_proj_norm.weight", {pl_width_});
      const size_t b = static_cast<size_t>(max_batch);
      pl_inputs_ = be.alloc(b * all_pl);
      pl_scratch_ = be.alloc(b * all_pl);
      pl_gate_ = be.alloc(b * pl_width_);
      pl_layer_ = be.alloc(b * pl_width_);
    }
    const AttnLayout layout{.qk_norm = true, .post_norm = true, .v_norm = true, .value_from_key = true};
    for (int l = 0; l < cfg_.n_layer; ++l) {
      const TracedOps::Range layer_range = ops_.layer(l);
      const std::string p = "blk." + std::to_string(l) + ".";
      Layer layer;
      layer.attn = load_attention(f, l, layout);
      layer.mlp = load_mlp(f, l, /*post_norm=*/true);
      if (cfg_.layers[l].experts) layer.experts = load_experts_branch(f, l);
      if (pl_width_ > 0) {
        layer.inp_gate = tensor(f, p + "inp_gate.weight", {cfg_.dim, pl_width_});
        layer.proj = tensor(f, p + "proj.weight", {pl_width_, cfg_.dim});
        layer.pl_post_norm = tensor(f, p + "post_norm.weight", {cfg_.dim});
      }
      layer.out_scale = read_out_scale(f, p + "layer_output_scale.weight");
      layers_.push_back(std::move(layer));
    }
  }

  void forward(const int32_t* tokens, int32_t pos0, int n, LogitsMode mode, float* logits) override {
    embed(tokens, pos0, n, std::sqrt(static_cast<float>(cfg_.dim)));
    if (pl_width_ > 0) per_layer_inputs(n);
    const size_t x_count = static_cast<size_t>(n) * cfg_.dim;
    ops_.rmsnorm("attn_norm", 0, s_.x, layers_[0].attn.norm, n, cfg_.norm_eps, s_.xn);
    for (int l = 0; l < cfg_.n_layer; ++l) {
      const Layer& layer = layers_[l];
      attention_block(l, layer.attn, n, layer.mlp.norm);
      if (cfg_.layers[l].experts) {
        mlp_experts_block(l, layer.mlp, layer.experts, GatedAct::GeluTanh, n, nullptr);
      } else {
        mlp_block(l, layer.mlp, GatedAct::GeluTanh, n, nullptr);
      }
      if (pl_width_ > 0) per_layer_input_block(l, n);
      if (layer.out_scale != 1.f) ops_.scale("layer_output_scale", l, s_.x, x_count, layer.out_scale);
      if (l + 1 < cfg_.n_layer)
        ops_.rmsnorm("attn_norm", l + 1, s_.x, layers_[l + 1].attn.norm, n, cfg_.norm_eps, s_.xn);
    }
    finish(n, mode, logits);
  }

 private:
  struct Layer {
    AttnWeights attn;
    MlpWeights mlp;
    ExpertsBranchWeights experts;         // MoE layers (26B-A4B)
    Weight inp_gate, proj, pl_post_norm;  // per-layer inputs (E2B/E4B)
    float out_scale = 1.f;
  };

  // A scalar the graph multiplies by, read once at load (absent: 1).
  static float read_out_scale(const GgufFile& f, const std::string& name) {
    const GgufTensor* t = f.find_tensor(name);
    if (!t) return 1.f;
    if (t->type() != GgmlType::F32 || t->n_elements() != 1) fail(f.path() + ": '" + name + "' must be one F32 value");
    return *static_cast<const float*>(t->data);
  }

  // pl_inputs_[n, n_layer * width] = (per_layer_token_embd[token] * sqrt(width) + rmsnorm(x @ model_proj^T /
  // sqrt(dim)) per layer) / sqrt(2), from the scaled embedding in s_.x.
  void per_layer_inputs(int n) {
    const int64_t all_pl = int64_t{pl_width_} * cfg_.n_layer;
    const size_t count = static_cast<size_t>(n) * all_pl;
    ops_.matmul("per_layer_model_proj", -1, s_.x, pl_model_proj_, n, pl_scratch_);
    ops_.scale("per_layer_model_proj", -1, pl_scratch_, count, 1.f / std::sqrt(static_cast<float>(cfg_.dim)));
    ops_.rmsnorm("per_layer_proj_norm", -1, pl_scratch_, pl_proj_norm_, int64_t{n} * cfg_.n_layer, cfg_.norm_eps,
                 pl_scratch_);
    ops_.embed("per_layer_token_embd", pl_token_embd_, std::sqrt(static_cast<float>(pl_width_)), pl_inputs_);
    ops_.add("per_layer_inputs", -1, pl_inputs_, pl_scratch_, count);
    ops_.scale("per_layer_inputs", -1, pl_inputs_, count, 1.f / std::sqrt(2.f));
  }

  // s_.x += post_norm(proj(gelu(s_.x @ inp_gate^T) * pl_inputs_[:, layer l's slice])).
  void per_layer_input_block(int l, int n) {
    const Layer& layer = layers_[l];
    ops_.matmul("per_layer_inp_gate", l, s_.x, layer.inp_gate, n, pl_gate_);
    ops_.copy_cols("per_layer_input", l, pl_inputs_, n, int64_t{pl_width_} * cfg_.n_layer, int64_t{l} * pl_width_,
                   pl_width_, pl_layer_);
    ops_.gated_act("per_layer_gelu", l, pl_gate_, pl_layer_, static_cast<size_t>(n) * pl_width_, GatedAct::GeluTanh);
    ops_.matmul("per_layer_proj", l, pl_gate_, layer.proj, n, s_.proj);
    ops_.residual_norm("per_layer_residual", l, s_.proj, &layer.pl_post_norm, s_.x, nullptr, n, cfg_.dim,
                       cfg_.norm_eps, s_.xn);
  }

  int pl_width_;
  Weight pl_token_embd_, pl_model_proj_, pl_proj_norm_;
  Buffer pl_inputs_, pl_scratch_, pl_gate_, pl_layer_;
  std::vector<Layer> layers_;
};

// `<arch>.<key>` as one value for every layer or an array of one per layer.
std::vector<int> per_layer_ints(const GgufFile& f, const std::string& key, int n_layer, int fallback) {
  std::vector<int> values(static_cast<size_t>(n_layer), fallback);
  const GgufValue* v = f.find(key);
  if (!v) return values;
  if (v->type != GgufValueType::ARRAY) return std::vector<int>(values.size(), static_cast<int>(v->as_int(key)));
  const GgufArray& a = v->as_array(key);
  if (a.items.size() != values.size())
    fail(f.path() + ": " + key + " has " + std::to_string(a.items.size()) + " entries for " +
         std::to_string(n_layer) + " layers");
  for (int l = 0; l < n_layer; ++l) values[l] = static_cast<int>(a.items[l].as_int(key));
  return values;
}

}  // namespace

std::unique_ptr<Model> load_gemma4(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  const std::string arch = "gemma4";
  auto key = [&](const char* k) { return arch + "." + k; };
  // head_count_kv and feed_forward_length may be per-layer arrays (read below).
  ModelConfig c = read_common_config(f, arch, /*per_layer_arrays=*/true);
  c.attn_scale = 1.f;
  c.final_softcap = static_cast<float>(f.get_float(key("final_logit_softcapping"), 0.0));
  // As llama.cpp: the pattern is a required per-layer array (no period to default to).
  if (!f.has(key("attention.sliding_window_pattern")))
    fail(f.path() + ": missing metadata key " + key("attention.sliding_window_pattern"));
  const std::vector<bool> sliding = read_sliding_layers(f, arch, c.n_layer, 0);
  if (c.sliding_window <= 0 && std::find(sliding.begin(), sliding.end(), true) != sliding.end())
    fail(f.path() + ": sliding layers without a positive " + key("attention.sliding_window"));
  const int global_dim = c.head_dim;
  const int sliding_dim = static_cast<int>(f.get_int(key("attention.key_length_swa"), global_dim));
  if (f.get_int(key("attention.value_length_swa"), sliding_dim) != sliding_dim)
    fail(f.path() + ": key_length_swa != value_length_swa is not supported");
  const std::vector<int> n_head_kv = per_layer_ints(f, key("attention.head_count_kv"), c.n_layer, c.n_head);
  const std::vector<int> ffn_dim = per_layer_ints(f, key("feed_forward_length"), c.n_layer, c.ffn_dim);
  const int shared = static_cast<int>(f.get_int(key("attention.shared_kv_layers"), 0));
  const int first_shared = c.n_layer - shared;
  if (shared < 0 || first_shared < 1) fail(f.path() + ": " + key("attention.shared_kv_layers") + " out of range");

  const GgufTensor* freqs = f.find_tensor("rope_freqs.weight");
  if (freqs && (freqs->type() != GgmlType::F32 || freqs->n_elements() != global_dim / 2))
    fail(f.path() + ": rope_freqs.weight must be F32 with one factor per rotated pair of a global head");
  RopeParams global = read_rope(f, arch, c, RopeStyle::NeoX, /*partial=*/true);
  if (freqs) global.freq_factors = be.upload(*freqs);
  RopeParams local;
  local.freq_base = static_cast<float>(f.get_float(key("rope.freq_base_swa"), 10000.0));
  local.style = RopeStyle::NeoX;
  // As llama.cpp: the sliding layers rotate rope.dimension_count_swa values, by default as many as the global ones.
  const int64_t sliding_rot =
      f.get_int(key("rope.dimension_count_swa"), f.get_int(key("rope.dimension_count"), global_dim));
  if (sliding_rot < 2 || sliding_rot > sliding_dim || sliding_rot % 2 != 0)
    fail(f.path() + ": " + key("rope.dimension_count_swa") + " " + std::to_string(sliding_rot) +
         " is not an even count of at most the sliding head dim " + std::to_string(sliding_dim));
  if (sliding_rot != sliding_dim) local.rot_dims = static_cast<int>(sliding_rot);
  c.head_dim = std::max(global_dim, sliding_dim);
  c.n_head_kv = *std::max_element(n_head_kv.begin(), n_head_kv.end());
  c.ffn_dim = *std::max_element(ffn_dim.begin(), ffn_dim.end());
  // As llama.cpp: a layer with a router has experts.
  auto has_router = [&](int l) {
    return f.find_tensor("blk." + std::to_string(l) + ".ffn_gate_inp.weight") != nullptr;
  };
  bool any_experts = false;
  for (int l = 0; l < c.n_layer; ++l) any_experts = any_experts || has_router(l);
  if (any_experts) read_expert_config(f, arch, c);
  resolve_sliding_layers(c, sliding, spec, local, global);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerConfig& lc = c.layers[l];
    lc.head_dim = sliding[l] ? sliding_dim : global_dim;
    lc.n_head_kv = n_head_kv[l];
    lc.ffn_dim = ffn_dim[l];
    lc.experts = has_router(l);
    if (lc.n_head_kv < 1 || c.n_head % lc.n_head_kv != 0 || lc.ffn_dim < 1)
      fail(f.path() + ": layer " + std::to_string(l) + " has a bad head_count_kv or feed_forward_length");
    if (l < first_shared) continue;
    for (int source = first_shared - 1; source >= 0 && lc.kv_layer < 0; --source)
      if (sliding[source] == sliding[l]) lc.kv_layer = source;
    if (lc.kv_layer < 0)
      fail(f.path() + ": shared-KV layer " + std::to_string(l) + " has no earlier layer of its kind to read");
    if (c.layers[lc.kv_layer].n_head_kv != lc.n_head_kv)
      fail(f.path() + ": shared-KV layer " + std::to_string(l) + " differs in head_count_kv from its source");
  }
  const int per_layer_width = static_cast<int>(f.get_int(key("embedding_length_per_layer_input"), 0));
  if (per_layer_width < 0) fail(f.path() + ": negative " + key("embedding_length_per_layer_input"));
  return std::make_unique<Gemma4>(f, be, std::move(c), max_batch, per_layer_width);
}

}  // namespace swrun
