#include "engine/memory_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <deque>

#include "runtime/common.h"
#include "runtime/device_bytes.h"

namespace swrun {
namespace {

namespace db = device_bytes;

// What the planning backend knows of an uploaded tensor (Weight::impl points at one).
struct PlannedWeight {
  std::string name;
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0;
  size_t bytes = 0;     // device bytes (0 for a view)
  bool matrix = false;
  bool blocks = false;  // kept as the file's blocks (else a bf16 copy), matrices only
  bool table = false;   // the embedding/output table: its prefill GEMM runs only for all-position logits
  bool viewed = false;  // its GEMMs run on row views (fused QKV, gate/up), not on the whole matrix
};

// A Backend that allocates nothing: upload() counts each tensor's device bytes (device_bytes::weight_bytes),
// alloc() the activation floats, init_kv() the KV layers. It never reads tensor data, and every compute op fails.
class PlanningBackend final : public Backend {
 public:
  explicit PlanningBackend(size_t memory_bytes) : memory_(memory_bytes) {}
  // The backend it plans for: a refusal reads as the run's own would ("cuda backend: ... not supported yet").
  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return "memory plan"; }
  size_t device_memory_bytes() const override { return memory_; }
  BackendFeatures features() const override { return db::cuda_features(); }

  Weight upload(const GgufTensor& t) override {
    const int64_t elems = check_device_tensor(t);
    PlannedWeight p;
    p.name = t.name;
    p.type = t.type();
    p.cols = t.ne[0];
    p.rows = elems / t.ne[0];
    p.bytes = db::weight_bytes(p.type, t.ne);
    p.matrix = t.ne.size() > 1;
    p.blocks = p.matrix && db::keeps_file_blocks(p.type, p.cols);
    p.table = t.name == "token_embd.weight" || t.name == "output.weight";
    weights_.push_back(p);
    weight_bytes_ += p.bytes;
    Weight w;
    w.name = t.name;
    w.type = p.type;
    w.cols = p.cols;
    w.rows = p.rows;
    w.impl = &weights_.back();
    return w;
  }

  Weight weight_rows(const Weight& w, int64_t first, int64_t count) override {
    check_row_range(w, first, count);
    auto* parent = static_cast<PlannedWeight*>(const_cast<void*>(w.impl));
    if (!parent) fail("weight_rows: weight '" + w.name + "' was not uploaded to this backend");
    parent->viewed = true;
    PlannedWeight view = *parent;
    view.rows = count;
    view.bytes = 0;
    view.viewed = false;
    weights_.push_back(view);
    Weight v = w;
    v.rows = count;
    v.impl = &weights_.back();
    return v;
  }

  Buffer alloc(size_t count) override {
    floats_ += count;
    return Buffer{nullptr, count};
  }

  void init_kv(const std::vector<KvLayerSpec>& layers) override {
    require_bf16_kv(*this, layers);
    kv_ = layers;
    kv_bytes_ = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const KvLayerSpec& s = layers[i];
      if (s.capacity <= 0 || s.n_head_kv <= 0 || s.head_dim <= 0)
        fail("init_kv: layer " + std::to_string(i) + " has a non-positive capacity, head count or head size");
      kv_bytes_ += db::kv_layer_bytes(s);
    }
  }
  size_t kv_bytes() const override { return kv_bytes_; }

  [[noreturn]] static void no_ops(const char* op) {
    fail(std::string("memory plan: ") + op + " called on the planning backend, which only counts bytes");
  }
  void begin_batch(const int32_t*, int32_t, int) override { no_ops("begin_batch"); }
  void embed(const Weight&, float, Buffer) override { no_ops("embed"); }
  void rmsnorm(Buffer, const Weight&, int64_t, float, Buffer) override { no_ops("rmsnorm"); }
  void matmul(Buffer, const Weight&, int64_t, Buffer) override { no_ops("matmul"); }
  void rope(Buffer, int, int, const RopeParams&) override { no_ops("rope"); }
  void attention(int, Buffer, Buffer, Buffer, Buffer, const AttnParams&) override { no_ops("attention"); }
  void gated_act(Buffer, Buffer, size_t, GatedAct) override { no_ops("gated_act"); }
  void add(Buffer, Buffer, size_t) override { no_ops("add"); }
  void add_bias(Buffer, const Weight&, int64_t) override { no_ops("add_bias"); }
  void softcap(Buffer, size_t, float) override { no_ops("softcap"); }
  void read(Buffer, size_t, size_t, float*) override { no_ops("read"); }
  void top_k(Buffer, size_t, int, int32_t*, float*) override { no_ops("top_k"); }
  void synchronize() override { no_ops("synchronize"); }
  bool run_captured(int, const std::function<void()>&) override { no_ops("run_captured"); }
  size_t weight_bytes() const override { return weight_bytes_; }

