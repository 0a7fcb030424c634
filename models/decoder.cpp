#include "models/decoder.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "runtime/common.h"

namespace swrun {

// The fused ops take an absent optional weight (impl == nullptr) as a null pointer.
static const Weight* if_present(const Weight& w) { return w.impl ? &w : nullptr; }

DecoderModel::DecoderModel(Backend& be, ModelConfig cfg, int max_batch) : Model(be, std::move(cfg)), ops_(be) {
  const auto& c = cfg_;
  const size_t b = static_cast<size_t>(max_batch);
  s_.max_batch = max_batch;
  s_.x = be.alloc(b * c.dim);
  s_.xn = be.alloc(b * c.dim);
  s_.q = be.alloc(b * c.n_head * c.head_dim);
  s_.k = be.alloc(b * c.n_head_kv * c.head_dim);
  s_.v = be.alloc(b * c.n_head_kv * c.head_dim);
  s_.att = be.alloc(b * c.n_head * c.head_dim);
  s_.proj = be.alloc(b * c.dim);
  s_.gate = be.alloc(b * c.ffn_dim);
  s_.up = be.alloc(b * c.ffn_dim);
  s_.logits = be.alloc(static_cast<size_t>(c.vocab));
  s_.logits_rows = 1;
  for (const LayerConfig& l : c.layers)
    if (l.head_dim > c.head_dim || l.n_head_kv > c.n_head_kv || l.ffn_dim > c.ffn_dim)
      fail(c.arch + ": a layer's shape exceeds the model's largest (ModelConfig::head_dim, n_head_kv, ffn_dim)");
}

Decoder::Decoder(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch, const DecoderStyle& style)
    : DecoderModel(be, std::move(cfg), max_batch), style_(style) {
  bool yarn = false;
  for (const LayerConfig& l : cfg_.layers) yarn = yarn || l.rope.yarn;
  require_features(be, BackendFeatures{style_.attn.sinks, style_.moe, yarn, false});
  load_output(f);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const TracedOps::Range layer_range = ops_.layer(l);
    Layer layer;
    layer.attn = load_attention(f, l, style_.attn);
    if (style_.moe) {
      layer.moe = load_moe(f, l);
    } else {
      layer.mlp = load_mlp(f, l, style_.mlp_post_norm);
    }
    layers_.push_back(std::move(layer));
  }
}

void Decoder::forward(const int32_t* tokens, int32_t pos0, int n, LogitsMode mode, float* logits) {
  embed(tokens, pos0, n, style_.scale_embedding ? std::sqrt(static_cast<float>(cfg_.dim)) : 1.f);
  // Each residual step also applies the next block's pre-norm, so only the first one stands alone.
  ops_.rmsnorm("attn_norm", 0, s_.x, layers_[0].attn.norm, n, cfg_.norm_eps, s_.xn);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    attention_block(l, layers_[l].attn, n, layers_[l].ffn_norm());
    const Weight* next_norm = l + 1 < cfg_.n_layer ? &layers_[l + 1].attn.norm : nullptr;
    if (style_.moe) {
      moe_block(l, layers_[l].moe, n, next_norm);
    } else {
      mlp_block(l, layers_[l].mlp, style_.act, n, next_norm);
    }
  }
  finish(n, mode, logits);
}

void DecoderModel::check_batch(int n) const {
  if (n < 1 || n > s_.max_batch)
    fail("batch of " + std::to_string(n) + " tokens, the model was loaded for at most " +
         std::to_string(s_.max_batch));
}

void DecoderModel::init_kv(int ctx, int max_batch) {
  const std::vector<AttnSpec> specs = std::exchange(sized_for_, {});
  std::vector<KvLayerSpec> layers = kv_geometry(ctx, max_batch);
  for (auto s = specs.rbegin(); s != specs.rend(); ++s) {  // ends with specs.front()'s policies set
    set_attention(*s);
    const std::vector<KvLayerSpec> spec_layers = kv_geometry(ctx, max_batch);
    for (size_t l = 0; l < layers.size(); ++l)
      layers[l].capacity = std::max(layers[l].capacity, spec_layers[l].capacity);
  }
  be_->init_kv(layers);
  kv_layers_ = layers;
}

