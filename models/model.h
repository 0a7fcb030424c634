// Architectures: a table keyed by `general.architecture`; each architecture reads its hyperparameters from
// GGUF keys, binds its weights through the backend and implements forward() with backend ops only.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/attn_policy.h"
#include "runtime/backend.h"
#include "runtime/gguf.h"

namespace swrun {

struct LayerConfig {
  AttnPolicy policy;   // after --attn is applied
  AttnPolicy declared; // what the model itself declares
  RopeParams rope;
  // The layer's own shapes (Gemma 4's differ between sliding and global layers; elsewhere ModelConfig's).
  int head_dim = 0, n_head_kv = 0, ffn_dim = 0;
  int kv_layer = -1;  // >= 0: attends over that earlier layer's KV cache and keeps none (Gemma 4's shared KV)
  bool experts = false;  // the FFN has routed experts (ModelConfig::n_expert ...; Gemma 4: beside its MLP of ffn_dim)
};

struct ModelConfig {
  std::string arch;
  // head_dim, n_head_kv and ffn_dim are the largest of the layers' (LayerConfig), which size the buffers.
  int n_layer = 0, dim = 0, n_head = 0, n_head_kv = 0, head_dim = 0, ffn_dim = 0, vocab = 0;
  int ctx_train = 0;
  float norm_eps = 1e-6f;
  float attn_scale = 1.f;
  float attn_softcap = 0.f;   // Gemma 2: scores s -> cap * tanh(s / cap); 0 = none
  float final_softcap = 0.f;  // Gemma 2: logits z -> cap * tanh(z / cap); 0 = none
  int32_t sliding_window = 0;  // 0 = the model declares none
  int n_expert = 0, n_expert_used = 0, expert_ffn_dim = 0;  // mixture of experts (gpt-oss, Gemma 4); 0 = none
  std::vector<LayerConfig> layers;
};

// What forward() should return. Top: only the best candidates of the last position (see forward_top). Kept: rows
// of logits left on the backend (see forward_logits).
enum class LogitsMode { None, Last, All, Top, Kept };

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return cfg_; }
  // Runs n tokens at positions pos0 .. pos0+n-1 (n <= the max_batch given at load). Writes logits of the last
  // position ([vocab]) or of all positions ([n, vocab]) to host memory `logits` per `mode`.
  virtual void forward(const int32_t* tokens, int32_t pos0, int n, LogitsMode mode, float* logits) = 0;
  // forward() whose last-position logits stay on the backend, reduced there to their k best (Backend::top_k):
  // only ids[k] and values[k] reach the host (a decode step copies back a few bytes instead of the vocabulary).
  void forward_top(const int32_t* tokens, int32_t pos0, int n, int k, int32_t* ids, float* values) {
    top_ = {k, ids};
    forward(tokens, pos0, n, LogitsMode::Top, values);
    top_ = {};
  }
  // forward() whose logits of batch rows first .. first + rows - 1 stay on the backend for an op that reduces them
  // there (Backend::score_rows, compress_rows): returns them ([rows, vocab]), valid until the next forward. Only
  // those rows go through the output projection; nothing is copied to the host and nothing waits for the device.
  Buffer forward_logits(const int32_t* tokens, int32_t pos0, int n, int first, int rows) {
    kept_ = {first, rows, {}};
    forward(tokens, pos0, n, LogitsMode::Kept, nullptr);
    const Buffer logits = kept_.logits;
    kept_ = {};
    return logits;
  }
  // Allocates the per-layer KV caches for a context of ctx tokens processed in batches of up to max_batch.
  virtual void init_kv(int ctx, int max_batch) = 0;
  // init_kv with every layer's cache as large as any of `specs` needs there, so that set_attention may switch
  // among them (and back) with no other init_kv: one allocation for a run over several specs. Leaves the
  // attention of specs.front() set.
  virtual void init_kv_for_specs(int ctx, int max_batch, const std::vector<AttnSpec>& specs) = 0;
  // The KV caches' element types from the next init_kv on (-ctk / -ctv).
  void set_kv_types(const KvTypes& types) { kv_types_ = types; }
  Backend& backend() { return *be_; }
  // Re-resolves every layer's policy from `spec` against what the model declares. Call init_kv afterwards, unless
  // init_kv_for_specs sized the caches for this spec already.
  void set_attention(const AttnSpec& spec);
  // Per-layer KV geometry of the last init_kv.
  const std::vector<KvLayerSpec>& kv_layers() const { return kv_layers_; }

 protected:
  Model(Backend& be, ModelConfig cfg) : be_(&be), cfg_(std::move(cfg)) {}
  // The request of forward_top while it runs: k and where the ids go (the values go to forward's `logits`).
  struct TopRequest {
    int k = 0;
    int32_t* ids = nullptr;
  };
  // The request of forward_logits while it runs: the rows to keep, and the device rows that finish() leaves.
  struct KeptRows {
    int first = 0, rows = 0;
    Buffer logits;
  };
  Backend* be_;
  ModelConfig cfg_;
  TopRequest top_;
  KeptRows kept_;
  std::vector<KvLayerSpec> kv_layers_;
  KvTypes kv_types_;
};

// Reads general.architecture and builds the model; unknown architectures and missing keys/tensors are Errors.
std::unique_ptr<Model> load_model(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);

// Per-architecture loaders (models/<arch>.cpp).
std::unique_ptr<Model> load_gemma3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_llama(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_qwen2(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_qwen3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_gemma2(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_phi3(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_gpt_oss(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);
std::unique_ptr<Model> load_gemma4(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch);

}  // namespace swrun