  const std::deque<PlannedWeight>& weights() const { return weights_; }
  // Whether the file has its own output projection (else the embedding table is also the output).
  bool has_output() const {
    for (const PlannedWeight& w : weights_)
      if (w.name == "output.weight") return true;
    return false;
  }
  size_t activation_floats() const { return floats_; }
  const std::vector<KvLayerSpec>& kv_layers() const { return kv_; }

 private:
  size_t memory_;
  std::deque<PlannedWeight> weights_;  // a deque: Weight::impl points into it
  size_t weight_bytes_ = 0;
  size_t floats_ = 0;
  std::vector<KvLayerSpec> kv_;
  size_t kv_bytes_ = 0;
};

std::string gib(size_t bytes) { return human_bytes(double(bytes)); }

std::string layers(size_t count) { return std::to_string(count) + (count == 1 ? " layer" : " layers"); }

std::string times(int count, const std::string& what, int64_t rows) {
  return std::to_string(count) + " " + what + (count == 1 ? "" : "s") + " x " + std::to_string(rows);
}

// "rows 1536" or "rows 1024-1536" over the capacities of a layer group.
std::string capacity_text(const std::vector<int32_t>& caps) {
  const auto [lo, hi] = std::minmax_element(caps.begin(), caps.end());
  return *lo == *hi ? std::to_string(*hi) : std::to_string(*lo) + "-" + std::to_string(*hi);
}

}  // namespace

