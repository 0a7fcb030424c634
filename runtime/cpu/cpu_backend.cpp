// The reference backend: fp32 math on the host, weights kept in their GGUF type and dequantized row by row inside
// the matmul (memory ~ file size). Clarity first; it is the oracle the CUDA backend is checked against.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/cpu/dot.h"
#include "runtime/dequant.h"
#include "runtime/gguf_writer.h"  // quantize_row
#include "runtime/profile.h"
#include "runtime/sampler.h"

namespace swrun {
namespace {

// GELU, tanh approximation (GeGLU's, as ggml computes it).
float gelu_tanh(float g) { return 0.5f * g * (1.f + std::tanh(0.7978845608028654f * (g + 0.044715f * g * g * g))); }

// Up to this many input rows, fused quantized dots beat dequantizing the weight row first (measured on
// Gemma 3 270M's Q5_0/Q6_K/Q8_0 rows).
constexpr int64_t kFusedDotMaxRows = 8;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {}

  std::string name() const override { return "cpu"; }
  std::string device_name() const override { return std::to_string(threads_) + " threads"; }
  BackendFeatures features() const override {
    return {.attention_sinks = true, .mixture_of_experts = true, .yarn_rope = true, .gemma4_blocks = true,
            .gemma4_moe = true};
  }

  Weight upload(const GgufTensor& t) override {
    const GgmlTypeInfo ti = ggml_type_info(t.type_id);
    if (!ti.supported)
      fail("tensor '" + t.name + "' has unsupported type " + ggml_type_name(t.type_id));
    Weight w;
    w.name = t.name;
    w.type = t.type();
    w.cols = t.ne.empty() ? 1 : t.ne[0];
    w.rows = t.n_elements() / w.cols;
    w.impl = t.data;
    if (w.rows == 1) {  // vectors (norm weights) are read on every token: keep an fp32 copy
      auto& v = vectors_.emplace_back(static_cast<size_t>(w.cols));
      dequantize_row(w.type, t.data, v.data(), w.cols);
      w.impl = v.data();
      w.type = GgmlType::F32;
    }
    return w;
  }

  Weight weight_rows(const Weight& w, int64_t first, int64_t count) override {
    check_row_range(w, first, count);
    const size_t row_bytes = ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(w.type)), w.cols);
    Weight v = w;
    v.rows = count;
    v.impl = static_cast<const uint8_t*>(w.impl) + row_bytes * static_cast<size_t>(first);
    return v;
  }

  Buffer alloc(size_t count) override {
    auto& b = buffers_.emplace_back(count);
    return Buffer{b.data(), count};
  }

  void init_kv(const std::vector<KvLayerSpec>& layers) override {
    for (size_t l = 0; l < layers.size(); ++l)
      for (const auto& type : {layers[l].types.k, layers[l].types.v}) {
        const int64_t row = int64_t(layers[l].n_head_kv) * layers[l].head_dim;
        if (type && row % ggml_type_info(uint32_t(*type)).block_elems != 0)
          fail("layer " + std::to_string(l) + ": KV rows of " + std::to_string(row) + " values are not whole " +
               kv_type_name(*type) + " blocks");
      }
    kv_specs_ = layers;
    k_cache_.assign(layers.size(), {});
    v_cache_.assign(layers.size(), {});
    kv_bytes_ = 0;
    for (size_t l = 0; l < layers.size(); ++l) {
      const size_t n = static_cast<size_t>(layers[l].capacity) * layers[l].n_head_kv * layers[l].head_dim;
      k_cache_[l].assign(n, 0.f);
      v_cache_[l].assign(n, 0.f);
      kv_bytes_ += 2 * n * sizeof(float);
    }
  }
  size_t kv_bytes() const override { return kv_bytes_; }

  void begin_batch(const int32_t* tokens, int32_t pos0, int n) override {
    tokens_.assign(tokens, tokens + n);
    pos0_ = pos0;
    n_ = n;
  }

  void embed(const Weight& table, float scale, Buffer out) override {
    const int64_t dim = table.cols;
    const size_t row_bytes = ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(table.type)), dim);
    for (int i = 0; i < n_; ++i) {
      const int32_t tok = tokens_[i];
      if (tok < 0 || tok >= table.rows)
        fail("token id " + std::to_string(tok) + " is outside the vocabulary (0.." + std::to_string(table.rows - 1) + ")");
      float* dst = out.data + static_cast<size_t>(i) * dim;
      dequantize_row(table.type, static_cast<const uint8_t*>(table.impl) + row_bytes * tok, dst, dim);
      for (int64_t c = 0; c < dim; ++c) dst[c] *= scale;
    }
  }

  void rmsnorm(Buffer x, const Weight& w, int64_t rows, float eps, Buffer out) override {
    const int64_t dim = w.cols;
    const float* g = static_cast<const float*>(w.impl);
#pragma omp parallel for num_threads(threads_) if (rows > 64)
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = x.data + r * dim;
      float* dst = out.data + r * dim;
      double ss = 0;
      for (int64_t c = 0; c < dim; ++c) ss += static_cast<double>(src[c]) * src[c];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      for (int64_t c = 0; c < dim; ++c) dst[c] = g ? src[c] * inv * g[c] : src[c] * inv;
    }
  }

  void matmul(Buffer x, const Weight& w, int64_t rows, Buffer out) override {
    const int64_t in = w.cols, outs = w.rows;
    const size_t row_bytes = ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(w.type)), in);
    const uint8_t* base = static_cast<const uint8_t*>(w.impl);
    if (rows <= kFusedDotMaxRows) {  // few rows: dot straight from the quantized blocks
#pragma omp parallel for num_threads(threads_) schedule(static)
      for (int64_t o = 0; o < outs; ++o)
        for (int64_t r = 0; r < rows; ++r)
          out.data[r * outs + o] = dot_row(w.type, base + row_bytes * o, x.data + r * in, in);
      return;
    }
    // Many rows: dequantize each weight row once and reuse it for every input row.