void DecoderModel::init_kv_for_specs(int ctx, int max_batch, const std::vector<AttnSpec>& specs) {
  if (specs.empty()) fail("init_kv_for_specs: no attention spec");
  set_attention(specs.front());
  sized_for_ = specs;
  init_kv(ctx, max_batch);  // virtual: an architecture's own step (Phi-3's RoPE factors) runs as for one spec
}

std::vector<KvLayerSpec> DecoderModel::kv_geometry(int ctx, int max_batch) const {
  if (ctx < 1) fail("context size must be at least 1");
  std::vector<KvLayerSpec> layers;
  for (const LayerConfig& l : cfg_.layers) {
    KvLayerSpec s{ctx, l.n_head_kv, l.head_dim, kv_types_};
    // A causal window of W keys plus one batch of new keys is all a sliding layer ever reads.
    if (l.policy.windowed() && l.policy.right == 0)
      s.capacity = static_cast<int32_t>(std::min<int64_t>(ctx, int64_t{l.policy.window_keys()} + max_batch));
    layers.push_back(s);
  }
  // A layer that reads another's cache keeps none; that cache holds what its widest reader needs.
  for (size_t l = 0; l < layers.size(); ++l) {
    const int source = cfg_.layers[l].kv_layer;
    if (source < 0) continue;
    layers[source].capacity = std::max(layers[source].capacity, layers[l].capacity);
    layers[l].capacity = 0;
  }
  return layers;
}

void DecoderModel::finish(int n, LogitsMode mode, float* logits) {
  if (mode == LogitsMode::None) return;
  const bool last = mode == LogitsMode::Last || mode == LogitsMode::Top;
  size_t first = last ? static_cast<size_t>(n - 1) : 0;
  size_t rows = last ? 1 : static_cast<size_t>(n);
  if (mode == LogitsMode::Kept) {
    if (kept_.first < 0 || kept_.rows < 1 || kept_.first > n - kept_.rows)
      fail("forward_logits: rows " + std::to_string(kept_.first) + "+" + std::to_string(kept_.rows) +
           " are outside a batch of " + std::to_string(n));
    first = static_cast<size_t>(kept_.first);
    rows = static_cast<size_t>(kept_.rows);
  }
  if (static_cast<int>(rows) > s_.logits_rows) {  // all-position logits are rare (A/B, tests): grow on demand
    s_.logits = be_->alloc(static_cast<size_t>(s_.max_batch) * cfg_.vocab);
    s_.logits_rows = s_.max_batch;
  }
  Buffer xr = rows_of(s_.x, first, rows, cfg_.dim);
  Buffer nr = rows_of(s_.xn, 0, rows, cfg_.dim);
  ops_.rmsnorm("output_norm", cfg_.n_layer, xr, out_norm_, static_cast<int64_t>(rows), cfg_.norm_eps, nr);
  {
    be_->push_range("logits", cfg_.n_layer, OpKind::Logits);
    be_->matmul(nr, output_, static_cast<int64_t>(rows), s_.logits);
    be_->pop_range();
  }
  if (output_bias_.impl) ops_.add_bias("output_bias", cfg_.n_layer, s_.logits, output_bias_, static_cast<int64_t>(rows));
  if (cfg_.final_softcap > 0.f)
    ops_.softcap("final_softcap", cfg_.n_layer, s_.logits, rows * cfg_.vocab, cfg_.final_softcap);
  if (mode == LogitsMode::Kept) {
    kept_.logits = rows_of(s_.logits, 0, rows, cfg_.vocab);
    return;
  }
  if (mode == LogitsMode::Top)
    be_->top_k(s_.logits, static_cast<size_t>(cfg_.vocab), top_.k, top_.ids, logits);
  else
    be_->read(s_.logits, 0, rows * cfg_.vocab, logits);
  be_->synchronize();
}