MemoryPlan plan_memory(const GgufFile& f, const MemoryRequest& r) {
  if (r.ctx < 1) fail("context size must be at least 1");
  if (r.batch < 1) fail("batch size must be at least 1");
  PlanningBackend be(r.memory_bytes);
  auto model = load_model(f, be, r.attn, r.batch);
  model->set_kv_types(r.kv_types);
  model->init_kv(r.ctx, r.batch);
  const ModelConfig& c = model->config();

  MemoryPlan p;
  p.request = r;
  p.config = c;
  auto add = [&](const char* group, const std::string& name, size_t bytes, const std::string& detail) {
    if (bytes > 0) p.parts.push_back({group, name, bytes, detail});
    return bytes;
  };

  // Weights (CudaBackend::upload): the rules of device_bytes::weight_bytes, tensor by tensor.
  {
    int blocks = 0, copies = 0, vectors = 0;
    for (const PlannedWeight& w : be.weights()) {
      if (w.bytes == 0) continue;  // a view
      (w.matrix ? (w.blocks ? blocks : copies) : vectors) += 1;
    }
    std::string detail = std::to_string(blocks) + " matrices in their GGUF blocks";
    if (copies) detail += ", " + std::to_string(copies) + " as bf16 copies (rows of odd width)";
    detail += ", " + std::to_string(vectors) + " vectors in fp32";
    p.weights = add("weights", "weights", be.weight_bytes(), detail);
  }

  // KV cache (CudaBackend::init_kv): sliding layers keep a ring of window + batch rows (DecoderModel::init_kv).
  {
    std::vector<int32_t> dense_caps, ring_caps;
    for (size_t l = 0; l < be.kv_layers().size(); ++l) {
      const KvLayerSpec& s = be.kv_layers()[l];
      const AttnPolicy& policy = c.layers[l].policy;
      const bool ring = policy.windowed() && policy.right == 0;
      (ring ? p.kv_rings : p.kv_dense) += db::kv_layer_bytes(s);
      (ring ? ring_caps : dense_caps).push_back(s.capacity);
    }
    p.dense_layers = static_cast<int>(dense_caps.size());
    p.ring_layers = static_cast<int>(ring_caps.size());
    if (!ring_caps.empty()) p.ring_capacity = *std::max_element(ring_caps.begin(), ring_caps.end());
    const std::string heads = " (" + std::to_string(c.n_head_kv) + (c.n_head_kv == 1 ? " KV head" : " KV heads") +
                              " x " + std::to_string(c.head_dim) + ", bf16 K and V)";
    if (!dense_caps.empty())
      add("kv", "KV dense", p.kv_dense, layers(dense_caps.size()) + " x " + capacity_text(dense_caps) + heads);
    if (!ring_caps.empty())
      add("kv", "KV rings", p.kv_rings, layers(ring_caps.size()) + " x " + capacity_text(ring_caps) + heads);
  }

  const size_t n = static_cast<size_t>(r.batch);
  const size_t dim = c.dim, qd = size_t(c.n_head) * c.head_dim, ff = c.ffn_dim, vocab = c.vocab;
  const bool gemm = r.batch > db::kGemvMaxRows;  // prefill batches run GEMMs on bf16 operands

  // Activations.
  // The model's fp32 buffers (CudaBackend::alloc, as DecoderModel's constructor sizes them for the batch).
  p.activations += add("activations", "fp32 buffers", db::activation_bytes(be.activation_floats()),
                       "x, xn, q, k, v, att, proj, gate, up for " + std::to_string(r.batch) + " rows; logits");
  // All-position logits (DecoderModel::finish grows s_.logits to max_batch rows on demand).
  if (r.all_logits && r.batch > 1)
    p.activations += add("activations", "all-position logits", db::activation_bytes(n * vocab),
                         std::to_string(r.batch) + " rows x " + std::to_string(vocab));
  // The bf16 GEMM operand (cuda_backend.h gemm_operand_buf_, a GrowingBuffer): a prefill's first forward grows it
  // from the attention pre-norm (rmsnorm: batch x dim), the attention output (attention's o16: batch x q heads x
  // head_dim), the residual step's next norm (residual_norm: batch x dim) to the gated product (gated_mlp:
  // batch x ffn); what it grew from stays allocated (retired) until that forward's synchronize.
  // The gated product is a bf16 operand where the down projection's GEMM reads one (not F16/F32 weights, which
  // multiply fp32 activations in TF32).
  if (gemm) {
    bool ff_operand = false;
    for (const PlannedWeight& w : be.weights())
      if (w.matrix && w.name.find("ffn_down") != std::string::npos)
        ff_operand |= db::gemm_reads_bf16_operand(w.type, w.cols);
    db::GrowingBytes operand;
    for (size_t width : {dim, qd, dim}) operand.ensure(n * width * 2);
    if (ff_operand) operand.ensure(n * ff * 2);
    p.activations += add("activations", "bf16 GEMM operand", operand.live(),
                         std::to_string(r.batch) + " x " + std::to_string(operand.have / 2 / n) +
                             " bf16 (gemm_operand_buf_, with the smaller buffers it grew from)");
  }
  // The attention's bf16 queries (cuda_ops.cu attention: bf16_scratch, scratch_bf16_).
  p.activations += add("activations", "bf16 queries", n * qd * 2,
                       std::to_string(r.batch) + " x " + std::to_string(qd) + " bf16 (scratch_bf16_)");
  // The batch's position and tokens on the device (begin_batch: batch_dev_).
  p.activations += add("activations", "batch tokens", (n + 1) * 4, "batch_dev_");

  // Workspace.
  p.workspace += add("workspace", "cuBLAS workspace", db::kCublasWorkspaceBytes, "kCublasWorkspaceBytes");
  // The prefill GEMMs' dequantized weight slices (slices_[2]): matrix by matrix in the order a forward multiplies
  // them (the upload order: each layer's q, k, v, o, gate, up, down; row views of fused tensors in place of the
  // tensor), the embedding/output table last and only for all-position logits (a last position's logits run the
  // GEMV). Two 64 MiB buffers once two slices have been taken.
  if (gemm) {
    db::WeightSliceBuffers slices;
    for (const PlannedWeight& w : be.weights())
      if (w.matrix && !w.viewed && !w.table) slices.add(w.type, w.rows, w.cols);
    if (r.all_logits)
      for (const PlannedWeight& w : be.weights())
        if (w.matrix && w.table && (w.name == "output.weight" || !be.has_output())) slices.add(w.type, w.rows, w.cols);
    p.workspace += add("workspace", "weight slices", slices.live(),
                       "dequantized rows for the prefill GEMMs: two buffers of at least 64 MiB (slices_)");
  }
  // Split-K decode attention partials (decode_workspace_), bounded by one split per SM.
  p.workspace += add("workspace", "decode attention", db::decode_workspace_bytes(c.n_head, c.head_dim),
                     "split-K partials, at most " + std::to_string(db::kPlanSmCount) + " splits");
  // Sampling candidates on the device (top_k: top_k_workspace_, top_k_out_).
  p.workspace += add("workspace", "top-k", db::top_k_workspace_bytes(c.vocab, kMaxDeviceTopK) + db::kTopKOutBytes,
                     "candidates of " + std::to_string(vocab) + " logits");
  // The dense-naive baseline materializes its scores (a transient of the backend's peak), at most batch x ctx.
  bool naive = false;
  for (const LayerConfig& l : c.layers) naive |= l.policy.kind == AttnKind::DenseNaive;
  if (naive)
    p.workspace += add("workspace", "dense-naive scores", db::naive_attention_bytes(c.n_head, r.batch, r.ctx),
                       std::to_string(c.n_head) + " heads x " + std::to_string(r.batch) + " x " +
                           std::to_string(r.ctx) + " fp32 + bf16");

  p.total = p.weights + p.kv() + p.activations + p.workspace;
  p.context_reserve = db::kContextReserveBytes;
  p.budget = r.memory_bytes > p.context_reserve ? r.memory_bytes - p.context_reserve : 0;
  p.fits = p.total <= p.budget;
  return p;
}

