// What the decoder-only architectures share: activation buffers sized for a batch, KV-cache geometry from the
// per-layer policy, the attention and MLP blocks (pre-norm, optional post-norm "sandwich", projection biases,
// fused QKV and gate/up tensors, per-head q/k norms), and the final norm + output projection (optional bias and
// softcap) on the rows whose logits are wanted. Every supported architecture is a Decoder (Decoder::forward is
// the block sequence); its file (models/<arch>.cpp) reads the hyperparameters from the GGUF keys, declares each
// layer's attention policy and RoPE, and picks a DecoderStyle.
#pragma once
#include <cmath>
#include <string>

#include "models/model.h"
#include "models/ops.h"

namespace swrun {

// Which optional pieces an architecture's attention block has. Biases, a fused attn_qkv tensor and the
// per-layer layout details are read from the file; these are the ones the architecture requires.
struct AttnLayout {
  bool qk_norm = false;    // per-head RMSNorm of q and k before RoPE (attn_q_norm, attn_k_norm)
  bool post_norm = false;  // RMSNorm of the block output before the residual add (post_attention_norm)
  bool sinks = false;      // a learned sink logit per query head (attn_sinks, gpt-oss)
  bool v_norm = false;     // per-head RMSNorm of v without a gain (Gemma 4)
  bool value_from_key = false;  // a layer without attn_v uses its key projection as values (Gemma 4)
};

struct AttnWeights {
  Weight norm, wq, wk, wv, bq, bk, bv, q_norm, k_norm, wo, bo, post_norm, sinks;  // absent: impl == nullptr
  bool v_norm = false;  // AttnLayout::v_norm
};

struct MlpWeights {
  Weight norm, gate, up, down, post_norm;
};

// A mixture-of-experts FFN block: its pre-norm and the experts (Backend::moe).
struct MoeWeights {
  Weight norm;
  MoeFfn ffn;
};

// Gemma 4's routed experts beside its MLP (26B-A4B): the MLP and the experts (their pre-norm pre_ffw_norm_2) read
// the same residual, each output is RMS-normalized on its own (mlp_post_norm = post_ffw_norm_1, experts_post_norm =
// post_ffw_norm_2), and their sum goes through the MLP's post_ffw_norm into the residual. The router reads the
// residual RMS-normalized, times router_scale (ffn_gate_inp.scale) / sqrt(dim).
struct ExpertsBranchWeights {
  MoeWeights experts;
  Weight router_scale, mlp_post_norm, experts_post_norm;
};

struct RunState {
  Buffer x, xn, q, k, v, att, proj, gate, up, logits;
  Buffer router_in, experts_out;  // Gemma 4's experts branch (allocated by load_experts_branch)
  int max_batch = 0;
  int logits_rows = 0;  // rows `logits` can hold
};

class DecoderModel : public Model {
 public:
  void init_kv(int ctx, int max_batch) override;
  void init_kv_for_specs(int ctx, int max_batch, const std::vector<AttnSpec>& specs) override;

 protected:
  DecoderModel(Backend& be, ModelConfig cfg, int max_batch);
  // Loads layer l's attention weights, shaped by cfg_.layers[l]: attn_norm; attn_qkv split into q/k/v row views
  // when the file has the fused tensor, else attn_q/k/v (only attn_q where the layer shares another's KV cache);
  // their biases where present; attn_output; and what `layout` requires.
  AttnWeights load_attention(const GgufFile& f, int layer, const AttnLayout& layout);
  // Loads layer l's MLP weights (width cfg_.layers[l].ffn_dim): ffn_norm, ffn_gate + ffn_up (or ffn_up holding
  // gate then up, [2 * ffn_dim]), ffn_down, and post_ffw_norm when `post_norm`.
  MlpWeights load_mlp(const GgufFile& f, int layer, bool post_norm);
  // Loads layer l's mixture of experts (gpt-oss layout): its pre-norm post_attention_norm (gpt-oss's name for it),
  // the router ffn_gate_inp (+ bias) and the experts ffn_gate_exps / ffn_up_exps / ffn_down_exps (+ biases),
  // shaped by cfg_.n_expert, n_expert_used and expert_ffn_dim.
  MoeWeights load_moe(const GgufFile& f, int layer);
  // Loads layer l's experts branch (Gemma 4): pre_ffw_norm_2, post_ffw_norm_1, post_ffw_norm_2, the router
  // ffn_gate_inp and its input scale ffn_gate_inp.scale, the experts as ffn_gate_up_exps (or ffn_gate_exps +
  // ffn_up_exps) and ffn_down_exps with its output scales ffn_down_exps.scale where present: GeGLU experts shaped by
  // cfg_.n_expert, n_expert_used and expert_ffn_dim, routed from s_.router_in.
  ExpertsBranchWeights load_experts_branch(const GgufFile& f, int layer);
  // Output weights: output_norm, output.weight (tied to token_embd when absent), output.bias where present.
  void load_output(const GgufFile& f);

