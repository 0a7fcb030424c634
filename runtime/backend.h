// The op seam. Model code (models/*.cpp) calls only these ops and never knows which backend runs it.
// Activations are fp32 matrices owned by the backend (device memory on CUDA); weights are uploaded once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/attn_policy.h"
#include "runtime/gguf.h"
#include "runtime/logprob.h"

namespace swrun {

class Profiler;  // runtime/profile.h
class LoadLog;   // runtime/load_log.h

// An fp32 activation buffer of `count` floats on the backend's device.
struct Buffer {
  float* data = nullptr;
  size_t count = 0;
};

// A weight matrix [rows x cols] (GGUF ne = {cols, rows}); vectors (norm weights) have rows == 1.
// `impl` is backend-private (CPU: the mmap'd blocks; CUDA: a bf16/fp32 device copy).
struct Weight {
  std::string name;
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0;
  const void* impl = nullptr;
};

// Throws Error unless rows [first, first + count) lie inside matrix w (for Backend::weight_rows).
void check_row_range(const Weight& w, int64_t first, int64_t count);
// Throws Error unless src holds `rows` rows of `vocab` logits (both at least 1) and every targets[r] is a token of
// the vocabulary: the checks of Backend::score_rows and compress_rows, `op` naming which.
void check_logit_rows(const char* op, Buffer src, int64_t rows, int vocab, const int32_t* targets);
// Throws Error unless the CUDA backend can hold t (a supported type, a shape of whole blocks per row, the bytes for
// it); returns its element count. The CUDA backend's upload and the memory plan's (engine/memory_plan.cpp) check
// with it, so that a plan refuses what a load would refuse.
int64_t check_device_tensor(const GgufTensor& t);

constexpr int kMaxDeviceTopK = 64;  // largest k of Backend::top_k

enum class RopeStyle { Normal, NeoX };  // Normal: rotate pairs (2i, 2i+1); NeoX: rotate (i, i + d/2)
enum class GatedAct { GeluTanh, Silu };

struct RopeParams {
  float freq_base = 10000.f;
  float freq_scale = 1.f;  // linear scaling: position multiplied by this
  RopeStyle style = RopeStyle::Normal;
  // LongRoPE (Phi-3 128k): pair i's frequency is divided by freq_factors[i] (an uploaded F32 vector of
  // head_dim/2 values; impl == nullptr: none), and cos/sin are multiplied by attn_factor.
  Weight freq_factors;
  float attn_factor = 1.f;
  // YaRN (rope.scaling.type = yarn), as ggml computes it: pair i's angle mixes the interpolated angle (position *
  // freq_scale) and the original one, the original weighted by ramp(i) = 1 - clamp((i - yarn_low) /
  // max(0.001, yarn_high - yarn_low), 0, 1); cos/sin are also multiplied by 1 + 0.1 ln(1 / freq_scale).
  bool yarn = false;
  float yarn_low = 0.f, yarn_high = 0.f;  // pair indices where the ramp starts and ends
  // Partial RoPE (llama.cpp's n_rot below the head dim; Gemma 4's rope.dimension_count[_swa]): only the first
  // rot_dims values of each head rotate, as a head of rot_dims would (pairs (i, i + rot_dims/2) in NeoX style, pair
  // i's frequency base^(-2i / rot_dims), freq_factors[i] for i < rot_dims/2); the other values pass through.
  // 0: the whole head rotates.
  int rot_dims = 0;
};

// One layer's KV cache geometry. Slot of position p = p % capacity (the only position->slot mapping).
// The element types of the KV caches (llama.cpp's -ctk / -ctv: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1).
// Unset: the backend's own (CPU f32, CUDA bf16). The CPU backend keeps f32 caches and rounds every row it stores
// through the type (the values such a cache holds, what its accuracy cost is measured with); the CUDA backend
// runs bf16 caches only, so far.
struct KvTypes {
  std::optional<GgmlType> k, v;
};
// From the flags' values ("" = unset); an unknown name is an Error naming the flag and the choices.
KvTypes parse_kv_types(const std::string& ctk, const std::string& ctv);
// llama.cpp's spelling of a KV cache type: "q8_0", "f16".
std::string kv_type_name(GgmlType t);

struct KvLayerSpec {
  int32_t capacity = 0;  // rows: context length for dense layers, window + ubatch for sliding layers
  int32_t n_head_kv = 0;
  int32_t head_dim = 0;
  KvTypes types;
};

struct AttnParams {
  int32_t n_head = 0;
  int32_t n_head_kv = 0;
  int32_t head_dim = 0;
  float scale = 1.f;
  AttnPolicy policy;
  // Gemma 2's score softcapping: a scaled score s becomes softcap * tanh(s / softcap) before the softmax.
  // 0 = none. Applied inside the attention kernels, never as a pass over materialized scores.
  float softcap = 0.f;
  // gpt-oss's attention sinks: an F32 vector of n_head learned logits (impl == nullptr: none). Head h's softmax
  // gets one more term exp(sinks[h]) in its denominator, a "key" with no value that takes part of the weight:
  // weight_j = exp(s_j) / (exp(sinks[h]) + sum_k exp(s_k)). Taken as is (neither scaled nor softcapped), in
  // dense and sliding layers alike.
  Weight sinks;
  // Gemma 4's shared-KV layers: >= 0 reads layer kv_layer's cache (which that layer wrote earlier in the same
  // forward, the current batch included) and stores nothing (k and v are not read). -1: the layer's own cache.
  int32_t kv_layer = -1;
};

// The experts' gated activation: gpt-oss's clamped SwiGLU, act(g, u) = min(g, limit) * sigmoid(alpha * min(g, limit))
// * (clamp(u, -limit, limit) + 1); or GeGLU, act(g, u) = gelu(g) * u with the tanh GELU (Gemma 4).
enum class MoeAct { SwigluOai, GeluTanh };

// A mixture-of-experts FFN: per token, router logits = router r + router_bias, where r is the token's row of
// router_input when that is given (Gemma 4 routes from its own norm of the residual) and of x otherwise; the n_used
// experts with the largest logits are chosen (the lower index among equal logits) and weighted by the softmax of
// their logits alone; each chosen expert e computes down_scale[e] * down_e(act(gate_e x + gate_bias_e, up_e x +
// up_bias_e)) + down_bias_e (absent scale: 1, absent biases: 0).
// The experts' 3-D tensors are uploaded as matrices: expert e owns rows [e * ffn, (e + 1) * ffn) of gate and up
// ([n_expert * ffn, dim]) and rows [e * dim, (e + 1) * dim) of down ([n_expert * dim, ffn]); the bias tensors are
// [n_expert, ffn] and [n_expert, dim] matrices, one row per expert. A fused gate_up ([n_expert * 2 * ffn, dim],
// gate and up then absent) gives expert e rows [2e * ffn, (2e + 1) * ffn) as its gate and the next ffn as its up.
// The defaults are gpt-oss's semantics. Gemma 4's fields (act GeluTanh, gate_up, down_scale, router_input) need a
// backend whose features() have gemma4_moe.
struct MoeFfn {
  Weight router, router_bias;
  Weight gate, up, down;
  Weight gate_bias, up_bias, down_bias;
  int n_expert = 0, n_used = 0, ffn = 0;
  float alpha = 1.702f, limit = 7.f;  // MoeAct::SwigluOai's
  MoeAct act = MoeAct::SwigluOai;
  Weight gate_up;     // fused gate and up experts (instead of gate and up)
  Weight down_scale;  // an F32 vector of n_expert output scales
  Buffer router_input;  // [rows, dim], filled before Backend::moe runs; data == nullptr: the router reads x
};

// Throws Error (one line, "moe: ...") unless f's weights have the shapes MoeFfn states for `tokens` rows of `dim`.
void check_moe_shapes(const MoeFfn& f, int64_t dim, int64_t tokens);

// Model features beyond the core ops that a backend may not have yet. A model asks for the ones it uses before it
// loads a weight (require_features below), so that a run stops at once with one line naming them.
struct BackendFeatures {
  bool attention_sinks = false;     // AttnParams::sinks
  bool mixture_of_experts = false;  // Backend::moe
  bool yarn_rope = false;           // RopeParams::yarn
  // Gemma 4's blocks: head shapes that differ per layer, shared KV caches (AttnParams::kv_layer), rmsnorm without a
  // gain, partial RoPE (RopeParams::rot_dims), Backend::scale and Backend::copy_cols.
  bool gemma4_blocks = false;
  // Gemma 4's mixture of experts (26B-A4B): MoeFfn's GeGLU experts, fused gate_up, per-expert output scales and a
  // router input of its own.
  bool gemma4_moe = false;
};

// Names of the ops, used by the profiler and NVTX ranges.
enum class OpKind { Embed, Norm, Matmul, Rope, Attention, Act, Add, Logits, Other };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;         // "cpu" or "cuda"
  virtual std::string device_name() const = 0;  // "2 threads" or "NVIDIA H100 80GB HBM3"
  // The device's memory in bytes (0: not a separate device; the CPU's activations live in host memory).
  virtual size_t device_memory_bytes() const { return 0; }
  // What this backend runs beyond the core ops (none unless it says so).
  virtual BackendFeatures features() const { return {}; }