size_t JobPlan::transient() const {
  size_t most = 0;
  for (const MemoryPlan& p : plans) most = std::max(most, p.activations + p.workspace);
  return most;
}

JobPlan plan_job(const GgufFile& f, const MemoryJob& job, int ubatch) {
  if (ubatch < 1) fail("ubatch must be at least 1");
  if (job.specs.empty()) fail("internal: a memory job without attention specs");
  JobPlan jp;
  jp.ubatch = ubatch;
  const int longest = job.longest_prefill > 0 ? job.longest_prefill : job.ctx;
  for (const AttnSpec& spec : job.specs) {
    MemoryRequest r;
    r.ctx = job.ctx;
    r.batch = std::max(1, std::min(ubatch, longest));
    r.attn = spec;
    r.kv_types = job.kv_types;
    r.memory_bytes = job.memory_bytes;
    r.all_logits = job.all_logits;
    jp.plans.push_back(plan_memory(f, r));
    const size_t t = jp.plans.back().total;
    jp.total = job.side_by_side ? jp.total + t : std::max(jp.total, t);
  }
  jp.budget = jp.plans.front().budget;
  jp.fits = jp.total <= jp.budget;
  return jp;
}

JobPlan plan_default_ubatch(const GgufFile& f, const MemoryJob& job) {
  JobPlan last;
  for (int u = 32768; u >= 512; u /= 2) {
    last = plan_job(f, job, u);
    if (last.fits && last.transient() <= kDefaultUbatchTransientBytes) return last;
  }
  return last;  // 512: it fits the budget but not the transient cap, or it does not fit at all
}