#pragma omp parallel num_threads(threads_)
    {
      std::vector<float> wrow(static_cast<size_t>(in));
#pragma omp for schedule(static)
      for (int64_t o = 0; o < outs; ++o) {
        dequantize_row(w.type, base + row_bytes * o, wrow.data(), in);
        for (int64_t r = 0; r < rows; ++r) out.data[r * outs + o] = dot_f32(wrow.data(), x.data + r * in, in);
      }
    }
  }

  void rope(Buffer x, int heads, int head_dim, const RopeParams& p) override {
    // Partial RoPE rotates the first rot_dims values as a head of that size; the rest keep their values.
    const int rotated = p.rot_dims > 0 ? p.rot_dims : head_dim;
    if (rotated > head_dim || rotated % 2 != 0)
      fail("rope: " + std::to_string(rotated) + " rotated values in a head of " + std::to_string(head_dim));
    const int half = rotated / 2;
    const float* factors = static_cast<const float*>(p.freq_factors.impl);
    if (factors && p.freq_factors.cols != head_dim / 2)
      fail("rope: " + std::to_string(p.freq_factors.cols) + " frequency factors for head_dim " +
           std::to_string(head_dim));
    std::vector<double> inv_freq(half);
    for (int i = 0; i < half; ++i) {
      inv_freq[i] = std::pow(static_cast<double>(p.freq_base), -2.0 * i / rotated);
      if (factors) inv_freq[i] /= factors[i];
    }
    // YaRN: how much of pair i's original (unscaled) angle is kept, and the magnitude YaRN gives cos and sin.
    std::vector<double> extrapolated(half, 0.0);
    double magnitude = p.attn_factor;
    if (p.yarn) {
      for (int i = 0; i < half; ++i) {
        const double y = (i - p.yarn_low) / std::max(0.001, double(p.yarn_high) - p.yarn_low);
        extrapolated[i] = 1.0 - std::clamp(y, 0.0, 1.0);
      }
      magnitude *= 1.0 + 0.1 * std::log(1.0 / p.freq_scale);
    }
    for (int t = 0; t < n_; ++t) {
      const double pos = static_cast<double>(pos0_ + t);
      for (int h = 0; h < heads; ++h) {
        float* v = x.data + (static_cast<size_t>(t) * heads + h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const double original = pos * inv_freq[i];
          const double a = original * p.freq_scale * (1.0 - extrapolated[i]) + original * extrapolated[i];
          const float c = static_cast<float>(std::cos(a) * magnitude);
          const float s = static_cast<float>(std::sin(a) * magnitude);
          const int i0 = p.style == RopeStyle::NeoX ? i : 2 * i;
          const int i1 = p.style == RopeStyle::NeoX ? i + half : 2 * i + 1;
          const float x0 = v[i0], x1 = v[i1];
          v[i0] = x0 * c - x1 * s;
          v[i1] = x0 * s + x1 * c;
        }
      }
    }
  }

  void attention(int layer, Buffer q, Buffer k, Buffer v, Buffer out, const AttnParams& p) override {
    const bool shared = p.kv_layer >= 0;
    if (shared && p.kv_layer >= layer)
      fail("layer " + std::to_string(layer) + ": shares the KV cache of layer " + std::to_string(p.kv_layer) +
           ", which does not run before it");
    const int cache = shared ? p.kv_layer : layer;
    const KvLayerSpec& spec = kv_specs_.at(cache);
    if (spec.n_head_kv != p.n_head_kv || spec.head_dim != p.head_dim)
      fail("layer " + std::to_string(layer) + ": attention shape does not match the KV cache of layer " +
           std::to_string(cache));
    const int d = p.head_dim, hkv = p.n_head_kv, group = p.n_head / p.n_head_kv;
    const int64_t cap = spec.capacity;
    const size_t row = static_cast<size_t>(hkv) * d;
    const int64_t kv_len = static_cast<int64_t>(pos0_) + n_;
    // The first query of the batch reaches furthest back; its keys must all still be in the ring.
    const int64_t first_key = p.policy.left == kUnboundedWindow ? 0 : std::max<int64_t>(0, pos0_ - p.policy.left);
    if (kv_len - first_key > cap)
      fail("layer " + std::to_string(layer) + ": KV cache of " + std::to_string(cap) + " rows cannot hold keys " +
           std::to_string(first_key) + ".." + std::to_string(kv_len - 1) + " (context or batch too large)");
    for (int t = 0; t < n_ && !shared; ++t) {
      const size_t slot = static_cast<size_t>((pos0_ + t) % cap);
      store_kv_row(spec.types.k, k.data + t * row, &k_cache_[layer][slot * row], row);
      store_kv_row(spec.types.v, v.data + t * row, &v_cache_[layer][slot * row], row);
    }
    const float* kc = k_cache_[cache].data();
    const float* vc = v_cache_[cache].data();
    const float* sinks = static_cast<const float*>(p.sinks.impl);
    if (sinks && (p.sinks.type != GgmlType::F32 || p.sinks.rows != 1 || p.sinks.cols != p.n_head))
      fail("attention: sinks '" + p.sinks.name + "' must be an F32 vector of " + std::to_string(p.n_head) +
           " values (one per query head)");
#pragma omp parallel num_threads(threads_)
    {
      std::vector<float> scores;
#pragma omp for collapse(2) schedule(dynamic)
      for (int t = 0; t < n_; ++t) {
        for (int h = 0; h < p.n_head; ++h) {
          const int64_t i = pos0_ + t;
          const int64_t lo = p.policy.left == kUnboundedWindow ? 0 : std::max<int64_t>(0, i - p.policy.left);
          const int64_t hi = std::min<int64_t>(kv_len - 1, i + p.policy.right);
          const float* qv = q.data + (static_cast<size_t>(t) * p.n_head + h) * d;
          float* o = out.data + (static_cast<size_t>(t) * p.n_head + h) * d;
          std::fill(o, o + d, 0.f);
          if (hi < lo) continue;
          const int kvh = h / group;
          scores.resize(static_cast<size_t>(hi - lo + 1));
          float mx = -INFINITY;
          for (int64_t j = lo; j <= hi; ++j) {
            const float* kv = kc + static_cast<size_t>(j % cap) * row + static_cast<size_t>(kvh) * d;
            float s = 0.f;
            for (int c = 0; c < d; ++c) s += qv[c] * kv[c];
            s *= p.scale;
            if (p.softcap > 0.f) s = p.softcap * std::tanh(s / p.softcap);
            scores[j - lo] = s;
            mx = std::max(mx, s);
          }
          // The sink joins the max (so that no exp overflows) and the denominator, never the weighted sum.
          if (sinks) mx = std::max(mx, sinks[h]);
          double sum = sinks ? std::exp(double(sinks[h]) - mx) : 0.0;
          for (float& s : scores) { s = std::exp(s - mx); sum += s; }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = lo; j <= hi; ++j) {
            const float* vv = vc + static_cast<size_t>(j % cap) * row + static_cast<size_t>(kvh) * d;
            const float w = scores[j - lo] * inv;
            for (int c = 0; c < d; ++c) o[c] += w * vv[c];
          }
        }
      }
    }
  }

  void moe(Buffer x, int64_t rows, const MoeFfn& f, Buffer out) override {
    const bool fused = f.gate_up.impl != nullptr;
    const int64_t dim = (fused ? f.gate_up : f.gate).cols;
    check_moe_shapes(f, dim, rows);
    const float* down_scale = static_cast<const float*>(f.down_scale.impl);
    std::vector<float> router_logits(f.n_expert), gate(f.ffn), up(f.ffn), expert_out(dim);
    std::vector<int> chosen(f.n_expert);
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data + r * dim;
      float* yr = out.data + r * dim;
      matvec_rows(f.router, 0, f.n_expert, f.router_input.data ? f.router_input.data + r * dim : xr,
                  router_logits.data());
      add_bias_row(f.router_bias, 0, router_logits.data());
      // The n_used largest logits, then a softmax over those alone.
      std::iota(chosen.begin(), chosen.end(), 0);
      std::partial_sort(chosen.begin(), chosen.begin() + f.n_used, chosen.end(), [&](int a, int b) {
        return router_logits[a] > router_logits[b] || (router_logits[a] == router_logits[b] && a < b);
      });
      const float top = router_logits[chosen[0]];
      double weight_sum = 0;
      for (int k = 0; k < f.n_used; ++k) weight_sum += std::exp(double(router_logits[chosen[k]]) - top);
      std::fill(yr, yr + dim, 0.f);
      for (int k = 0; k < f.n_used; ++k) {
        const int e = chosen[k];
        const float weight = static_cast<float>(std::exp(double(router_logits[e]) - top) / weight_sum);
        if (fused) {
          matvec_rows(f.gate_up, int64_t{2 * e} * f.ffn, f.ffn, xr, gate.data());
          matvec_rows(f.gate_up, int64_t{2 * e + 1} * f.ffn, f.ffn, xr, up.data());
        } else {
          matvec_rows(f.gate, int64_t{e} * f.ffn, f.ffn, xr, gate.data());
          matvec_rows(f.up, int64_t{e} * f.ffn, f.ffn, xr, up.data());
        }
        add_bias_row(f.gate_bias, e, gate.data());
        add_bias_row(f.up_bias, e, up.data());
        for (int j = 0; j < f.ffn; ++j) {
          if (f.act == MoeAct::GeluTanh) {
            gate[j] = gelu_tanh(gate[j]) * up[j];
            continue;
          }
          const float g = std::min(gate[j], f.limit);
          const float u = std::clamp(up[j], -f.limit, f.limit);
          gate[j] = g / (1.f + std::exp(-f.alpha * g)) * (u + 1.f);
        }
        matvec_rows(f.down, int64_t{e} * dim, dim, gate.data(), expert_out.data());
        if (down_scale)
          for (float& v : expert_out) v *= down_scale[e];
        add_bias_row(f.down_bias, e, expert_out.data());
        for (int64_t c = 0; c < dim; ++c) yr[c] += weight * expert_out[c];
      }
    }
  }

  void gated_act(Buffer gate, Buffer up, size_t count, GatedAct act) override {
#pragma omp parallel for num_threads(threads_) if (count > 65536)
    for (size_t i = 0; i < count; ++i) {
      const float g = gate.data[i];
      float a;
      if (act == GatedAct::Silu) {
        a = g / (1.f + std::exp(-g));
      } else {
        a = gelu_tanh(g);
      }
      gate.data[i] = a * up.data[i];
    }
  }

  void add(Buffer x, Buffer y, size_t count) override {
    for (size_t i = 0; i < count; ++i) x.data[i] += y.data[i];
  }

  void add_bias(Buffer x, const Weight& bias, int64_t rows) override {
    const float* b = static_cast<const float*>(bias.impl);
    if (bias.rows != 1) fail("add_bias: '" + bias.name + "' is not a vector");
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < bias.cols; ++c) x.data[r * bias.cols + c] += b[c];
  }

  void softcap(Buffer x, size_t count, float cap) override {
    for (size_t i = 0; i < count; ++i) x.data[i] = cap * std::tanh(x.data[i] / cap);
  }

  void scale(Buffer x, size_t count, float s) override {
    for (size_t i = 0; i < count; ++i) x.data[i] *= s;
  }

  void copy_cols(Buffer src, int64_t rows, int64_t src_cols, int64_t first, int64_t count, Buffer dst) override {
    if (first < 0 || count < 0 || first + count > src_cols)
      fail("copy_cols: columns " + std::to_string(first) + "+" + std::to_string(count) + " outside " +
           std::to_string(src_cols));
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dst.data + r * count, src.data + r * src_cols + first, static_cast<size_t>(count) * sizeof(float));
  }

  void read(Buffer src, size_t offset, size_t count, float* host) override {
    std::memcpy(host, src.data + offset, count * sizeof(float));
  }
  void top_k(Buffer src, size_t count, int k, int32_t* ids, float* values) override {
    if (k < 1 || k > kMaxDeviceTopK || static_cast<size_t>(k) > count || count > src.count)
      fail("top_k: k = " + std::to_string(k) + " of " + std::to_string(count) + " floats");
    const int found = top_candidates(src.data, static_cast<int>(count), k, ids, values);
    std::fill(ids + found, ids + k, -1);
    std::fill(values + found, values + k, NAN);
  }
  void score_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                  RowScore* out) override {
    check_logit_rows("score_rows", src, rows, vocab, targets);
    const size_t width = static_cast<size_t>(kl_row_width(vocab));
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; ++r)
      out[r] = score_row(vocab, src.data + r * vocab, targets[r], base ? base + r * width : nullptr);
  }
  void compress_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, uint16_t* out,
                     double* nll) override {
    check_logit_rows("compress_rows", src, rows, vocab, targets);
    const size_t width = static_cast<size_t>(kl_row_width(vocab));
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; ++r) nll[r] = compress_row(vocab, src.data + r * vocab, targets[r], out + r * width);
  }
  void synchronize() override {}

  void attach_profiler(Profiler* profiler) override { timer_.attach(profiler); }
  void push_range(const char* name, int layer, OpKind op) override { timer_.push(name, layer, op); }
  void pop_range() override { timer_.pop(); }

 private:
  // y[i] = row (first + i) of w . x for i < count: the fused dots, parallel over the rows.
  void matvec_rows(const Weight& w, int64_t first, int64_t count, const float* x, float* y) const {
    const size_t row_bytes = ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(w.type)), w.cols);
    const uint8_t* base = static_cast<const uint8_t*>(w.impl) + row_bytes * static_cast<size_t>(first);