void DecoderModel::embed(const int32_t* tokens, int32_t pos0, int n, float scale) {
  check_batch(n);
  be_->begin_batch(tokens, pos0, n);
  ops_.embed("embed", tok_embd_, scale, s_.x);
}

void DecoderModel::attention_block(int l, const AttnWeights& w, int n, const Weight& next_norm) {
  const ModelConfig& c = cfg_;
  const LayerConfig& lc = c.layers[l];
  const int64_t rows = n;
  if (lc.kv_layer >= 0) {  // keys and values come from an earlier layer's cache: only the query is projected
    ops_.matmul("attn_q", l, s_.xn, w.wq, rows, s_.q);
    if (w.bq.impl) ops_.add_bias("attn_q_bias", l, s_.q, w.bq, rows);
    if (w.q_norm.impl) ops_.rmsnorm("attn_q_norm", l, s_.q, w.q_norm, rows * c.n_head, c.norm_eps, s_.q);
    ops_.rope("attn_q_rope", l, s_.q, c.n_head, lc.head_dim, lc.rope);
  } else {
    ops_.matmuls("attn_qkv", l, s_.xn, rows, {{&w.wq, s_.q}, {&w.wk, s_.k}, {&w.wv, s_.v}});
    if (w.bq.impl) ops_.add_bias("attn_q_bias", l, s_.q, w.bq, rows);
    if (w.bk.impl) ops_.add_bias("attn_k_bias", l, s_.k, w.bk, rows);
    if (w.bv.impl) ops_.add_bias("attn_v_bias", l, s_.v, w.bv, rows);
    if (w.v_norm) {
      Weight no_gain;
      no_gain.name = "v_norm";
      no_gain.rows = 1;
      no_gain.cols = lc.head_dim;
      ops_.rmsnorm("attn_v_norm", l, s_.v, no_gain, rows * lc.n_head_kv, c.norm_eps, s_.v);
    }
    ops_.qk_norm_rope("qk_norm_rope", l, s_.q, s_.k, if_present(w.q_norm), if_present(w.k_norm), rows, c.n_head,
                      lc.n_head_kv, lc.head_dim, c.norm_eps, lc.rope);
  }
  const AttnParams p{c.n_head, lc.n_head_kv, lc.head_dim, c.attn_scale, lc.policy, c.attn_softcap, w.sinks,
                     lc.kv_layer};
  ops_.attention(l, s_.q, s_.k, s_.v, s_.att, p);
  ops_.matmul("attn_out", l, s_.att, w.wo, rows, s_.proj);
  if (w.bo.impl) ops_.add_bias("attn_out_bias", l, s_.proj, w.bo, rows);
  ops_.residual_norm("attn_residual", l, s_.proj, if_present(w.post_norm), s_.x, &next_norm, rows, c.dim, c.norm_eps,
                     s_.xn);
}

void DecoderModel::mlp_block(int l, const MlpWeights& w, GatedAct act, int n, const Weight* next_norm) {
  const ModelConfig& c = cfg_;
  const int64_t rows = n;
  ops_.gated_mlp("ffn", l, s_.xn, w.gate, w.up, w.down, rows, act, s_.gate, s_.up, s_.proj);
  ops_.residual_norm("ffn_residual", l, s_.proj, if_present(w.post_norm), s_.x, next_norm, rows,
                     c.dim, c.norm_eps, s_.xn);
}

void DecoderModel::moe_block(int l, const MoeWeights& w, int n, const Weight* next_norm) {
  const ModelConfig& c = cfg_;
  const int64_t rows = n;
  ops_.moe("ffn_moe", l, s_.xn, rows, w.ffn, s_.proj);
  ops_.residual_norm("ffn_residual", l, s_.proj, nullptr, s_.x, next_norm, rows, c.dim, c.norm_eps, s_.xn);
}

