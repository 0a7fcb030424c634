// Backend ops as the model code calls them: each call is bracketed by a named range (layer, op), so the profiler
// and NVTX see the same structure as forward(). With no profiler attached a range costs two virtual calls.
#pragma once
#include <initializer_list>
#include <utility>
#include <vector>

#include "runtime/backend.h"

namespace swrun {

class TracedOps {
 public:
  explicit TracedOps(Backend& be) : be_(be) {}

  void embed(const char* name, const Weight& table, float scale, Buffer out) {
    Range r(be_, name, -1, OpKind::Embed);
    be_.embed(table, scale, out);
  }
  void rmsnorm(const char* name, int layer, Buffer x, const Weight& w, int64_t rows, float eps, Buffer out) {
    Range r(be_, name, layer, OpKind::Norm);
    be_.rmsnorm(x, w, rows, eps, out);
  }
  void matmul(const char* name, int layer, Buffer x, const Weight& w, int64_t rows, Buffer out) {
    Range r(be_, name, layer, OpKind::Matmul);
    be_.matmul(x, w, rows, out);
  }
  void rope(const char* name, int layer, Buffer x, int heads, int head_dim, const RopeParams& p) {
    Range r(be_, name, layer, OpKind::Rope);
    be_.rope(x, heads, head_dim, p);
  }
  void attention(int layer, Buffer q, Buffer k, Buffer v, Buffer out, const AttnParams& p) {
    Range r(be_, "attention", layer, OpKind::Attention);
    be_.attention(layer, q, k, v, out, p);
  }
  void gated_act(const char* name, int layer, Buffer gate, Buffer up, size_t count, GatedAct act) {
    Range r(be_, name, layer, OpKind::Act);
    be_.gated_act(gate, up, count, act);
  }
  void gated_matmul(const char* name, int layer, Buffer x, const Weight& w_gate, const Weight& w_up, int64_t rows,
                    GatedAct act, Buffer gate, Buffer up) {
    Range r(be_, name, layer, OpKind::Matmul);
    be_.gated_matmul(x, w_gate, w_up, rows, act, gate, up);
  }
  void gated_mlp(const char* name, int layer, Buffer x, const Weight& w_gate, const Weight& w_up,
                 const Weight& w_down, int64_t rows, GatedAct act, Buffer gate, Buffer up, Buffer out) {
    Range r(be_, name, layer, OpKind::Matmul);
    be_.gated_mlp(x, w_gate, w_up, w_down, rows, act, gate, up, out);
  }
  // q, k and v (or any projections of x): {weight, output} pairs.
  void matmuls(const char* name, int layer, Buffer x, int64_t rows,
               std::initializer_list<std::pair<const Weight*, Buffer>> projections) {
    Range r(be_, name, layer, OpKind::Matmul);
    std::vector<const Weight*> ws;
    std::vector<Buffer> outs;
    for (const auto& [w, out] : projections) {
      ws.push_back(w);
      outs.push_back(out);
    }
    be_.matmuls(x, rows, ws.data(), outs.data(), static_cast<int>(ws.size()));
  }
  void qk_norm_rope(const char* name, int layer, Buffer q, Buffer k, const Weight* q_norm, const Weight* k_norm,
                    int64_t tokens, int n_head, int n_head_kv, int head_dim, float eps, const RopeParams& p) {
    Range r(be_, name, layer, OpKind::Rope);
    be_.qk_norm_rope(q, k, q_norm, k_norm, tokens, n_head, n_head_kv, head_dim, eps, p);
  }
  void residual_norm(const char* name, int layer, Buffer y, const Weight* w_post, Buffer x, const Weight* w_next,
                     int64_t rows, int64_t width, float eps, Buffer xn) {
    Range r(be_, name, layer, OpKind::Add);
    be_.residual_norm(y, w_post, x, w_next, rows, width, eps, xn);
  }
  void add(const char* name, int layer, Buffer x, Buffer y, size_t count) {
    Range r(be_, name, layer, OpKind::Add);
    be_.add(x, y, count);
  }
  void add_bias(const char* name, int layer, Buffer x, const Weight& bias, int64_t rows) {
    Range r(be_, name, layer, OpKind::Add);
    be_.add_bias(x, bias, rows);
  }
  void moe(const char* name, int layer, Buffer x, int64_t rows, const MoeFfn& f, Buffer out) {
    Range r(be_, name, layer, OpKind::Matmul);
    be_.moe(x, rows, f, out);
  }
  void scale(const char* name, int layer, Buffer x, size_t count, float s) {
    Range r(be_, name, layer, OpKind::Other);
    be_.scale(x, count, s);
  }
  void copy_cols(const char* name, int layer, Buffer src, int64_t rows, int64_t src_cols, int64_t first,
                 int64_t count, Buffer dst) {
    Range r(be_, name, layer, OpKind::Other);
    be_.copy_cols(src, rows, src_cols, first, count, dst);
  }
  void softcap(const char* name, int layer, Buffer x, size_t count, float cap) {
    Range r(be_, name, layer, OpKind::Other);
    be_.softcap(x, count, cap);
  }

  // A named range around several ops (a whole layer), so NVTX and the profiler show the nesting.
  struct Range {
    Range(Backend& be, const char* name, int layer, OpKind op) : be(be) { be.push_range(name, layer, op); }
    ~Range() { be.pop_range(); }
    Range(const Range&) = delete;
    Range& operator=(const Range&) = delete;
    Backend& be;
  };
  Range layer(int index) { return Range(be_, "layer", index, OpKind::Other); }

 private:
  Backend& be_;
};

// Rows [first, first+rows) of a row-major matrix with `cols` columns.
inline Buffer rows_of(Buffer b, size_t first, size_t rows, size_t cols) {
  return Buffer{b.data + first * cols, rows * cols};
}

}  // namespace swrun