  // Token embeddings of the batch into s_.x, multiplied by `scale`.
  void embed(const int32_t* tokens, int32_t pos0, int n, float scale);
  // s_.x += attention(s_.xn) for layer l, per cfg_.layers[l] (policy, RoPE, shapes, shared KV) and cfg_ (scale,
  // softcap), where s_.xn holds the block's pre-norm of s_.x; then s_.xn = next_norm(s_.x), the MLP block's
  // pre-norm (one fused residual step on backends that fuse it).
  void attention_block(int layer, const AttnWeights& w, int n, const Weight& next_norm);
  // s_.x += down(act(gate(s_.xn)) * up(s_.xn)) for layer l; then s_.xn = next_norm(s_.x) when next_norm is given
  // (the next layer's attention pre-norm).
  void mlp_block(int layer, const MlpWeights& w, GatedAct act, int n, const Weight* next_norm);
  // s_.x += moe(s_.xn) for layer l; then s_.xn = next_norm(s_.x) when next_norm is given.
  void moe_block(int layer, const MoeWeights& w, int n, const Weight* next_norm);
  // Gemma 4's MLP and experts side by side (ExpertsBranchWeights) for layer l, s_.xn holding mlp.norm(s_.x):
  // s_.x += mlp.post_norm(w.mlp_post_norm(mlp(s_.xn)) + w.experts_post_norm(moe(w.experts.norm(s_.x)))); then
  // s_.xn = next_norm(s_.x) when next_norm is given.
  void mlp_experts_block(int layer, const MlpWeights& mlp, const ExpertsBranchWeights& w, GatedAct act, int n,
                         const Weight* next_norm);
  // Final norm, output projection (+ bias, + cfg_.final_softcap) for rows of s_.x selected by mode; copies
  // logits to host, or with LogitsMode::Top only the top_.k best of the last row (Model::forward_top), or with
  // LogitsMode::Kept leaves the kept_ rows on the backend (Model::forward_logits).
  void finish(int n, LogitsMode mode, float* logits);
  Weight tensor(const GgufFile& f, const std::string& name, std::initializer_list<int64_t> shape);
  Weight optional_tensor(const GgufFile& f, const std::string& name, std::initializer_list<int64_t> shape);
  void check_batch(int n) const;
  // The per-layer caches init_kv allocates under the layers' current policies.
  std::vector<KvLayerSpec> kv_geometry(int ctx, int max_batch) const;

  TracedOps ops_;
  RunState s_;
  // Set by init_kv_for_specs for the init_kv it calls: the specs whose caches it must hold.
  std::vector<AttnSpec> sized_for_;
  Weight tok_embd_, out_norm_, output_, output_bias_;
};

// What differs between the architectures' blocks (everything else is read from the file).
struct DecoderStyle {
  AttnLayout attn;
  bool mlp_post_norm = false;      // post_ffw_norm (Gemma 2/3)
  GatedAct act = GatedAct::Silu;   // SwiGLU, or GeGLU (tanh GELU) for Gemma
  bool scale_embedding = false;    // Gemma: embeddings multiplied by sqrt(dim)
  bool moe = false;                // the FFN is a mixture of experts (cfg.n_expert ...), not a gated MLP
};

// The decoder every supported architecture is: embedding, per layer an attention block then an MLP block,
// final norm and output projection.
class Decoder : public DecoderModel {
 public:
  Decoder(const GgufFile& f, Backend& be, ModelConfig cfg, int max_batch, const DecoderStyle& style);
  void forward(const int32_t* tokens, int32_t pos0, int n, LogitsMode mode, float* logits) override;