void DecoderModel::mlp_experts_block(int l, const MlpWeights& mlp, const ExpertsBranchWeights& w, GatedAct act,
                                     int n, const Weight* next_norm) {
  const ModelConfig& c = cfg_;
  const int64_t rows = n;
  const size_t count = static_cast<size_t>(n) * c.dim;
  ops_.gated_mlp("ffn", l, s_.xn, mlp.gate, mlp.up, mlp.down, rows, act, s_.gate, s_.up, s_.proj);
  ops_.rmsnorm("ffn_mlp_post_norm", l, s_.proj, w.mlp_post_norm, rows, c.norm_eps, s_.proj);
  ops_.rmsnorm("ffn_router_norm", l, s_.x, w.router_scale, rows, c.norm_eps, s_.router_in);
  ops_.scale("ffn_router_norm", l, s_.router_in, count, 1.f / std::sqrt(static_cast<float>(c.dim)));
  ops_.rmsnorm("ffn_experts_norm", l, s_.x, w.experts.norm, rows, c.norm_eps, s_.xn);
  ops_.moe("ffn_moe", l, s_.xn, rows, w.experts.ffn, s_.experts_out);
  ops_.rmsnorm("ffn_experts_post_norm", l, s_.experts_out, w.experts_post_norm, rows, c.norm_eps, s_.experts_out);
  ops_.add("ffn_mlp_plus_experts", l, s_.proj, s_.experts_out, count);
  ops_.residual_norm("ffn_residual", l, s_.proj, &mlp.post_norm, s_.x, next_norm, rows, c.dim, c.norm_eps, s_.xn);
}

AttnWeights DecoderModel::load_attention(const GgufFile& f, int l, const AttnLayout& layout) {
  const ModelConfig& c = cfg_;
  const LayerConfig& lc = c.layers[l];
  const int64_t d = c.dim, qd = int64_t{c.n_head} * lc.head_dim, kvd = int64_t{lc.n_head_kv} * lc.head_dim;
  const bool own_kv = lc.kv_layer < 0;
  const std::string p = "blk." + std::to_string(l) + ".";
  AttnWeights w;
  w.norm = tensor(f, p + "attn_norm.weight", {d});
  if (f.find_tensor(p + "attn_qkv.weight")) {
    // Fused projection: rows [0, qd) are q, then k, then v (llama.cpp's layout).
    if (f.find_tensor(p + "attn_qkv.bias")) fail(f.path() + ": fused bias '" + p + "attn_qkv.bias' is not supported");
    const Weight qkv = tensor(f, p + "attn_qkv.weight", {d, qd + 2 * kvd});
    w.wq = be_->weight_rows(qkv, 0, qd);
    w.wk = be_->weight_rows(qkv, qd, kvd);
    w.wv = be_->weight_rows(qkv, qd + kvd, kvd);
  } else {
    w.wq = tensor(f, p + "attn_q.weight", {d, qd});
    if (own_kv) {
      w.wk = tensor(f, p + "attn_k.weight", {d, kvd});
      // Without attn_v the values are the keys' projection, taken before the key norm and RoPE: projecting
      // twice through attn_k gives exactly that and keeps the block's q/k/v shape.
      w.wv = layout.value_from_key ? optional_tensor(f, p + "attn_v.weight", {d, kvd})
                                   : tensor(f, p + "attn_v.weight", {d, kvd});
      if (!w.wv.impl) w.wv = w.wk;
    }
  }
  w.bq = optional_tensor(f, p + "attn_q.bias", {qd});
  w.bk = optional_tensor(f, p + "attn_k.bias", {kvd});
  w.bv = optional_tensor(f, p + "attn_v.bias", {kvd});
  if (layout.qk_norm) {
    w.q_norm = tensor(f, p + "attn_q_norm.weight", {lc.head_dim});
    if (own_kv) w.k_norm = tensor(f, p + "attn_k_norm.weight", {lc.head_dim});
  }
  w.v_norm = layout.v_norm;
  w.wo = tensor(f, p + "attn_output.weight", {qd, d});
  w.bo = optional_tensor(f, p + "attn_output.bias", {d});
  if (layout.post_norm) w.post_norm = tensor(f, p + "post_attention_norm.weight", {d});
  if (layout.sinks) {
    const GgufTensor* t = f.find_tensor(p + "attn_sinks.weight");
    if (t && t->type() != GgmlType::F32) fail(f.path() + ": tensor '" + p + "attn_sinks.weight' must be F32");
    w.sinks = tensor(f, p + "attn_sinks.weight", {c.n_head});
  }
  return w;
}