std::string not_fit_message(const GgufFile& f, const MemoryJob& job, const JobPlan& plan) {
  // The parts summed over the backends that are on the device together (the largest plan when they run in turn).
  size_t weights = 0, kv = 0, act = 0, ws = 0;
  const MemoryPlan* largest = &plan.plans.front();
  for (const MemoryPlan& p : plan.plans) {
    if (p.total > largest->total) largest = &p;
    if (job.side_by_side) {
      weights += p.weights;
      kv += p.kv();
      act += p.activations;
      ws += p.workspace;
    }
  }
  if (!job.side_by_side) {
    weights = largest->weights;
    kv = largest->kv();
    act = largest->activations;
    ws = largest->workspace;
  }
  const size_t budget = plan.budget, over = plan.total > budget ? plan.total - budget : 0;
  std::string kv_detail;
  if (largest->dense_layers) kv_detail += "dense " + times(largest->dense_layers, "layer", job.ctx);
  if (largest->ring_layers)
    kv_detail += std::string(kv_detail.empty() ? "" : ", ") + "rings " +
                 times(largest->ring_layers, "layer", largest->ring_capacity);
  // The part at which the sum, in the order weights, KV cache, activations, workspace, crosses the budget.
  std::string part;
  if (weights > budget) part = "the weights (" + gib(weights) + ") need";
  else if (weights + kv > budget) part = "the KV cache (" + kv_detail + ": " + gib(kv) + ") needs";
  else if (weights + kv + act > budget)
    part = "the activations (batch " + std::to_string(largest->request.batch) + ": " + gib(act) + ") need";
  else part = "the workspace (" + gib(ws) + ") needs";

  std::string head = "does not fit: " + part + " " + gib(over) + " more than the budget of " + gib(budget) + " (" +
                     gib(job.memory_bytes) + " less " + gib(largest->context_reserve) +
                     " for the CUDA context; total " + gib(plan.total) + ")";
  if (weights > budget)
    return head + "; no -c or -b helps: use a smaller quantization or a GPU with more memory";

  // A smaller ubatch (activations, workspace, and the rings that hold window + batch rows).
  int fit_ubatch = 0;
  for (int u = plan.ubatch / 2; u >= 1 && !fit_ubatch; u /= 2)
    if (plan_job(f, job, u).fits) fit_ubatch = u;
  // A shorter context at this ubatch: the largest that fits, not below what the job needs.
  int fit_ctx = 0;
  if (!job.ctx_flag.empty() && job.ctx > job.min_ctx) {
    auto fits_at = [&](int ctx) {
      MemoryJob j = job;
      j.ctx = ctx;
      if (j.longest_prefill == 0 || j.longest_prefill > ctx) j.longest_prefill = ctx;
      return plan_job(f, j, plan.ubatch).fits;
    };
    int lo = std::max(1, job.min_ctx), hi = job.ctx - 1;
    if (fits_at(lo)) {
      while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (fits_at(mid)) lo = mid;
        else hi = mid - 1;
      }
      fit_ctx = lo >= 1024 && lo / 256 * 256 >= job.min_ctx ? lo / 256 * 256 : lo;
    }
  }
  std::string hint;
  if (fit_ctx) hint = job.ctx_flag + " " + std::to_string(fit_ctx);
  if (fit_ubatch) hint += (hint.empty() ? "" : " or ") + std::string("-b ") + std::to_string(fit_ubatch);
  if (hint.empty()) return head + "; no -c or -b alone makes it fit: a GPU with more memory (or --attn sliding)";
  return head + "; try " + hint;
}

size_t parse_memory_size(const std::string& text, const std::string& flag) {
  auto bad = [&] {
    fail(flag + ": '" + text + "' is not a memory size (GiB by default: 80G, 24, 23.5G, 512M, 1T)");
  };
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.')) bad();
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  std::string unit(end);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 0;
  if (unit.empty() || unit == "G" || unit == "GB" || unit == "GIB") scale = double(db::kGiB);
  else if (unit == "M" || unit == "MB" || unit == "MIB") scale = double(db::kMiB);
  else if (unit == "T" || unit == "TB" || unit == "TIB") scale = double(db::kGiB) * 1024;
  if (scale == 0 || !(value > 0) || !std::isfinite(value) || value * scale > 1e18) bad();
  return static_cast<size_t>(std::llround(value * scale));
}

}  // namespace swrun