 private:
  struct Layer {
    AttnWeights attn;
    MlpWeights mlp;  // unless style_.moe
    MoeWeights moe;  // when style_.moe
    const Weight& ffn_norm() const { return moe.ffn.router.impl ? moe.norm : mlp.norm; }
  };
  DecoderStyle style_;
  std::vector<Layer> layers_;
};

// Hyperparameters shared by the llama-like families, read as `<arch>.<key>`. With per_layer_arrays,
// feed_forward_length and attention.head_count_kv may be per-layer arrays, read as their largest entry.
ModelConfig read_common_config(const GgufFile& f, const std::string& arch, bool per_layer_arrays = false);

}  // namespace swrun

namespace swrun {
// `<arch>.expert_count`, `expert_used_count` and `expert_feed_forward_length` (as llama.cpp: a per-layer array stands
// for its first entry) into c; an Error unless 1 <= expert_used_count <= expert_count and the width is positive.
void read_expert_config(const GgufFile& f, const std::string& arch, ModelConfig& c);

// `<arch>.rope.scaling.*`: linear, longrope or yarn scaling gives freq_scale = 1/factor; other kinds are an Error.
float read_rope_freq_scale(const GgufFile& f, const std::string& arch);

// RoPE of the uniform architectures: `<arch>.rope.freq_base` (default 10000), rope scaling (linear, or YaRN with
// `rope.scaling.original_context_length`, `rope.scaling.attn_factor` and the YaRN betas); partial RoPE
// (rope.dimension_count != head dim) is an Error unless `partial` (then rope.dimension_count rotated values per
// head, RopeParams::rot_dims; more than the head dim or an odd count is an Error).
RopeParams read_rope(const GgufFile& f, const std::string& arch, const ModelConfig& c, RopeStyle style,
                     bool partial = false);

// One policy for every layer: sliding with the file's window when it declares one, else dense.
std::vector<AttnPolicy> uniform_policy(const ModelConfig& c);

// Gemma 2/3 query scale as llama.cpp sets it (after gemma_pytorch's configs): the 27B models (recognized by
// their layer count, `layers_of_27b`) scale by 1/sqrt(dim / n_head) (query_pre_attn_scalar, which the GGUF does
// not store), the others by 1/sqrt(head_dim).
float gemma_query_scale(const ModelConfig& c, int layers_of_27b);

// Which layers slide, as llama.cpp reads `<arch>.attention.sliding_window_pattern`: an array of per-layer
// booleans, or a period n (layer l slides unless l % n == n - 1; n = 0: every layer slides); `default_period`
// when the key is absent.
std::vector<bool> read_sliding_layers(const GgufFile& f, const std::string& arch, int n_layer, int default_period);

// Applies --attn to the declared per-layer policies and fills cfg.layers with each layer's RoPE and cfg's shapes.
void resolve_layers(ModelConfig& cfg, const std::vector<AttnPolicy>& declared, const AttnSpec& spec,
                    const std::vector<RopeParams>& rope);
// resolve_layers for a model of sliding and dense layers: layer l declares a window of cfg.sliding_window keys and
// takes sliding_rope where sliding[l], else dense attention and dense_rope (the RoPE follows the layer's role in
// the model, not the kernel --attn picks for it).
void resolve_sliding_layers(ModelConfig& cfg, const std::vector<bool>& sliding, const AttnSpec& spec,
                            const RopeParams& sliding_rope, const RopeParams& dense_rope);
}  // namespace swrun