MoeWeights DecoderModel::load_moe(const GgufFile& f, int l) {
  const ModelConfig& c = cfg_;
  const int64_t d = c.dim, ff = c.expert_ffn_dim, ne = c.n_expert;
  const std::string p = "blk." + std::to_string(l) + ".";
  MoeWeights w;
  w.norm = tensor(f, p + "post_attention_norm.weight", {d});
  MoeFfn& m = w.ffn;
  m.router = tensor(f, p + "ffn_gate_inp.weight", {d, ne});
  m.router_bias = optional_tensor(f, p + "ffn_gate_inp.bias", {ne});
  m.gate = tensor(f, p + "ffn_gate_exps.weight", {d, ff, ne});
  m.up = tensor(f, p + "ffn_up_exps.weight", {d, ff, ne});
  m.down = tensor(f, p + "ffn_down_exps.weight", {ff, d, ne});
  m.gate_bias = optional_tensor(f, p + "ffn_gate_exps.bias", {ff, ne});
  m.up_bias = optional_tensor(f, p + "ffn_up_exps.bias", {ff, ne});
  m.down_bias = optional_tensor(f, p + "ffn_down_exps.bias", {d, ne});
  m.n_expert = c.n_expert;
  m.n_used = c.n_expert_used;
  m.ffn = c.expert_ffn_dim;
  return w;
}

ExpertsBranchWeights DecoderModel::load_experts_branch(const GgufFile& f, int l) {
  const ModelConfig& c = cfg_;
  const int64_t d = c.dim, ff = c.expert_ffn_dim, ne = c.n_expert;
  const std::string p = "blk." + std::to_string(l) + ".";
  if (!s_.router_in.data) {
    const size_t rows = static_cast<size_t>(s_.max_batch);
    s_.router_in = be_->alloc(rows * c.dim);
    s_.experts_out = be_->alloc(rows * c.dim);
  }
  for (const char* scaled : {"ffn_gate_exps.scale", "ffn_up_exps.scale"})
    if (f.find_tensor(p + scaled))
      fail(f.path() + ": tensor '" + p + scaled + "' (scaled gate/up experts) is not supported");
  ExpertsBranchWeights w;
  w.experts.norm = tensor(f, p + "pre_ffw_norm_2.weight", {d});
  w.mlp_post_norm = tensor(f, p + "post_ffw_norm_1.weight", {d});
  w.experts_post_norm = tensor(f, p + "post_ffw_norm_2.weight", {d});
  w.router_scale = tensor(f, p + "ffn_gate_inp.scale", {d});
  MoeFfn& m = w.experts.ffn;
  m.router = tensor(f, p + "ffn_gate_inp.weight", {d, ne});
  if (f.find_tensor(p + "ffn_gate_up_exps.weight")) {
    m.gate_up = tensor(f, p + "ffn_gate_up_exps.weight", {d, 2 * ff, ne});
  } else {
    m.gate = tensor(f, p + "ffn_gate_exps.weight", {d, ff, ne});
    m.up = tensor(f, p + "ffn_up_exps.weight", {d, ff, ne});
  }
  m.down = tensor(f, p + "ffn_down_exps.weight", {ff, d, ne});
  m.down_scale = optional_tensor(f, p + "ffn_down_exps.scale", {ne});
  m.n_expert = c.n_expert;
  m.n_used = c.n_expert_used;
  m.ffn = c.expert_ffn_dim;
  m.act = MoeAct::GeluTanh;
  m.router_input = s_.router_in;
  return w;
}

