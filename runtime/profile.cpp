#include "runtime/profile.h"

#include <algorithm>
#include <cstring>

#include "runtime/common.h"

namespace swrun {

const char* category_name(OpCategory c) {
  switch (c) {
    case OpCategory::Attention: return "attention";
    case OpCategory::Projection: return "projections";
    case OpCategory::Mlp: return "mlp";
    case OpCategory::Other: return "other";
  }
  return "?";
}

const char* op_kind_name(OpKind op) {
  switch (op) {
    case OpKind::Embed: return "embed";
    case OpKind::Norm: return "norm";
    case OpKind::Matmul: return "matmul";
    case OpKind::Rope: return "rope";
    case OpKind::Attention: return "attention";
    case OpKind::Act: return "act";
    case OpKind::Add: return "add";
    case OpKind::Logits: return "logits";
    case OpKind::Other: return "other";
  }
  return "?";
}

OpCategory categorize(OpKind op, std::string_view name) {
  switch (op) {
    case OpKind::Attention: return OpCategory::Attention;
    case OpKind::Act: return OpCategory::Mlp;
    case OpKind::Matmul:
      return name == "ffn" || name.starts_with("ffn_") ? OpCategory::Mlp : OpCategory::Projection;
    default: return OpCategory::Other;
  }
}

double LayerTiming::total_ms() const {
  double t = 0;
  for (double v : ms) t += v;
  return t;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  if (values.size() % 2 == 1) return values[mid];
  const double upper = values[mid];
  const double lower = *std::max_element(values.begin(), values.begin() + mid);
  return (lower + upper) / 2;
}

double Profile::prefill_ms() const { return median(prefill_ms_runs); }

double Profile::tokens_per_s() const {
  const double ms = prefill_ms();
  return ms > 0 ? static_cast<double>(info.n_tokens) / (ms / 1e3) : 0;
}

double Profile::op_total_ms() const {
  double t = 0;
  for (const LayerTiming& r : rows) t += r.total_ms();
  return t;
}

double Profile::category_total_ms(OpCategory c) const {
  double t = 0;
  for (const LayerTiming& r : rows) t += r.category_ms(c);
  return t;
}

double Profile::share_pct(const LayerTiming& row) const {
  const double total = op_total_ms();
  return total > 0 ? 100.0 * row.total_ms() / total : 0;
}

int Profile::dense_layers() const {
  return static_cast<int>(std::count_if(rows.begin(), rows.end(), [](const LayerTiming& r) { return r.dense(); }));
}

int Profile::windowed_layers() const {
  return static_cast<int>(std::count_if(rows.begin(), rows.end(),
                                        [](const LayerTiming& r) { return r.has_policy && r.policy.windowed(); }));
}

Profiler::Profiler(std::vector<AttnPolicy> layer_policies)
    : policies_(std::move(layer_policies)), row_keys_(policies_.size() + 2) {}

// Rows: 0 = embed, 1 .. n = layers, n + 1 = output.
int Profiler::row_of(int layer) const {
  const int n = static_cast<int>(policies_.size());
  if (layer < 0) return 0;
  if (layer >= n) return n + 1;
  return layer + 1;
}

size_t Profiler::key_index(int row, OpKind op, const char* name) {
  std::vector<size_t>& in_row = row_keys_[static_cast<size_t>(row)];
  for (size_t i : in_row)
    if (keys_[i].kind == op && keys_[i].name == name) return i;
  keys_.push_back({row, name, op});
  current_.push_back(0);
  in_row.push_back(keys_.size() - 1);
  return keys_.size() - 1;
}

void Profiler::add(int layer, OpKind op, const char* name, double ms) {
  current_[key_index(row_of(layer), op, name ? name : "?")] += ms;
}

void Profiler::end_run(double prefill_ms) {
  runs_.push_back(current_);
  prefill_ms_.push_back(prefill_ms);
  std::fill(current_.begin(), current_.end(), 0.0);
}

void Profiler::discard_run() { std::fill(current_.begin(), current_.end(), 0.0); }

Profile Profiler::finish(const RunInfo& info) const {
  if (runs_.empty()) fail("profiler: no timed run was completed");
  Profile p;
  p.info = info;
  p.prefill_ms_runs = prefill_ms_;
  for (const std::vector<double>& run : runs_) {
    double sum = 0;
    for (double ms : run) sum += ms;
    p.op_ms_runs.push_back(sum);
  }
  const int n = static_cast<int>(policies_.size());
  p.rows.resize(static_cast<size_t>(n) + 2);
  p.rows.front().label = "embed";
  p.rows.back().label = "output";
  for (int l = 0; l < n; ++l) {
    LayerTiming& r = p.rows[static_cast<size_t>(l) + 1];
    r.label = std::to_string(l);
    r.layer = l;
    r.has_policy = true;
    r.policy = policies_[static_cast<size_t>(l)];
  }
  for (size_t k = 0; k < keys_.size(); ++k) {
    std::vector<double> per_run;
    // A key first seen in a later run did not run in the earlier ones: its time there is 0.
    for (const std::vector<double>& run : runs_) per_run.push_back(k < run.size() ? run[k] : 0.0);
    const OpKey& key = keys_[k];
    LayerTiming& row = p.rows[static_cast<size_t>(key.row)];
    const OpCategory cat = categorize(key.kind, key.name);
    const double ms = median(std::move(per_run));
    row.ms[static_cast<size_t>(cat)] += ms;
    p.ops.push_back({row.label, key.name, key.kind, cat, ms});
  }
  return p;
}

void HostRangeTimer::attach(Profiler* profiler) {
  profiler_ = profiler;
  stack_.clear();
}

void HostRangeTimer::open(const char* name, int layer, OpKind op) {
  stack_.push_back({name, layer, op, Clock::now(), 0.0});
}

void HostRangeTimer::close() {
  if (stack_.empty()) fail("profiler: pop_range without a matching push_range");
  const Open top = stack_.back();
  stack_.pop_back();
  const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - top.start).count();
  if (!stack_.empty()) stack_.back().child_ms += elapsed;
  profiler_->add(top.layer, top.op, top.name, elapsed - top.child_ms);
}

}  // namespace swrun