  // Weights (called once at load). A 1-D tensor becomes rows = 1.
  virtual Weight upload(const GgufTensor& t) = 0;
  // Rows [first, first + count) of an uploaded matrix as a weight of its own, sharing its memory (fused QKV and
  // gate/up tensors). Throws Error when the range is outside the matrix.
  virtual Weight weight_rows(const Weight& w, int64_t first, int64_t count) = 0;

  // Activation buffers, alive until the backend is destroyed.
  virtual Buffer alloc(size_t count) = 0;

  // KV caches, one per layer; replaces any previous cache. Throws Error (with the bytes needed) if it cannot fit.
  virtual void init_kv(const std::vector<KvLayerSpec>& layers) = 0;
  virtual size_t kv_bytes() const = 0;

  // A batch of n tokens at consecutive positions pos0 .. pos0+n-1. Every op below works on the current batch.
  virtual void begin_batch(const int32_t* tokens, int32_t pos0, int n) = 0;

  // out[n, cols] = table[token] * scale
  virtual void embed(const Weight& table, float scale, Buffer out) = 0;
  // out[r, :] = x[r, :] / rms(x[r, :]) * w, for `rows` rows of length w.cols (per-head norms: rows = n * heads).
  // w.impl == nullptr: no gain (Gemma 4's value norm; backends with features().gemma4_blocks).
  virtual void rmsnorm(Buffer x, const Weight& w, int64_t rows, float eps, Buffer out) = 0;
  // out[r, :] = x[r, :] @ w^T for `rows` rows: x is [rows, w.cols], out is [rows, w.rows]
  virtual void matmul(Buffer x, const Weight& w, int64_t rows, Buffer out) = 0;
  // In place on x [n, heads, head_dim] at the batch positions.
  virtual void rope(Buffer x, int heads, int head_dim, const RopeParams& p) = 0;
  // Stores k, v [n, n_head_kv, head_dim] in layer's cache at the batch positions, then
  // out[n, n_head, head_dim] = softmax(q k^T * scale, masked by the policy) v over the cached keys 0 .. pos0+n-1.
  // q and k are scratch afterwards: a q/k norm + RoPE just before may leave its result only in what the
  // attention reads (CUDA: the bf16 query and the cache rows).
  virtual void attention(int layer, Buffer q, Buffer k, Buffer v, Buffer out, const AttnParams& p) = 0;
  // gate[i] = act(gate[i]) * up[i] for i < count
  virtual void gated_act(Buffer gate, Buffer up, size_t count, GatedAct act) = 0;
  // x[i] += y[i] for i < count
  virtual void add(Buffer x, Buffer y, size_t count) = 0;
  // x[r, :] += bias for `rows` rows of length bias.cols (projection biases; bias is a vector)
  virtual void add_bias(Buffer x, const Weight& bias, int64_t rows) = 0;
  // x[i] = cap * tanh(x[i] / cap) for i < count (final-logit softcapping)
  virtual void softcap(Buffer x, size_t count, float cap) = 0;
  // x[i] *= s for i < count. Backends whose features() lack gemma4_blocks refuse it.
  virtual void scale(Buffer x, size_t count, float s);
  // dst[r, :] = src[r, first .. first + count) for `rows` rows of src_cols floats (one layer's slice of Gemma 4's
  // per-layer inputs). Backends whose features() lack gemma4_blocks refuse it.
  virtual void copy_cols(Buffer src, int64_t rows, int64_t src_cols, int64_t first, int64_t count, Buffer dst);
  // Several projections of the same input (a layer's q, k and v): outs[i] = x @ ws[i]^T for i < count, as
  // matmul(x, *ws[i], rows, outs[i]). By default one matmul each; a backend may run them as one launch.
  virtual void matmuls(Buffer x, int64_t rows, const Weight* const* ws, const Buffer* outs, int count) {
    for (int i = 0; i < count; ++i) matmul(x, *ws[i], rows, outs[i]);
  }
  // q [n, n_head, head_dim] and k [n, n_head_kv, head_dim] of the current batch (n = tokens): each head row
  // RMSNorm-ed by q_norm / k_norm when given (per-head q/k norms), then both rotated by RoPE at the batch
  // positions. By default rmsnorm and rope per buffer; a backend may fuse them (CUDA: one launch).
  virtual void qk_norm_rope(Buffer q, Buffer k, const Weight* q_norm, const Weight* k_norm, int64_t tokens,
                            int n_head, int n_head_kv, int head_dim, float eps, const RopeParams& p) {
    if (q_norm) rmsnorm(q, *q_norm, tokens * n_head, eps, q);
    if (k_norm) rmsnorm(k, *k_norm, tokens * n_head_kv, eps, k);
    rope(q, n_head, head_dim, p);
    rope(k, n_head_kv, head_dim, p);
  }
  // A decoder block's residual step over `rows` rows of `width` floats: y = rmsnorm(y) * w_post when
  // w_post is given, x += y, then xn = rmsnorm(x) * w_next when w_next is given (the next block's pre-norm).
  // y is scratch afterwards. By default the ops above; a backend may fuse them (CUDA: one pass per row).
  virtual void residual_norm(Buffer y, const Weight* w_post, Buffer x, const Weight* w_next, int64_t rows,
                             int64_t width, float eps, Buffer xn) {
    if (w_post) rmsnorm(y, *w_post, rows, eps, y);
    add(x, y, static_cast<size_t>(rows) * static_cast<size_t>(width));
    if (w_next) rmsnorm(x, *w_next, rows, eps, xn);
  }
  // The gated MLP's projections and activation: gate[r, :] = act(x[r, :] @ w_gate^T) * (x[r, :] @ w_up^T) for
  // `rows` rows; up ([rows, w_up.rows]) is scratch and may be overwritten. By default the three ops above; a
  // backend may fuse them (CUDA: one GEMV over both matrices for decode steps).
  virtual void gated_matmul(Buffer x, const Weight& w_gate, const Weight& w_up, int64_t rows, GatedAct act,
                            Buffer gate, Buffer up) {
    matmul(x, w_gate, rows, gate);
    matmul(x, w_up, rows, up);
    gated_act(gate, up, static_cast<size_t>(rows) * static_cast<size_t>(w_gate.rows), act);
  }
  // A gated MLP: out[r, :] = (act(x[r, :] @ w_gate^T) * (x[r, :] @ w_up^T)) @ w_down^T for `rows` rows. gate and
  // up ([rows, w_gate.rows]) are scratch. By default gated_matmul then matmul; a backend may keep the product in
  // the form its down projection reads (CUDA prefill: bf16 only, never written in fp32).
  virtual void gated_mlp(Buffer x, const Weight& w_gate, const Weight& w_up, const Weight& w_down, int64_t rows,
                         GatedAct act, Buffer gate, Buffer up, Buffer out) {
    gated_matmul(x, w_gate, w_up, rows, act, gate, up);
    matmul(gate, w_down, rows, out);
  }
  // out[r, :] = the mixture of experts f applied to x[r, :] for `rows` rows (x and out [rows, dim]). Only the chosen
  // experts' rows are read. Backends whose features() lack mixture_of_experts refuse it (the default).
  virtual void moe(Buffer x, int64_t rows, const MoeFfn& f, Buffer out);
  // Copies count floats from the device buffer (starting at offset) to host memory. The host copy is complete
  // after the next synchronize() (the CPU backend completes it at once).
  virtual void read(Buffer src, size_t offset, size_t count, float* host) = 0;
  // Reduces the first `count` floats of src (one row of logits) to its k best entries on the device and copies
  // only those to host: ids[k] and values[k], best first, as swrun::top_candidates orders them (higher value
  // first, the lower index among equal values, NaN never chosen; k = 1 is swrun::argmax). Slots beyond the
  // non-NaN entries get id -1. 1 <= k <= min(count, kMaxDeviceTopK). Complete after the next synchronize().
  virtual void top_k(Buffer src, size_t count, int k, int32_t* ids, float* values) = 0;
  // Scores `rows` rows of logits (src: [rows, vocab]) on the device, so that only a few numbers per row reach the
  // host: out[r] = score_row(vocab, row r, targets[r], base row r) (runtime/logprob.h), with targets[rows] and base
  // ([rows, kl_row_width(vocab)] uint16, or null: no base) in host memory. Complete after the next synchronize().
  virtual void score_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                          RowScore* out) = 0;
  // The KL-divergence base rows of `rows` rows of logits computed on the device: out ([rows, kl_row_width(vocab)],
  // host) and nll[r] = compress_row(vocab, row r, targets[r], out row r) (runtime/logprob.h). Complete after the
  // next synchronize().
  virtual void compress_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, uint16_t* out,
                             double* nll) = 0;
  virtual void synchronize() = 0;

  // Runs `step` (one decode forward: begin_batch .. read .. synchronize) as a replayable CUDA graph where the
  // backend can. `step` is called every time: on the first call for a `key` its ops are captured; on later calls
  // the ops are skipped except begin_batch (stages the new token/position where the graph reads them) and read
  // (notes the host destination), and synchronize() launches the graph, waits, and copies the reads out.
  // Returns true when the step ran from a graph. The default runs it plainly.
  virtual bool run_captured(int key, const std::function<void()>& step) { (void)key; step(); return false; }

  // Bytes of weights the backend holds in its own memory (0 where they stay in the file's mapping).
  virtual size_t weight_bytes() const { return 0; }

  // Device memory high-water mark since the backend was created or since the last reset_peak_memory() (0 where
  // not tracked).
  virtual size_t peak_memory_bytes() const { return 0; }
  // Restarts the high-water mark from the bytes allocated now, so that one job's peak can be measured alone.
  virtual void reset_peak_memory() {}

  // Profiling hooks: the model brackets each op and layer; backends time them (CUDA events / host clock)
  // only while a profiler is attached, and emit NVTX ranges with the same names.
  virtual void push_range(const char* name, int layer, OpKind op) { (void)name; (void)layer; (void)op; }
  virtual void pop_range() {}
  // Attaches the profiler the ranges are timed into (nullptr detaches; nothing is timed while none is attached).
  // Every range closed before a synchronize() has reached the profiler when that synchronize() returns.
  virtual void attach_profiler(Profiler* profiler) { (void)profiler; }

  // Load-time breakdown (`swrun -v`): while a log is attached the backend times its weight uploads (CUDA: events
  // around each copy and dequantization), and finish_uploads() waits for every upload queued so far and adds
  // their split to the log as sub-phases. Without a log nothing is timed and the normal path never waits here.
  virtual void attach_load_log(LoadLog* log) { (void)log; }
  virtual void finish_uploads() {}
};

// Throws Error when `be` lacks a feature that `needed` asks for, naming each one on a single line: "cuda backend:
// attention sinks / mixture of experts / YaRN RoPE / Gemma 4's blocks / Gemma 4's mixture of experts not supported
// yet; use --backend cpu".
void require_features(const Backend& be, const BackendFeatures& needed);
// Throws Error unless every layer's KV types are unset or bf16 (the CUDA backend's caches, and its memory plan's).
void require_bf16_kv(const Backend& be, const std::vector<KvLayerSpec>& layers);

std::unique_ptr<Backend> make_cpu_backend(int threads);           // threads <= 0: all cores
// Throws Error when CUDA is unavailable; with a log, its set-up phases are added to it as sub-phases.
std::unique_ptr<Backend> make_cuda_backend(int device = 0, LoadLog* log = nullptr);
bool cuda_device_available();                                     // false without a GPU or without CUDA build

}  // namespace swrun
