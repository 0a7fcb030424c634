// Per-layer, per-op timings of a prefill. Backends feed op times into a Profiler (CUDA events on the GPU, the
// HostRangeTimer below on the CPU); the caller closes each timed run with its wall time; finish() turns the runs
// into one Profile (per-op medians) that engine/report renders.
#pragma once
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/attn_policy.h"
#include "runtime/backend.h"

namespace swrun {

// The four columns of the report. Projections are the attention's QKV and output matmuls.
enum class OpCategory { Attention, Projection, Mlp, Other };
inline constexpr int kOpCategoryCount = 4;
inline constexpr std::array<OpCategory, kOpCategoryCount> kOpCategories = {
    OpCategory::Attention, OpCategory::Projection, OpCategory::Mlp, OpCategory::Other};

const char* category_name(OpCategory c);  // "attention", "projections", "mlp", "other"
const char* op_kind_name(OpKind op);       // "embed", "norm", "matmul", ...
// Matmuls named "ffn" (a whole gated MLP) or "ffn_*" and the gated activation are MLP; every other matmul of a
// layer is a projection ("attn_q", "attn_k", "attn_v", "attn_out"); norms, rope, residual adds, embedding and
// logits are other.
OpCategory categorize(OpKind op, std::string_view name);

// Facts about the runs that the caller measures (everything but the op times).
struct RunInfo {
  std::string model, backend, device, attn_spec;
  int64_t n_tokens = 0;
  int ubatch = 0;
  int chunks = 0;
  double ttft_ms = 0;  // time to first token: prefill plus the first sampled token
  size_t peak_memory_bytes = 0;
  size_t kv_bytes_dense = 0;  // KV cache of the layers that keep every position
  size_t kv_bytes_ring = 0;   // KV cache of the sliding layers (window-sized rings)
};

// One op of one layer; `ms` is the median over the timed runs of its time summed over the chunks of a run.
struct OpTiming {
  std::string row;  // label of its report row
  std::string name;
  OpKind kind = OpKind::Other;
  OpCategory category = OpCategory::Other;
  double ms = 0;
};

// A row of the report: a model layer, or the "embed" / "output" rows around them.
struct LayerTiming {
  std::string label;          // "0", "1", ..., "embed", "output"
  int layer = -1;             // model layer index; -1 on the embed and output rows
  bool has_policy = false;    // false on the embed and output rows
  AttnPolicy policy;
  std::array<double, kOpCategoryCount> ms{};  // indexed by OpCategory

  double category_ms(OpCategory c) const { return ms[static_cast<size_t>(c)]; }
  double total_ms() const;
  bool dense() const { return has_policy && !policy.windowed(); }
};

struct Profile {
  RunInfo info;
  std::vector<double> prefill_ms_runs;  // wall time of each timed run
  std::vector<double> op_ms_runs;       // time of all ops of each timed run (the ops a run's wall time covers)
  std::vector<LayerTiming> rows;        // embed, layers 0 .. n-1, output
  std::vector<OpTiming> ops;            // in the order they first ran

  int repeat() const { return static_cast<int>(prefill_ms_runs.size()); }
  double prefill_ms() const;             // median of the runs
  double tokens_per_s() const;           // n_tokens over the median prefill
  double op_total_ms() const;            // sum of the rows: the time the ops account for
  double category_total_ms(OpCategory c) const;
  double share_pct(const LayerTiming& row) const;  // row total as a percentage of op_total_ms()
  int dense_layers() const;
  int windowed_layers() const;
};

double median(std::vector<double> values);  // mean of the two middle values for an even count; 0 when empty

// Collects op times run by run. A run is what the caller times as one prefill (all its chunks).
class Profiler {
 public:
  // One policy per model layer; op times of layers < 0 go to the embed row, >= n_layers to the output row.
  explicit Profiler(std::vector<AttnPolicy> layer_policies);

  // Adds `ms` to the op `name` (a string the caller keeps alive or a literal) of `layer` in the current run.
  // Times are exclusive: a range nested in another is charged to the inner one only.
  void add(int layer, OpKind op, const char* name, double ms);
  void end_run(double prefill_ms);  // the current run is complete and counts
  void discard_run();               // the current run was a warm-up
  int runs() const { return static_cast<int>(runs_.size()); }

  // Medians over the completed runs; throws Error when no run was completed.
  Profile finish(const RunInfo& info) const;

 private:
  struct OpKey {
    int row;
    std::string name;
    OpKind kind;
  };
  int row_of(int layer) const;
  size_t key_index(int row, OpKind op, const char* name);

  std::vector<AttnPolicy> policies_;
  std::vector<OpKey> keys_;                   // every op seen, in first-seen order
  std::vector<std::vector<size_t>> row_keys_; // indices into keys_ per row, so add() searches one layer's ops
  std::vector<double> current_;               // ms per key, the run in progress
  std::vector<std::vector<double>> runs_;     // ms per key, per completed run
  std::vector<double> prefill_ms_;
};

// Host-clock ranges for backends whose ops finish before they return (the CPU backend): push/pop pairs around
// each op, nested ranges charge only their own (exclusive) time. Without a profiler attached push and pop
// return at once, so the hot path pays a pointer test.
class HostRangeTimer {
 public:
  void attach(Profiler* profiler);  // nullptr detaches; open ranges are dropped
  Profiler* profiler() const { return profiler_; }

  void push(const char* name, int layer, OpKind op) {
    if (profiler_) open(name, layer, op);
  }
  void pop() {
    if (profiler_) close();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Open {
    const char* name;
    int layer;
    OpKind op;
    Clock::time_point start;
    double child_ms;
  };
  void open(const char* name, int layer, OpKind op);
  void close();

  Profiler* profiler_ = nullptr;
  std::vector<Open> stack_;
};

}  // namespace swrun
