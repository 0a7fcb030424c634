// Per-layer attention policy: which kernel runs a layer and which keys a query sees.
// Window semantics (ARCHITECTURE.md): query at position i sees key j iff i-left <= j <= i+right, clipped to the
// sequence. Causal sliding window of W keys = (W-1, 0); dense causal = (inf, 0); bidirectional local = (w, w).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace swrun {

constexpr int32_t kUnboundedWindow = INT32_MAX;  // "inf" in (left, right)

enum class AttnKind { Dense, DenseNaive, Sliding };

struct AttnPolicy {
  AttnKind kind = AttnKind::Dense;
  int32_t left = kUnboundedWindow;  // keys visible to the left of the query (the query itself not counted)
  int32_t right = 0;                // keys visible to the right (0 = causal)

  static AttnPolicy dense() { return {AttnKind::Dense, kUnboundedWindow, 0}; }
  static AttnPolicy dense_naive() { return {AttnKind::DenseNaive, kUnboundedWindow, 0}; }
  static AttnPolicy sliding(int32_t window_keys) { return {AttnKind::Sliding, window_keys - 1, 0}; }
  bool windowed() const { return left != kUnboundedWindow; }
  int32_t window_keys() const { return windowed() ? left + 1 : kUnboundedWindow; }  // causal W
  bool operator==(const AttnPolicy&) const = default;
};

std::string describe(const AttnPolicy& p);  // "dense", "dense-naive", "sliding:512"

// Parsed --attn value. `model` keeps what the model declares; otherwise one policy for all layers or a
// per-layer list "0-4:sliding:512,5:dense,6-:sliding:1024" (ranges inclusive; "6-" runs to the last layer;
// a bare "sliding" takes the model's window). Throws Error with the offending part on a bad spec.
struct AttnSpec {
  struct Range { int first; int last; /* -1 = to the end */ AttnKind kind; int32_t window; /* 0 = model's */ };
  bool use_model = true;
  std::vector<Range> ranges;
  static AttnSpec parse(const std::string& text);
  // Resolves against the model: `declared` is the model's own per-layer table, `model_window` its window
  // (0 when the model declares none). Throws Error when the spec names a layer past n_layers or needs a
  // window the model does not have.
  std::vector<AttnPolicy> resolve(const std::vector<AttnPolicy>& declared, int32_t model_window) const;
};

// A comma-separated list of --attn specs (`swrun bench`, `perplexity` and `needle` take several). A per-layer spec
// has commas of its own, so items that begin with a layer range ("0-4:sliding:512,5-:dense") stay together:
// "dense,0-4:sliding:512,5-:dense,model" is three specs.
std::vector<std::string> split_attn_specs(const std::string& text);

// Useful FLOPs of one attention call (ARCHITECTURE.md): 4 * head_dim * n_head * sum_i visible_keys(i), for
// n_q queries at positions q_pos0 .. q_pos0+n_q-1 over keys at positions 0 .. n_kv-1.
double attention_useful_flops(const AttnPolicy& p, int64_t q_pos0, int64_t n_q, int64_t n_kv, int head_dim,
                              int n_head);

}  // namespace swrun