#pragma omp parallel for num_threads(threads_) schedule(static) if (count * w.cols > 16384)
    for (int64_t i = 0; i < count; ++i) y[i] = dot_row(w.type, base + row_bytes * i, x, w.cols);
  }

  // y += row `row` of bias (a vector when row is 0 and bias.rows is 1); nothing when the bias is absent.
  static void add_bias_row(const Weight& bias, int64_t row, float* y) {
    if (!bias.impl) return;
    std::vector<float> b(static_cast<size_t>(bias.cols));
    const size_t row_bytes = ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(bias.type)), bias.cols);
    dequantize_row(bias.type, static_cast<const uint8_t*>(bias.impl) + row_bytes * static_cast<size_t>(row),
                   b.data(), bias.cols);
    for (int64_t c = 0; c < bias.cols; ++c) y[c] += b[c];
  }

  int threads_;
  std::vector<std::vector<float>> buffers_;
  std::vector<std::vector<float>> vectors_;
  // A cache row as a cache of `type` holds it: f32 values rounded through the type (unset: f32 as is).
  void store_kv_row(const std::optional<GgmlType>& type, const float* src, float* dst, size_t n) {
    if (!type || *type == GgmlType::F32) return void(std::memcpy(dst, src, n * sizeof(float)));
    kv_round_.resize(ggml_row_bytes(ggml_type_info(uint32_t(*type)), int64_t(n)));
    quantize_row(*type, src, kv_round_.data(), int64_t(n));
    dequantize_row(*type, kv_round_.data(), dst, int64_t(n));
  }

  std::vector<KvLayerSpec> kv_specs_;
  std::vector<uint8_t> kv_round_;  // one row in a KV cache type's bytes
  std::vector<std::vector<float>> k_cache_, v_cache_;
  size_t kv_bytes_ = 0;
  std::vector<int32_t> tokens_;
  int32_t pos0_ = 0;
  int n_ = 0;
  HostRangeTimer timer_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace swrun