MlpWeights DecoderModel::load_mlp(const GgufFile& f, int l, bool post_norm) {
  const ModelConfig& c = cfg_;
  const int64_t d = c.dim, ff = c.layers[l].ffn_dim;
  const std::string p = "blk." + std::to_string(l) + ".";
  MlpWeights w;
  w.norm = tensor(f, p + "ffn_norm.weight", {d});
  if (f.find_tensor(p + "ffn_gate.weight")) {
    w.gate = tensor(f, p + "ffn_gate.weight", {d, ff});
    w.up = tensor(f, p + "ffn_up.weight", {d, ff});
  } else {
    // Fused gate/up (Phi-3): rows [0, ffn_dim) are the gate, the next ffn_dim the up projection.
    const Weight gate_up = tensor(f, p + "ffn_up.weight", {d, 2 * ff});
    w.gate = be_->weight_rows(gate_up, 0, ff);
    w.up = be_->weight_rows(gate_up, ff, ff);
  }
  w.down = tensor(f, p + "ffn_down.weight", {ff, d});
  if (post_norm) w.post_norm = tensor(f, p + "post_ffw_norm.weight", {d});
  return w;
}

void DecoderModel::load_output(const GgufFile& f) {
  const int64_t d = cfg_.dim;
  tok_embd_ = tensor(f, "token_embd.weight", {d, cfg_.vocab});
  out_norm_ = tensor(f, "output_norm.weight", {d});
  output_ = optional_tensor(f, "output.weight", {d, cfg_.vocab});
  if (!output_.impl) output_ = tok_embd_;
  output_bias_ = optional_tensor(f, "output.bias", {cfg_.vocab});
}

Weight DecoderModel::optional_tensor(const GgufFile& f, const std::string& name,
                                     std::initializer_list<int64_t> shape) {
  const GgufTensor* t = f.find_tensor(name);
  if (!t) return Weight{};
  std::vector<int64_t> want(shape);
  if (t->ne != want) {
    std::string got, exp;
    for (int64_t d : t->ne) got += (got.empty() ? "" : " x ") + std::to_string(d);
    for (int64_t d : want) exp += (exp.empty() ? "" : " x ") + std::to_string(d);
    fail(f.path() + ": tensor '" + name + "' has shape [" + got + "], expected [" + exp + "]");
  }
  return be_->upload(*t);
}

Weight DecoderModel::tensor(const GgufFile& f, const std::string& name, std::initializer_list<int64_t> shape) {
  if (!f.find_tensor(name)) fail(f.path() + ": missing tensor '" + name + "'");
  return optional_tensor(f, name, shape);
}

ModelConfig read_common_config(const GgufFile& f, const std::string& arch, bool per_layer_arrays) {
  auto key = [&](const char* k) { return arch + "." + k; };
  // A per-layer array stands for its largest entry (what the buffers are sized by) where the architecture reads
  // the entries itself; elsewhere an array is refused by as_int.
  auto largest = [&](const std::string& k, std::optional<int64_t> fallback) {
    const GgufValue* v = f.find(k);
    if (!per_layer_arrays || !v || v->type != GgufValueType::ARRAY)
      return fallback ? f.get_int(k, *fallback) : f.get_int(k);
    int64_t most = 0;
    for (const GgufValue& item : v->as_array(k).items) most = std::max(most, item.as_int(k));
    return most;
  };
  ModelConfig c;
  c.arch = arch;
  c.dim = static_cast<int>(f.get_int(key("embedding_length")));
  c.n_layer = static_cast<int>(f.get_int(key("block_count")));
  c.ffn_dim = static_cast<int>(largest(key("feed_forward_length"), std::nullopt));
  c.n_head = static_cast<int>(f.get_int(key("attention.head_count")));
  c.n_head_kv = static_cast<int>(largest(key("attention.head_count_kv"), c.n_head));
  c.head_dim = static_cast<int>(f.get_int(key("attention.key_length"), c.n_head > 0 ? c.dim / c.n_head : 0));
  const int64_t v_dim = f.get_int(key("attention.value_length"), c.head_dim);
  c.ctx_train = static_cast<int>(f.get_int(key("context_length"), 4096));
  c.norm_eps = static_cast<float>(f.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5));
  c.sliding_window = static_cast<int32_t>(f.get_int(key("attention.sliding_window"), 0));
  auto bad = [&](const std::string& why) { fail(f.path() + ": " + why); };
  if (c.dim <= 0 || c.n_layer <= 0 || c.ffn_dim <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0)
    bad("non-positive model dimension in " + arch + ".* keys");
  if (c.n_head % c.n_head_kv != 0)
    bad("head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
        std::to_string(c.n_head_kv));
  if (v_dim != c.head_dim) bad("key_length != value_length is not supported");
  if (c.head_dim % 2 != 0) bad("odd head dimension " + std::to_string(c.head_dim));
  if (c.sliding_window < 0) bad("negative sliding window");
  c.attn_scale = static_cast<float>(f.get_float(key("attention.scale"), 1.0 / std::sqrt(double(c.head_dim))));
  const GgufTensor& emb = f.tensor("token_embd.weight");
  if (emb.ne.size() != 2 || emb.ne[0] != c.dim) bad("token_embd.weight does not match embedding_length");
  c.vocab = static_cast<int>(emb.ne[1]);
  return c;
}

}  // namespace swrun

