#include "models/decoder.h"

#include <algorithm>

#include "runtime/common.h"

namespace swrun {

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
}

void DecoderModel::check_batch(int n) const {
  if (n < 1 || n > s_.max_batch)
    fail("batch of " + std::to_string(n) + " tokens, the model was loaded for at most " +
         std::to_string(s_.max_batch));
}

void DecoderModel::init_kv(int ctx, int max_batch) {
  if (ctx < 1) fail("context size must be at least 1");
  std::vector<KvLayerSpec> layers;
  for (const LayerConfig& l : cfg_.layers) {
    KvLayerSpec s{ctx, cfg_.n_head_kv, cfg_.head_dim};
    // A causal window of W keys plus one batch of new keys is all a sliding layer ever reads.
    if (l.policy.windowed() && l.policy.right == 0)
      s.capacity = static_cast<int32_t>(std::min<int64_t>(ctx, int64_t{l.policy.window_keys()} + max_batch));
    layers.push_back(s);
  }
  be_->init_kv(layers);
  kv_layers_ = layers;
}

void DecoderModel::finish(int n, LogitsMode mode, const Weight& out_norm, const Weight& output, float* logits) {
  if (mode == LogitsMode::None) return;
  const bool last = mode == LogitsMode::Last || mode == LogitsMode::Top;
  const size_t first = last ? static_cast<size_t>(n - 1) : 0;
  const size_t rows = last ? 1 : static_cast<size_t>(n);
  if (static_cast<int>(rows) > s_.logits_rows) {  // all-position logits are rare (A/B, tests): grow on demand
    s_.logits = be_->alloc(static_cast<size_t>(s_.max_batch) * cfg_.vocab);
    s_.logits_rows = s_.max_batch;
  }
  Buffer xr = rows_of(s_.x, first, rows, cfg_.dim);
  Buffer nr = rows_of(s_.xn, 0, rows, cfg_.dim);
  ops_.rmsnorm("output_norm", cfg_.n_layer, xr, out_norm, static_cast<int64_t>(rows), cfg_.norm_eps, nr);
  {
    be_->push_range("logits", cfg_.n_layer, OpKind::Logits);
    be_->matmul(nr, output, static_cast<int64_t>(rows), s_.logits);
    be_->pop_range();
  }
  if (mode == LogitsMode::Top)
    be_->top_k(s_.logits, static_cast<size_t>(cfg_.vocab), top_.k, top_.ids, logits);
  else
    be_->read(s_.logits, 0, rows * cfg_.vocab, logits);
  be_->synchronize();
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

ModelConfig read_common_config(const GgufFile& f, const std::string& arch) {
  auto key = [&](const char* k) { return arch + "." + k; };
  ModelConfig c;
  c.arch = arch;
  c.dim = static_cast<int>(f.get_int(key("embedding_length")));
  c.n_layer = static_cast<int>(f.get_int(key("block_count")));
  c.ffn_dim = static_cast<int>(f.get_int(key("feed_forward_length")));
  c.n_head = static_cast<int>(f.get_int(key("attention.head_count")));
  c.n_head_kv = static_cast<int>(f.get_int(key("attention.head_count_kv"), c.n_head));
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

float read_rope_freq_scale(const GgufFile& f, const std::string& arch) {
  const std::string type = f.get_string(arch + ".rope.scaling.type", "none");
  const double factor = f.get_float(arch + ".rope.scaling.factor", 1.0);
  if (type == "none" || factor == 1.0) return 1.f;
  if (type != "linear") fail(f.path() + ": rope scaling '" + type + "' is not supported (only linear)");
  if (!(factor > 0)) fail(f.path() + ": " + arch + ".rope.scaling.factor must be positive");
  return static_cast<float>(1.0 / factor);
}

}  // namespace swrun