namespace swrun {

void read_expert_config(const GgufFile& f, const std::string& arch, ModelConfig& c) {
  const std::string width_key = arch + ".expert_feed_forward_length";
  const GgufValue* width = f.find(width_key);
  const bool array = width && width->type == GgufValueType::ARRAY && !width->as_array(width_key).items.empty();
  c.n_expert = static_cast<int>(f.get_int(arch + ".expert_count"));
  c.n_expert_used = static_cast<int>(f.get_int(arch + ".expert_used_count"));
  c.expert_ffn_dim = static_cast<int>(array ? width->as_array(width_key).items[0].as_int(width_key)
                                            : f.get_int(width_key));
  if (c.n_expert < 1 || c.n_expert_used < 1 || c.n_expert_used > c.n_expert || c.expert_ffn_dim < 1)
    fail(f.path() + ": " + arch + " needs 1 <= expert_used_count <= expert_count and a positive expert width");
}

float read_rope_freq_scale(const GgufFile& f, const std::string& arch) {
  // As llama.cpp: the type defaults to linear; LongRoPE scales positions the same way (its per-pair factors
  // are tensors the architecture reads); YaRN interpolates with the same scale, then mixes (read_rope).
  const std::string type = f.get_string(arch + ".rope.scaling.type", "linear");
  const double factor = f.get_float(arch + ".rope.scaling.factor", 1.0);
  if (type == "none" || factor == 1.0 || factor == 0.0) return 1.f;  // llama.cpp: 0 means unset
  if (type != "linear" && type != "longrope" && type != "yarn")
    fail(f.path() + ": rope scaling '" + type + "' is not supported (only linear, longrope and yarn)");
  if (!(factor > 0)) fail(f.path() + ": " + arch + ".rope.scaling.factor must be positive");
  return static_cast<float>(1.0 / factor);
}

RopeParams read_rope(const GgufFile& f, const std::string& arch, const ModelConfig& c, RopeStyle style,
                     bool partial) {
  const int64_t rope_dims = f.get_int(arch + ".rope.dimension_count", c.head_dim);
  if (rope_dims != c.head_dim && !partial)
    fail(f.path() + ": partial RoPE (rope.dimension_count != head dim) is not supported");
  if (rope_dims < 2 || rope_dims > c.head_dim || rope_dims % 2 != 0)
    fail(f.path() + ": " + arch + ".rope.dimension_count " + std::to_string(rope_dims) + " is not an even count of " +
         "at most the head dim " + std::to_string(c.head_dim));
  RopeParams rope;
  if (rope_dims != c.head_dim) rope.rot_dims = static_cast<int>(rope_dims);
  rope.freq_base = static_cast<float>(f.get_float(arch + ".rope.freq_base", 10000.0));
  rope.freq_scale = read_rope_freq_scale(f, arch);
  rope.style = style;
  if (f.get_string(arch + ".rope.scaling.type", "linear") == "yarn" && rope.freq_scale != 1.f) {
    if (rope.freq_scale > 1.f) fail(f.path() + ": a YaRN factor below 1 is not supported");
    // As llama.cpp: the ramp between the pairs that rotate more than beta_fast and less than beta_slow times over
    // the original context (ggml's corr_dims, in fp32 as ggml computes them), and an attention factor that
    // llama.cpp divides by YaRN's own magnitude 1 + 0.1 ln(factor) before ggml multiplies it back in.
    const float n_ctx_orig = static_cast<float>(
        f.get_int(arch + ".rope.scaling.original_context_length", c.ctx_train));
    const float beta_fast = static_cast<float>(f.get_float(arch + ".rope.scaling.yarn_beta_fast", 32.0));
    const float beta_slow = static_cast<float>(f.get_float(arch + ".rope.scaling.yarn_beta_slow", 1.0));
    const float dims = static_cast<float>(rope_dims);  // ggml's n_dims: the rotated values
    auto corr_dim = [&](float rotations) {
      return dims * std::log(n_ctx_orig / (rotations * 2.f * static_cast<float>(M_PI))) /
             (2.f * std::log(rope.freq_base));
    };
    rope.yarn = true;
    rope.yarn_low = std::max(0.f, std::floor(corr_dim(beta_fast)));
    rope.yarn_high = std::min(dims - 1.f, std::ceil(corr_dim(beta_slow)));
    rope.attn_factor = static_cast<float>(f.get_float(arch + ".rope.scaling.attn_factor", 1.0));
  }
  return rope;
}

std::vector<AttnPolicy> uniform_policy(const ModelConfig& c) {
  const AttnPolicy own = c.sliding_window > 0 ? AttnPolicy::sliding(c.sliding_window) : AttnPolicy::dense();
  return std::vector<AttnPolicy>(c.n_layer, own);
}

float gemma_query_scale(const ModelConfig& c, int layers_of_27b) {
  const int scalar = c.n_layer == layers_of_27b ? c.dim / c.n_head : c.head_dim;
  return 1.f / std::sqrt(static_cast<float>(scalar));
}

std::vector<bool> read_sliding_layers(const GgufFile& f, const std::string& arch, int n_layer, int default_period) {
  const std::string key = arch + ".attention.sliding_window_pattern";
  std::vector<bool> sliding(static_cast<size_t>(n_layer));
  const GgufValue* v = f.find(key);
  if (v && v->type == GgufValueType::ARRAY) {
    const GgufArray& a = v->as_array(key);
    if (a.items.size() != static_cast<size_t>(n_layer))
      fail(f.path() + ": " + key + " has " + std::to_string(a.items.size()) + " entries for " +
           std::to_string(n_layer) + " layers");
    for (int l = 0; l < n_layer; ++l) sliding[l] = a.items[l].as_bool(key);
    return sliding;
  }
  const int64_t period = v ? v->as_int(key) : default_period;
  if (period < 0) fail(f.path() + ": negative " + key);
  for (int l = 0; l < n_layer; ++l) sliding[l] = period == 0 || l % period < period - 1;
  return sliding;
}

void resolve_layers(ModelConfig& c, const std::vector<AttnPolicy>& declared, const AttnSpec& spec,
                    const std::vector<RopeParams>& rope) {
  const std::vector<AttnPolicy> chosen = spec.resolve(declared, c.sliding_window);
  c.layers.clear();
  for (int l = 0; l < c.n_layer; ++l)
    c.layers.push_back({chosen[l], declared[l], rope[l], c.head_dim, c.n_head_kv, c.ffn_dim, -1});
}

void resolve_sliding_layers(ModelConfig& cfg, const std::vector<bool>& sliding, const AttnSpec& spec,
                            const RopeParams& sliding_rope, const RopeParams& dense_rope) {
  std::vector<AttnPolicy> declared;
  std::vector<RopeParams> rope;
  for (int l = 0; l < cfg.n_layer; ++l) {
    declared.push_back(sliding[l] ? AttnPolicy::sliding(cfg.sliding_window) : AttnPolicy::dense());
    rope.push_back(sliding[l] ? sliding_rope : dense_rope);
  }
  resolve_layers(cfg, declared, spec, rope);
}

}  // namespace swrun
