// Attention kernels (flash prefill, split-K decode, dense-naive), with and without score softcapping and attention
// sinks, against an fp64 CPU reference on fresh random inputs. Seed from the clock (printed; SWRUN_TEST_SEED reproduces a run).
// Outputs are poisoned with NaN before every launch and every element is checked to be written.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attention/attention.h"
#include "runtime/common.h"

namespace {

using swrun::cuda::AttnDtype;
using swrun::cuda::FlashAttnArgs;
constexpr int32_t kInf = INT32_MAX;

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device"

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

uint64_t test_seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("SWRUN_TEST_SEED");
    const uint64_t s = env ? std::strtoull(env, nullptr, 10)
                           : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::printf("test_cuda_attention seed %llu (SWRUN_TEST_SEED=%llu reproduces)\n",
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

std::mt19937_64& rng() {
  static std::mt19937_64 g(test_seed());
  return g;
}

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&ptr, std::max<size_t>(bytes, 16)) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

uint16_t to_bits(float x, AttnDtype t) {
  if (t == AttnDtype::BF16) {
    __nv_bfloat16 b = __float2bfloat16(x);
    uint16_t u;
    std::memcpy(&u, &b, 2);
    return u;
  }
  __half h = __float2half(x);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

float from_bits(uint16_t u, AttnDtype t) {
  if (t == AttnDtype::BF16) {
    __nv_bfloat16 b;
    std::memcpy(&b, &u, 2);
    return __bfloat162float(b);
  }
  __half h;
  std::memcpy(&h, &u, 2);
  return __half2float(h);
}

// Random values already rounded to the input type, so the reference sees exactly what the GPU sees.
std::vector<float> random_rounded(size_t n, AttnDtype t) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = from_bits(to_bits(dist(rng()), t), t);
  return v;
}

enum class Impl { Flash, Decode, Naive };

struct Shape {
  int head_dim = 128, n_head = 4, n_head_kv = 4;
  AttnDtype dtype = AttnDtype::BF16;
  bool o_fp32 = false;
};

// Keys/values of positions 0..kv_len-1 in position order, plus the queries of one call.
struct Problem {
  Shape s;
  int q_pos0 = 0, n_q = 0, left = kInf, right = 0;
  std::vector<float> q, k, v;  // q: [n_q][n_head][d]; k, v: [kv_len][n_head_kv][d]
  // Scores are scaled by score_gain / sqrt(d): a gain above 1 spreads them far enough for a softcap to bite.
  float score_gain = 1.f, softcap = 0.f;
  std::vector<float> sinks;  // gpt-oss's attention sinks, one logit per query head; empty: none
  int kv_len() const { return q_pos0 + n_q; }
  float scale() const { return score_gain / std::sqrt(float(s.head_dim)); }
};

Problem make_problem(const Shape& s, int q_pos0, int n_q, int left, int right) {
  Problem p{s, q_pos0, n_q, left, right, {}, {}, {}, 1.f, 0.f, {}};
  p.q = random_rounded(size_t(n_q) * s.n_head * s.head_dim, s.dtype);
  p.k = random_rounded(size_t(p.kv_len()) * s.n_head_kv * s.head_dim, s.dtype);
  p.v = random_rounded(size_t(p.kv_len()) * s.n_head_kv * s.head_dim, s.dtype);
  return p;
}

// fp64 attention of query i, head h (scores softcapped when p.softcap > 0; with sinks, the head's sink joins the
// max and the denominator, never the weighted sum); a query with no visible key gives 0.
void reference_row(const Problem& p, int i, int h, double* out) {
  const int d = p.s.head_dim, hkv = h / (p.s.n_head / p.s.n_head_kv);
  const int64_t pos = int64_t{p.q_pos0} + i;
  const int64_t lo = std::max<int64_t>(0, pos - p.left), hi = std::min<int64_t>(p.kv_len() - 1, pos + p.right);
  const double scale = p.scale();
  const float* qr = &p.q[(size_t(i) * p.s.n_head + h) * d];
  std::vector<double> sc;
  double mx = -INFINITY;
  for (int64_t j = lo; j <= hi; ++j) {
    const float* kr = &p.k[(size_t(j) * p.s.n_head_kv + hkv) * d];
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += double(qr[c]) * kr[c];
    double x = dot * scale;
    if (p.softcap > 0.f) x = p.softcap * std::tanh(x / p.softcap);
    sc.push_back(x);
    mx = std::max(mx, x);
  }
  std::fill(out, out + d, 0.0);
  if (!p.sinks.empty()) mx = std::max(mx, double(p.sinks[h]));
  double sum = p.sinks.empty() ? 0.0 : std::exp(double(p.sinks[h]) - mx);
  for (auto& x : sc) sum += (x = std::exp(x - mx));
  for (int64_t j = lo; j <= hi; ++j) {
    const float* vr = &p.v[(size_t(j) * p.s.n_head_kv + hkv) * d];
    const double w = sc[j - lo] / sum;
    for (int c = 0; c < d; ++c) out[c] += w * vr[c];
  }
}

// A decode step's new position as the q/k/v projection writes it (fp32, before the q/k norm and RoPE), for a
// decode launch with FlashAttnArgs::fresh. fresh_problem puts what the kernel must stage from it into the Problem:
// the normed and rotated q and k rows and the v row, computed in fp64 and rounded to the input type.
struct FreshRows {
  std::vector<float> q, k, v, q_norm, k_norm, factors;  // norms and factors empty: none
  float eps = 1e-6f, freq_base = 10000.f, freq_scale = 1.f, attn_factor = 1.f;
  bool neox = false;
  bool yarn = false;  // YaRN (gpt-oss): the ramp between pairs yarn_low and yarn_high, as RopeParams::yarn
  float yarn_low = 0.f, yarn_high = 0.f;
};

struct RunOptions {
  Impl impl = Impl::Flash;
  int capacity = 0;           // 0: contiguous keys (capacity = kv_len)
  bool q_pos0_on_device = false;
  int max_kv_len = 0;         // decode: 0 means kv_len
  bool pack_gqa = false;      // FlashAttnArgs::pack_gqa (variant 14)
  bool ws_d256 = false;       // FlashAttnArgs::ws_d256 (variant 14b)
  bool ws_d64 = false;        // FlashAttnArgs::ws_d64 (variant 15)
  bool persistent = false;    // FlashAttnArgs::persistent (variant 16)
  const FreshRows* fresh = nullptr;  // decode from the projection's rows (Impl::Decode, n_q 1)
  int q_pad = 0, o_pad = 0;   // elements past each q / output row's heads (row strides n_head * d + pad)
  bool o16 = false;           // with an fp32 output: its bf16 rounding too (FlashAttnArgs::o16), checked exactly
  bool fastest = false;       // use_fastest_variant, as the CUDA backend's prefill takes it (over the flags above)
};

// Runs one call on the GPU and compares with the reference. Queries are sampled when the full reference would
// be slow; every output element is still checked to have been written.
void run_and_check(const Problem& p, const RunOptions& opt) {
  const Shape& s = p.s;
  const int d = s.head_dim, kv_len = p.kv_len();
  const int capacity = opt.capacity ? opt.capacity : kv_len;
  const size_t elt = 2, out_elt = s.o_fp32 ? 4 : 2;
  const size_t kv_row = size_t(s.n_head_kv) * d;

  // The ring as a cache would hold it: slot p % capacity has the newest position written there; slots never
  // written hold NaN so a read outside the keys present shows up.
  std::vector<uint16_t> ring(size_t(capacity) * kv_row * 2, to_bits(NAN, s.dtype));
  for (int64_t pos = std::max<int64_t>(0, int64_t{kv_len} - capacity); pos < kv_len; ++pos)
    for (size_t c = 0; c < kv_row; ++c) {
      ring[(pos % capacity) * kv_row + c] = to_bits(p.k[pos * kv_row + c], s.dtype);
      ring[(size_t(capacity) + pos % capacity) * kv_row + c] = to_bits(p.v[pos * kv_row + c], s.dtype);
    }
  // With fresh rows the new position's slot is the kernel's to write: NaN there shows a read before the write.
  if (opt.fresh)
    for (size_t c = 0; c < kv_row; ++c)
      for (int kv = 0; kv < 2; ++kv)
        ring[(size_t(kv) * capacity + (kv_len - 1) % capacity) * kv_row + c] = to_bits(NAN, s.dtype);
  const std::vector<uint16_t> ring_before = ring;
  // q rows at their stride, the padding NaN (never read)
  const size_t q_row = size_t(s.n_head) * d, q_stride = q_row + opt.q_pad, o_stride = q_row + opt.o_pad;
  std::vector<uint16_t> qbits(size_t(p.n_q) * q_stride, to_bits(NAN, s.dtype));
  for (size_t i = 0; i < size_t(p.n_q); ++i)
    for (size_t c = 0; c < q_row; ++c) qbits[i * q_stride + c] = to_bits(p.q[i * q_row + c], s.dtype);

  const size_t out_bytes = size_t(p.n_q) * o_stride * out_elt, out16_bytes = size_t(p.n_q) * o_stride * 2;
  const bool with_o16 = opt.o16 && s.o_fp32;
  DeviceBuffer dq(std::max<size_t>(qbits.size() * elt, 16)), dkv(ring.size() * elt), dout(out_bytes),
      dout16(with_o16 ? out16_bytes : 16), dpos(sizeof(int32_t)), dsinks(p.sinks.size() * 4);
  ASSERT_TRUE(dq.ptr && dkv.ptr && dout.ptr && dout16.ptr && dpos.ptr && dsinks.ptr);
  if (!p.sinks.empty()) {
    ASSERT_EQ(p.sinks.size(), size_t(s.n_head));
    CUDA_OK(cudaMemcpy(dsinks.ptr, p.sinks.data(), p.sinks.size() * 4, cudaMemcpyHostToDevice));
  }
  CUDA_OK(cudaMemcpy(dq.ptr, qbits.data(), qbits.size() * elt, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dkv.ptr, ring.data(), ring.size() * elt, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dpos.ptr, &p.q_pos0, sizeof(int32_t), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dout.ptr, 0xFF, out_bytes));  // NaN in every output type
  if (with_o16) CUDA_OK(cudaMemset(dout16.ptr, 0xFF, out16_bytes));

  FlashAttnArgs a;
  a.q = dq.ptr;
  a.k = dkv.ptr;
  a.v = static_cast<char*>(dkv.ptr) + size_t(capacity) * kv_row * elt;
  a.o = dout.ptr;
  a.o_fp32 = s.o_fp32;
  a.dtype = s.dtype;
  a.q_stride = int64_t(q_stride);
  a.kv_stride = int64_t(kv_row);
  a.o_stride = int64_t(o_stride);
  if (with_o16) a.o16 = static_cast<__nv_bfloat16*>(dout16.ptr);
  a.n_q = p.n_q;
  a.n_head = s.n_head;
  a.n_head_kv = s.n_head_kv;
  a.head_dim = d;
  a.q_pos0 = opt.q_pos0_on_device ? -1 : p.q_pos0;  // -1 proves the device value is the one used
  a.q_pos0_dev = opt.q_pos0_on_device ? static_cast<const int32_t*>(dpos.ptr) : nullptr;
  a.capacity = capacity;
  a.left = p.left;
  a.right = p.right;
  a.scale = p.scale();
  a.softcap = p.softcap;
  a.sinks = p.sinks.empty() ? nullptr : static_cast<const float*>(dsinks.ptr);
  a.pack_gqa = opt.pack_gqa;
  a.ws_d256 = opt.ws_d256;
  a.ws_d64 = opt.ws_d64;
  a.persistent = opt.persistent;
  if (opt.fastest) swrun::cuda::use_fastest_variant(a);
  // The fresh rows' device copies (fp32), uploaded only when used.
  std::vector<std::unique_ptr<DeviceBuffer>> fresh_buffers;
  auto fresh_ptr = [&](const std::vector<float>& v) -> const float* {
    if (v.empty()) return nullptr;
    fresh_buffers.push_back(std::make_unique<DeviceBuffer>(v.size() * 4));
    void* ptr = fresh_buffers.back()->ptr;
    EXPECT_EQ(cudaMemcpy(ptr, v.data(), v.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    return static_cast<const float*>(ptr);
  };
  if (opt.fresh) {
    const FreshRows& f = *opt.fresh;
    a.q = nullptr;  // not read
    a.fresh = {fresh_ptr(f.q),  fresh_ptr(f.k), fresh_ptr(f.v), fresh_ptr(f.q_norm), fresh_ptr(f.k_norm), f.eps,
               f.freq_base,     f.freq_scale,   f.attn_factor,  fresh_ptr(f.factors), f.neox,
               {f.yarn, f.yarn_low, f.yarn_high}};
  }

  if (opt.impl == Impl::Flash) {
    swrun::cuda::flash_attention(a, nullptr);
  } else if (opt.impl == Impl::Naive) {
    swrun::cuda::naive_attention(a, nullptr);
  } else {
    const int max_kv = opt.max_kv_len ? opt.max_kv_len : kv_len;
    DeviceBuffer ws(swrun::cuda::flash_decode_workspace_bytes(a, max_kv));
    ASSERT_TRUE(ws.ptr);
    CUDA_OK(cudaMemset(ws.ptr, 0xFF, swrun::cuda::flash_decode_workspace_bytes(a, max_kv)));
    swrun::cuda::flash_attention_decode(a, max_kv, ws.ptr, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
  }
  CUDA_OK(cudaDeviceSynchronize());

  // The output rows without their padding (which must still hold the poison: nothing wrote past the heads).
  const size_t n_out = size_t(p.n_q) * q_row;
  std::vector<float> out(n_out);
  size_t padding_written = 0;
  if (s.o_fp32) {
    std::vector<uint32_t> bits(size_t(p.n_q) * o_stride);
    CUDA_OK(cudaMemcpy(bits.data(), dout.ptr, out_bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < size_t(p.n_q); ++i) {
      std::memcpy(&out[i * q_row], &bits[i * o_stride], q_row * 4);
      for (size_t c = q_row; c < o_stride; ++c) padding_written += bits[i * o_stride + c] != 0xFFFFFFFFu;
    }
  } else {
    std::vector<uint16_t> bits(size_t(p.n_q) * o_stride);
    CUDA_OK(cudaMemcpy(bits.data(), dout.ptr, out_bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < size_t(p.n_q); ++i) {
      for (size_t c = 0; c < q_row; ++c) out[i * q_row + c] = from_bits(bits[i * o_stride + c], s.dtype);
      for (size_t c = q_row; c < o_stride; ++c) padding_written += bits[i * o_stride + c] != 0xFFFFu;
    }
  }
  EXPECT_EQ(padding_written, 0u) << "output row padding overwritten";
  size_t unwritten = 0;
  for (float x : out) unwritten += !std::isfinite(x);
  ASSERT_EQ(unwritten, 0u) << "outputs left NaN/inf (unwritten or corrupted)";
  if (with_o16) {  // the bf16 copy: exactly the rounding of the fp32 output, nothing past the heads
    std::vector<uint16_t> bits(size_t(p.n_q) * o_stride);
    CUDA_OK(cudaMemcpy(bits.data(), dout16.ptr, out16_bytes, cudaMemcpyDeviceToHost));
    size_t wrong = 0, padding16 = 0;
    for (size_t i = 0; i < size_t(p.n_q); ++i) {
      for (size_t c = 0; c < q_row; ++c)
        wrong += bits[i * o_stride + c] != to_bits(out[i * q_row + c], AttnDtype::BF16);
      for (size_t c = q_row; c < o_stride; ++c) padding16 += bits[i * o_stride + c] != 0xFFFFu;
    }
    EXPECT_EQ(wrong, 0u) << "o16 elements that are not the bf16 rounding of the fp32 output";
    EXPECT_EQ(padding16, 0u) << "o16 row padding overwritten";
  }

  // Queries to check: all of them when cheap, else the first and last 8 and 32 random ones in between.
  std::vector<int> queries;
  const double full_cost = double(p.n_q) * s.n_head * std::min<double>(kv_len, double(p.left) + p.right + 1) * d;
  if (full_cost < 4e7) {
    for (int i = 0; i < p.n_q; ++i) queries.push_back(i);
  } else {
    for (int i = 0; i < std::min(8, p.n_q); ++i) queries.push_back(i), queries.push_back(p.n_q - 1 - i);
    std::uniform_int_distribution<int> pick(0, p.n_q - 1);
    for (int i = 0; i < 32; ++i) queries.push_back(pick(rng()));
  }
  double err2 = 0, ref2 = 0, worst = 0;
  int bad = 0;
  std::vector<double> ref(d);
  for (int i : queries)
    for (int h = 0; h < s.n_head; ++h) {
      reference_row(p, i, h, ref.data());
      for (int c = 0; c < d; ++c) {
        const double g = out[(size_t(i) * s.n_head + h) * d + c], e = g - ref[c];
        err2 += e * e;
        ref2 += ref[c] * ref[c];
        worst = std::max(worst, std::fabs(e));
        if (std::fabs(e) > 2e-2 + 2e-2 * std::fabs(ref[c]) && bad++ < 5)
          ADD_FAILURE() << "q " << i << " head " << h << " col " << c << ": gpu " << g << " ref " << ref[c];
      }
    }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
  EXPECT_LE(rel, 1e-2) << "relative error, worst element error " << worst;
  EXPECT_EQ(bad, 0);

  if (!opt.fresh) return;
  // The cache afterwards: the new slot holds the staged k (the fp64 reference rounded: the kernel's fp32 arithmetic
  // may round the other way, one unit in the last place) and v (exactly); every other slot is as it was.
  std::vector<uint16_t> ring_after(ring.size());
  CUDA_OK(cudaMemcpy(ring_after.data(), dkv.ptr, ring.size() * elt, cudaMemcpyDeviceToHost));
  const size_t slot = size_t(kv_len - 1) % capacity;
  int wrong = 0, changed = 0;
  for (int kv = 0; kv < 2; ++kv)
    for (size_t r = 0; r < size_t(capacity); ++r)
      for (size_t c = 0; c < kv_row; ++c) {
        const size_t i = (size_t(kv) * capacity + r) * kv_row + c;
        if (r != slot) {
          changed += ring_after[i] != ring_before[i];
          continue;
        }
        const float want = (kv == 0 ? p.k : p.v)[size_t(kv_len - 1) * kv_row + c];
        const int ulps = std::abs(int(ring_after[i]) - int(to_bits(want, s.dtype)));
        if ((kv == 0 ? ulps > 1 : ulps != 0) && wrong++ < 5)
          ADD_FAILURE() << (kv == 0 ? "k" : "v") << " cache col " << c << ": " << from_bits(ring_after[i], s.dtype)
                        << " want " << want;
      }
  EXPECT_EQ(changed, 0) << "cache slots other than the new position's changed";
  EXPECT_EQ(wrong, 0);
}

// RMSNorm (when g is given) and RoPE of one head row in fp64, as norm_rope_f32 defines them (YaRN as the CPU backend
// computes it: runtime/cpu/cpu_backend.cpp).
std::vector<double> norm_rotate_reference(const float* x, int d, const std::vector<float>& g, const FreshRows& f,
                                          int64_t pos) {
  std::vector<double> h(x, x + d);
  if (!g.empty()) {
    double ss = 0;
    for (double e : h) ss += e * e;
    const double scale = 1.0 / std::sqrt(ss / d + double(f.eps));
    for (int c = 0; c < d; ++c) h[c] *= scale * g[c];
  }
  std::vector<double> out(d);
  for (int i = 0; i < d / 2; ++i) {
    double original = double(pos) * std::pow(double(f.freq_base), -2.0 * i / d);
    if (!f.factors.empty()) original /= f.factors[i];
    double theta = original * f.freq_scale, magnitude = f.attn_factor;
    if (f.yarn) {  // the original angle kept below the ramp, the scaled one above it
      const double kept = 1.0 - std::clamp((i - f.yarn_low) / std::max(0.001, double(f.yarn_high) - f.yarn_low), 0.0,
                                           1.0);
      theta = original * f.freq_scale * (1.0 - kept) + original * kept;
      magnitude *= 1.0 + 0.1 * std::log(1.0 / f.freq_scale);
    }
    const double cs = std::cos(theta) * magnitude, sn = std::sin(theta) * magnitude;
    const int a = f.neox ? i : 2 * i, b = f.neox ? i + d / 2 : 2 * i + 1;
    out[a] = h[a] * cs - h[b] * sn;
    out[b] = h[a] * sn + h[b] * cs;
  }
  return out;
}

// Fresh rows for a decode problem (n_q 1), and what the kernel must make of them: p's query and its key and value
// rows at the new position become the staged rows (fp64, rounded to the input type).
// yarn: gpt-oss's YaRN (base 150000, factor 32, the ramp over pairs 8 .. 18 at head_dim 64, scaled with d).
FreshRows fresh_problem(Problem& p, bool neox, bool q_norm, bool k_norm, bool factors, bool yarn = false) {
  const Shape& s = p.s;
  const int d = s.head_dim;
  std::normal_distribution<float> spread(0.f, 2.f);
  std::uniform_real_distribution<float> gain(0.5f, 1.5f), divisor(1.f, 40.f);
  auto draw = [](size_t n, auto& dist) {
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng());
    return v;
  };
  FreshRows f;
  f.q = draw(size_t(s.n_head) * d, spread);
  f.k = draw(size_t(s.n_head_kv) * d, spread);
  f.v = draw(size_t(s.n_head_kv) * d, spread);
  if (q_norm) f.q_norm = draw(size_t(d), gain);
  if (k_norm) f.k_norm = draw(size_t(d), gain);
  if (factors) f.factors = draw(size_t(d / 2), divisor), f.attn_factor = 1.19f;
  f.neox = neox;
  f.freq_base = neox ? 1e6f : 10000.f;
  f.freq_scale = factors ? 1.f : 0.25f;
  if (yarn) {
    f.freq_base = 150000.f;
    f.freq_scale = 1.f / 32;
    f.yarn = true;
    f.yarn_low = float(d / 8);
    f.yarn_high = float(d * 18 / 64);
  }
  const int64_t pos = p.kv_len() - 1;
  const auto round = [&](double x) { return from_bits(to_bits(float(x), s.dtype), s.dtype); };
  for (int h = 0; h < s.n_head; ++h) {
    const std::vector<double> r = norm_rotate_reference(&f.q[size_t(h) * d], d, f.q_norm, f, pos);
    for (int c = 0; c < d; ++c) p.q[size_t(h) * d + c] = round(r[c]);
  }
  const size_t kv_row = size_t(s.n_head_kv) * d;
  for (int h = 0; h < s.n_head_kv; ++h) {
    const std::vector<double> r = norm_rotate_reference(&f.k[size_t(h) * d], d, f.k_norm, f, pos);
    for (int c = 0; c < d; ++c) {
      p.k[pos * kv_row + size_t(h) * d + c] = round(r[c]);
      p.v[pos * kv_row + size_t(h) * d + c] = round(f.v[size_t(h) * d + c]);
    }
  }
  return f;
}

Shape shape(int d, int hq, int hkv, AttnDtype t = AttnDtype::BF16, bool o_fp32 = false) {
  return Shape{d, hq, hkv, t, o_fp32};
}

TEST(Prefill, SmallMixed) {  // small enough for compute-sanitizer
  SKIP_WITHOUT_GPU();
  for (int d : {64, 256}) {
    run_and_check(make_problem(shape(d, 4, 1), 0, 150, kInf, 0), {});
    run_and_check(make_problem(shape(d, 4, 2), 0, 150, 20, 0), {});
    run_and_check(make_problem(shape(d, 2, 2), 0, 150, 9, 9), {});
  }
}

TEST(Prefill, HeadDimsGqaRatiosAndLengths) {
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256})
    for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{8, 1}})
      for (int n : {1, 17, 511}) {
        SCOPED_TRACE("d " + std::to_string(d) + " hq " + std::to_string(hq) + "/" + std::to_string(hkv) + " N " +
                     std::to_string(n));
        run_and_check(make_problem(shape(d, hq, hkv), 0, n, kInf, 0), {});
      }
}

TEST(Prefill, Windows4097) {
  SKIP_WITHOUT_GPU();
  const int n = 4097;
  for (int d : {64, 128, 256}) {
    const Shape s = shape(d, 4, 1);
    for (auto [left, right] : {std::pair{kInf, 0}, std::pair{0, 0}, std::pair{511, 0}, std::pair{n + 10, 0},
                               std::pair{37, 37}, std::pair{100, 3}}) {
      SCOPED_TRACE("d " + std::to_string(d) + " window (" + std::to_string(left) + ", " + std::to_string(right) + ")");
      run_and_check(make_problem(s, 0, n, left, right), {});
    }
  }
}

TEST(Prefill, Fp16AndFp32Output) {
  SKIP_WITHOUT_GPU();
  for (bool o32 : {false, true}) {
    run_and_check(make_problem(shape(128, 8, 2, AttnDtype::FP16, o32), 0, 300, kInf, 0), {});
    run_and_check(make_problem(shape(256, 4, 1, AttnDtype::FP16, o32), 0, 300, 63, 0), {});
    run_and_check(make_problem(shape(64, 8, 1, AttnDtype::BF16, o32), 0, 300, 5, 5), {});
  }
}

// Chunked prefill over a ring of window + chunk rows: each chunk sees the previous W-1 keys, some of which
// live in slots the ring has already reused several times. `flash` selects the kernel variant.
void chunked_ring(const Shape& s, int window, int chunk, int total, bool pos_on_device, float softcap = 0.f,
                  float score_gain = 1.f, RunOptions flash = {}, std::vector<float> sinks = {}) {
  Problem all = make_problem(s, 0, total, window - 1, 0);
  all.softcap = softcap;
  all.score_gain = score_gain;
  all.sinks = std::move(sinks);
  for (int start = 0; start < total; start += chunk) {
    Problem p = all;
    p.q_pos0 = start;
    p.n_q = std::min(chunk, total - start);
    const size_t qrow = size_t(s.n_head) * s.head_dim;
    p.q.assign(all.q.begin() + start * qrow, all.q.begin() + (start + p.n_q) * qrow);
    p.k.resize(size_t(p.kv_len()) * s.n_head_kv * s.head_dim);
    p.v.resize(p.k.size());
    SCOPED_TRACE("chunk at " + std::to_string(start));
    RunOptions opt = flash;
    opt.capacity = window + chunk;
    opt.q_pos0_on_device = pos_on_device;
    run_and_check(p, opt);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(Prefill, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  chunked_ring(shape(128, 8, 2), 300, 100, 2050, false);   // ring 400 rows, wraps 5 times
  chunked_ring(shape(256, 4, 1), 512, 129, 2600, true);    // Gemma 3 local layers, device position
  chunked_ring(shape(64, 4, 4, AttnDtype::FP16), 70, 33, 700, false);
}

TEST(Decode, SlidingAfterRingWrapped) {
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256})
    for (bool dev : {false, true}) {
      const int window = 256;
      SCOPED_TRACE("d " + std::to_string(d) + (dev ? " device position" : ""));
      run_and_check(make_problem(shape(d, 8, 2), 3000, 1, window - 1, 0), {Impl::Decode, window + 8, dev, 8192});
    }
}

TEST(Decode, DenseSplitKAndNeutralSplits) {
  SKIP_WITHOUT_GPU();
  // max_kv_len far above kv_len: most splits find no keys and must stay neutral.
  run_and_check(make_problem(shape(256, 4, 1), 4095, 1, kInf, 0), {Impl::Decode, 40000, true, 40000});
  run_and_check(make_problem(shape(128, 32, 8), 5000, 1, kInf, 0), {Impl::Decode, 6000, false, 6000});
  run_and_check(make_problem(shape(64, 32, 4, AttnDtype::FP16, true), 777, 3, kInf, 0), {Impl::Decode, 0, false, 0});
  run_and_check(make_problem(shape(128, 4, 4), 0, 1, kInf, 0), {Impl::Decode, 64, true, 64});  // first token
  // 32 blocks of one KV head each: a few splits of 13-14 key tiles each, many times the kernel's stages.
  run_and_check(make_problem(shape(64, 32, 32), 3000, 1, kInf, 0), {Impl::Decode, 4096, true, 4096});
}

TEST(Naive, MatchesReference) {
  SKIP_WITHOUT_GPU();
  run_and_check(make_problem(shape(128, 8, 2), 0, 300, kInf, 0), {Impl::Naive});
  run_and_check(make_problem(shape(256, 4, 1, AttnDtype::BF16, true), 0, 257, 63, 0), {Impl::Naive});
  run_and_check(make_problem(shape(64, 4, 4, AttnDtype::FP16), 0, 200, 7, 7), {Impl::Naive});
  run_and_check(make_problem(shape(64, 8, 1), 100, 50, kInf, 0), {Impl::Naive});  // a later chunk, contiguous
  swrun::cuda::naive_attention_release_workspace();
}

// ---- score softcapping (Gemma 2): s -> softcap * tanh(s / softcap) before the softmax ----------------------------

Problem capped(Problem p, float softcap, float score_gain) {
  p.softcap = softcap;
  p.score_gain = score_gain;
  return p;
}

std::string describe(const Problem& p, const char* impl) {
  const std::string window = p.left == kInf ? "dense" : "window (" + std::to_string(p.left) + ", " +
                                                            std::to_string(p.right) + ")";
  return std::string(impl) + " d " + std::to_string(p.s.head_dim) + " heads " + std::to_string(p.s.n_head) + "/" +
         std::to_string(p.s.n_head_kv) + " softcap " + std::to_string(p.softcap) + " score gain " +
         std::to_string(p.score_gain) + " " + window + " q_pos0 " + std::to_string(p.q_pos0) + " n_q " +
         std::to_string(p.n_q);
}

// The cap/gain pairs the kernels are checked at: 50 (Gemma 2's value) on scores spread up to about +-80, where
// tanh is far from linear; 5 on scores spread +-16, where most scores saturate; 1 on unit scores, where a masked
// key let through as -softcap would carry a large weight.
struct CapCase {
  float softcap, score_gain;
};
constexpr CapCase kCapCases[] = {{50.f, 20.f}, {5.f, 4.f}, {1.f, 1.f}};

// Without this the other softcap tests could pass with a kernel that ignores the cap.
TEST(Softcap, ChangesTheReferenceFarBeyondTheTolerance) {
  for (CapCase c : kCapCases) {
    const Problem uncapped = capped(make_problem(shape(64, 2, 1), 0, 64, kInf, 0), 0.f, c.score_gain);
    const Problem with_cap = capped(uncapped, c.softcap, c.score_gain);
    std::vector<double> a(64), b(64);
    double diff2 = 0, ref2 = 0;
    for (int i = 0; i < uncapped.n_q; ++i)
      for (int h = 0; h < 2; ++h) {
        reference_row(uncapped, i, h, a.data());
        reference_row(with_cap, i, h, b.data());
        for (int c2 = 0; c2 < 64; ++c2) diff2 += (a[c2] - b[c2]) * (a[c2] - b[c2]), ref2 += b[c2] * b[c2];
      }
    // 5x the relative error run_and_check allows.
    EXPECT_GT(std::sqrt(diff2 / ref2), 0.05) << "softcap " << c.softcap << " at score gain " << c.score_gain
                                            << " barely changes the output: the tests would not see a missing cap";
  }
}

TEST(Softcap, PrefillHeadDimsGqaDenseAndSliding) {
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256})
    for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{8, 4}, std::pair{8, 2}})
      for (CapCase c : kCapCases)
        for (int left : {kInf, 99, 2}) {
          const Problem p = capped(make_problem(shape(d, hq, hkv), 0, 300, left, 0), c.softcap, c.score_gain);
          SCOPED_TRACE(describe(p, "flash"));
          run_and_check(p, {});
          if (::testing::Test::HasFailure()) return;
        }
}

TEST(Softcap, PrefillLaterChunkTwoSidedFp16AndFp32Output) {
  SKIP_WITHOUT_GPU();
  for (CapCase c : kCapCases) {
    for (const Problem& p :
         {capped(make_problem(shape(256, 8, 4, AttnDtype::FP16), 700, 129, kInf, 0), c.softcap, c.score_gain),
          capped(make_problem(shape(128, 8, 2, AttnDtype::BF16, true), 300, 77, 40, 40), c.softcap, c.score_gain),
          capped(make_problem(shape(64, 8, 2, AttnDtype::FP16, true), 0, 1, kInf, 0), c.softcap, c.score_gain)}) {
      SCOPED_TRACE(describe(p, "flash"));
      run_and_check(p, {});
    }
  }
}

// Gemma 2's layers: head_dim 256, two query heads per KV head (2B: 8/4, 9B: 16/8), softcap 50, a 4096-key window
// on alternate layers; scores at the real scale (gain 1).
TEST(Softcap, Gemma2ShapesPrefillAndDecode) {
  SKIP_WITHOUT_GPU();
  for (auto [hq, hkv] : {std::pair{8, 4}, std::pair{16, 8}}) {
    const Shape s = shape(256, hq, hkv);
    for (int left : {kInf, 4095}) {
      const Problem prefill = capped(make_problem(s, 0, 4500, left, 0), 50.f, 1.f);
      SCOPED_TRACE(describe(prefill, "flash"));
      run_and_check(prefill, {});
    }
    // Decode after the 4096 + 8 row ring wrapped twice, position from device memory.
    const Problem local = capped(make_problem(s, 9000, 1, 4095, 0), 50.f, 1.f);
    SCOPED_TRACE(describe(local, "decode"));
    run_and_check(local, {Impl::Decode, 4096 + 8, true, 16384});
    const Problem global = capped(make_problem(s, 9000, 1, kInf, 0), 50.f, 1.f);
    SCOPED_TRACE(describe(global, "decode"));
    run_and_check(global, {Impl::Decode, 16384, true, 16384});  // dense: the cache holds max_kv_len rows
  }
}

TEST(Softcap, DecodeSplitKDenseAndSlidingAfterRingWrapped) {
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256})
    for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{8, 4}, std::pair{8, 2}})
      for (CapCase c : kCapCases) {
        // Dense with max_kv_len far above kv_len (most splits neutral), then a 256-key window over a ring of 264.
        const Problem dense = capped(make_problem(shape(d, hq, hkv), 5000, 1, kInf, 0), c.softcap, c.score_gain);
        SCOPED_TRACE(describe(dense, "decode"));
        run_and_check(dense, {Impl::Decode, 0, false, 20000});
        const Problem sliding = capped(make_problem(shape(d, hq, hkv), 3000, 1, 255, 0), c.softcap, c.score_gain);
        SCOPED_TRACE(describe(sliding, "decode"));
        run_and_check(sliding, {Impl::Decode, 256 + 8, true, 8192});
        if (::testing::Test::HasFailure()) return;
      }
}

TEST(Softcap, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  for (CapCase c : kCapCases) {
    SCOPED_TRACE("softcap " + std::to_string(c.softcap) + " score gain " + std::to_string(c.score_gain));
    chunked_ring(shape(128, 8, 4), 300, 100, 1250, false, c.softcap, c.score_gain);
    chunked_ring(shape(256, 8, 4), 512, 129, 1600, true, c.softcap, c.score_gain);
    chunked_ring(shape(64, 4, 1, AttnDtype::FP16), 70, 33, 400, false, c.softcap, c.score_gain);
  }
}

TEST(Softcap, SmallForSanitizers) {  // one launch per kernel instance kind, small enough for compute-sanitizer
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256}) {
    const Problem p = capped(make_problem(shape(d, 4, 2), 0, 150, 20, 0), 5.f, 4.f);
    SCOPED_TRACE(describe(p, "flash"));
    run_and_check(p, {});
    const Problem dec = capped(make_problem(shape(d, 4, 2), 700, 1, kInf, 0), 5.f, 4.f);
    SCOPED_TRACE(describe(dec, "decode"));
    run_and_check(dec, {Impl::Decode, 2048, true, 2048});
  }
}

TEST(Softcap, NaiveMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (CapCase c : kCapCases) {
    for (const Problem& p :
         {capped(make_problem(shape(256, 8, 4), 0, 300, kInf, 0), c.softcap, c.score_gain),
          capped(make_problem(shape(128, 8, 2, AttnDtype::BF16, true), 0, 257, 63, 0), c.softcap, c.score_gain),
          capped(make_problem(shape(64, 4, 4, AttnDtype::FP16), 100, 50, 7, 7), c.softcap, c.score_gain)}) {
      SCOPED_TRACE(describe(p, "naive"));
      run_and_check(p, {Impl::Naive});
    }
  }
  swrun::cuda::naive_attention_release_workspace();
}

// ---- flash variants 14 (GQA packing), 14b and 15 (warp-specialized head_dim 256 and 64) -------------------------
// Packing: a block's row r is position q_first + r / group of head r % group at any n_q, so the Q load, the per-row
// mask and the output store all see interleaved heads. The shapes pack 2 (Gemma 2), 4 (Gemma 3, Mistral-like) and
// 8 (llama64-like) heads per block, at lengths that leave partial position tiles, and windows from one key to
// beyond N. 14b and 15 run head_dim 256 and 64 on the warp-specialized kernel, alone and packed: each its own suite
// (WsD256, WsD64), so a GPU run can give it a timeout of its own.

struct Variant {
  bool pack_gqa, ws_d256, ws_d64, persistent = false;
};

RunOptions variant_run(Variant v) {
  RunOptions o;
  o.pack_gqa = v.pack_gqa;
  o.ws_d256 = v.ws_d256;
  o.ws_d64 = v.ws_d64;
  o.persistent = v.persistent;
  return o;
}

std::string describe(const Problem& p, Variant v) {
  return describe(p, "flash") + (v.pack_gqa ? " packed" : "") + (v.ws_d256 ? " ws256" : "") +
         (v.ws_d64 ? " ws64" : "") + (v.persistent ? " persistent" : "");
}

struct GqaShape {
  int d, hq, hkv;
};

void variant_shapes_lengths_and_windows(Variant v, const std::vector<GqaShape>& shapes) {
  for (GqaShape g : shapes)
    for (int n : {1, 17, 511, 1000, 4097})
      for (auto [left, right] : {std::pair{kInf, 0}, std::pair{0, 0}, std::pair{511, 0}, std::pair{n + 10, 0},
                                 std::pair{100, 3}})
        for (CapCase c : {CapCase{0.f, 1.f}, CapCase{50.f, 20.f}}) {
          // Capped at d 256 (Gemma 2's head_dim) on two windows; every d is capped in variant_softcap.
          if (c.softcap > 0.f && (g.d != 256 || (left != kInf && left != 511))) continue;
          const Problem p = capped(make_problem(shape(g.d, g.hq, g.hkv), 0, n, left, right), c.softcap, c.score_gain);
          SCOPED_TRACE(describe(p, v));
          run_and_check(p, variant_run(v));
          if (::testing::Test::HasFailure()) return;
        }
}

void variant_softcap(Variant v, std::initializer_list<int> head_dims) {
  for (int d : head_dims)
    for (CapCase c : kCapCases)
      for (int left : {kInf, 511, 0}) {
        const Problem p = capped(make_problem(shape(d, 8, 2), 0, 1000, left, 0), c.softcap, c.score_gain);
        SCOPED_TRACE(describe(p, v));
        run_and_check(p, variant_run(v));
        if (::testing::Test::HasFailure()) return;
      }
}

void variant_later_chunks(Variant v, const std::vector<Problem>& problems) {
  for (const Problem& p : problems) {
    SCOPED_TRACE(describe(p, v) + (p.s.o_fp32 ? " fp32 out" : ""));
    run_and_check(p, variant_run(v));
  }
}

// Chunks above and below one tile of rows; the ring holds window + chunk rows and wraps several times.
void variant_chunked_ring_d256(Variant v) {
  chunked_ring(shape(256, 4, 1), 512, 129, 2600, true, 0.f, 1.f, variant_run(v));  // Gemma 3 local layers
  chunked_ring(shape(256, 4, 1), 512, 40, 900, false, 0.f, 1.f, variant_run(v));
  chunked_ring(shape(256, 8, 4), 512, 300, 1600, true, 50.f, 20.f, variant_run(v));
}

void variant_small_for_sanitizers(Variant v, std::initializer_list<int> head_dims) {
  for (int d : head_dims)
    for (float cap : {0.f, 5.f}) {
      const Problem p = capped(make_problem(shape(d, 8, 2), 0, 150, 20, 0), cap, cap > 0.f ? 4.f : 1.f);
      SCOPED_TRACE(describe(p, v));
      run_and_check(p, variant_run(v));
    }
}

constexpr Variant kPacked{true, false, false}, kWs256{false, true, false}, kPackedWs256{true, true, false};
constexpr Variant kWs64{false, false, true}, kPackedWs64{true, false, true};

TEST(PackedGqa, ShapesLengthsAndWindows) {
  SKIP_WITHOUT_GPU();
  // The last shape's group (3) does not divide a tile's rows: pack_gqa must fall back to one head per block.
  variant_shapes_lengths_and_windows(kPacked, {{256, 4, 1}, {256, 8, 4}, {256, 16, 8}, {128, 8, 2}, {64, 16, 2},
                                               {128, 6, 2}});
}

TEST(PackedGqa, SoftcapEveryHeadDim) {
  SKIP_WITHOUT_GPU();
  variant_softcap(kPacked, {64, 128, 256});
}

TEST(PackedGqa, LaterChunksFp16AndFp32Output) {
  SKIP_WITHOUT_GPU();
  for (bool o32 : {false, true})
    variant_later_chunks(kPacked, {make_problem(shape(256, 4, 1, AttnDtype::FP16, o32), 700, 300, 511, 0),
                                   make_problem(shape(128, 8, 2, AttnDtype::BF16, o32), 300, 77, kInf, 0),
                                   make_problem(shape(64, 16, 2, AttnDtype::FP16, o32), 5000, 130, 1023, 0)});
}

TEST(PackedGqa, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  variant_chunked_ring_d256(kPacked);
  chunked_ring(shape(128, 8, 2), 300, 200, 2050, false, 0.f, 1.f, variant_run(kPacked));
  chunked_ring(shape(64, 16, 2, AttnDtype::FP16), 70, 100, 700, false, 5.f, 4.f, variant_run(kPacked));
}

TEST(PackedGqa, SmallForSanitizers) {  // one packed launch per kernel kind, small enough for compute-sanitizer
  SKIP_WITHOUT_GPU();
  variant_small_for_sanitizers(kPacked, {64, 128, 256});
}

TEST(WsD256, ShapesLengthsAndWindows) {
  SKIP_WITHOUT_GPU();
  // Gemma 3's and Gemma 2 2B's groups (16/8 is the same code with more blocks; PackedGqa runs it).
  for (Variant v : {kWs256, kPackedWs256}) variant_shapes_lengths_and_windows(v, {{256, 4, 1}, {256, 8, 4}});
}

TEST(WsD256, Softcap) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs256, kPackedWs256}) variant_softcap(v, {256});
}

TEST(WsD256, LaterChunksFp16AndFp32Output) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs256, kPackedWs256})
    for (bool o32 : {false, true})
      variant_later_chunks(v, {make_problem(shape(256, 4, 1, AttnDtype::FP16, o32), 700, 300, 511, 0),
                               make_problem(shape(256, 8, 4, AttnDtype::BF16, o32), 300, 77, kInf, 0)});
}

TEST(WsD256, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs256, kPackedWs256}) variant_chunked_ring_d256(v);
}

TEST(WsD256, SmallForSanitizers) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs256, kPackedWs256}) variant_small_for_sanitizers(v, {256});
}

// Variant 15's tile is 128 query rows x 128 keys (the one-kernel d 64 path's is 64 x 64): lengths and windows
// around 128, llama64's group of 8 (packed: 16 positions per block), 2 and none.
TEST(WsD64, ShapesLengthsAndWindows) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs64, kPackedWs64})
    variant_shapes_lengths_and_windows(v, {{64, 32, 4}, {64, 8, 2}, {64, 4, 4}});
}

TEST(WsD64, WindowsAroundTheTile) {
  SKIP_WITHOUT_GPU();
  // One key up to eight key tiles, one-sided and two-sided, at lengths just under, at and over one tile of rows: a
  // block's keys in one tile, a masked tile at each end, tiles wholly masked for some of a block's rows.
  for (Variant v : {kWs64, kPackedWs64})
    for (int n : {127, 128, 129, 1000})
      for (auto [left, right] : {std::pair{1, 0}, std::pair{63, 0}, std::pair{127, 0}, std::pair{128, 0},
                                 std::pair{129, 0}, std::pair{1023, 0}, std::pair{37, 37}, std::pair{0, 130}}) {
        const Problem p = make_problem(shape(64, 8, 2), 0, n, left, right);
        SCOPED_TRACE(describe(p, v));
        run_and_check(p, variant_run(v));
        if (::testing::Test::HasFailure()) return;
      }
}

TEST(WsD64, Softcap) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs64, kPackedWs64}) variant_softcap(v, {64});
}

TEST(WsD64, LaterChunksFp16AndFp32Output) {
  SKIP_WITHOUT_GPU();
  // The last is one query: its rows fill one consumer warpgroup only, so the kernel runs without ping-pong.
  for (Variant v : {kWs64, kPackedWs64})
    for (bool o32 : {false, true})
      variant_later_chunks(v, {make_problem(shape(64, 32, 4, AttnDtype::FP16, o32), 5000, 130, 1023, 0),
                               make_problem(shape(64, 8, 2, AttnDtype::BF16, o32), 300, 77, kInf, 0),
                               make_problem(shape(64, 16, 2, AttnDtype::FP16, o32), 129, 1, kInf, 0)});
}

TEST(WsD64, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs64, kPackedWs64}) {
    chunked_ring(shape(64, 32, 4), 1024, 129, 3000, true, 0.f, 1.f, variant_run(v));  // llama64's window
    chunked_ring(shape(64, 8, 2), 200, 40, 900, false, 0.f, 1.f, variant_run(v));     // chunks under a tile
    chunked_ring(shape(64, 16, 2, AttnDtype::FP16), 70, 100, 700, false, 5.f, 4.f, variant_run(v));
  }
}

TEST(WsD64, SmallForSanitizers) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kWs64, kPackedWs64}) variant_small_for_sanitizers(v, {64});
}

// Variant 16, the warp-specialized kernel on a persistent grid (a block per SM taking the plain grid's blocks in
// turn), at every head_dim: more work items than SMs (up to 4097 queries x 16 heads), fewer, and one; partial last
// tiles, windows, softcapping, later chunks and a wrapped ring.
constexpr Variant kPersistent128{false, false, false, true}, kPersistent256{true, true, false, true};
constexpr Variant kPersistent64{false, false, true, true};

TEST(WsPersistent, ShapesLengthsAndWindows) {
  SKIP_WITHOUT_GPU();
  variant_shapes_lengths_and_windows(kPersistent256, {{256, 4, 1}, {256, 16, 8}});
  variant_shapes_lengths_and_windows(kPersistent128, {{128, 8, 2}, {128, 6, 2}});
  variant_shapes_lengths_and_windows(kPersistent64, {{64, 16, 2}});
}

TEST(WsPersistent, SoftcapAndLaterChunks) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {kPersistent256, kPersistent128, kPersistent64}) {
    const int d = v.ws_d256 ? 256 : v.ws_d64 ? 64 : 128;
    variant_softcap(v, {d});
    variant_later_chunks(v, {make_problem(shape(d, 8, 2, AttnDtype::BF16, true), 1000, 300, 511, 0),
                             make_problem(shape(d, 8, 2, AttnDtype::FP16), 2000, 129, kInf, 0),
                             make_problem(shape(d, 16, 2, AttnDtype::BF16, true), 777, 1000, 1023, 0),
                             make_problem(shape(d, 16, 2, AttnDtype::FP16), 129, 1, kInf, 0)});
  }
}

TEST(WsPersistent, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  variant_chunked_ring_d256(kPersistent256);
  chunked_ring(shape(128, 8, 2), 300, 100, 2050, false, 0.f, 1.f, variant_run(kPersistent128));
  chunked_ring(shape(64, 8, 2), 1024, 700, 5000, true, 0.f, 1.f, variant_run(kPersistent64));
}

TEST(WsPersistent, SmallForSanitizers) {
  SKIP_WITHOUT_GPU();
  variant_small_for_sanitizers(kPersistent256, {256});
  variant_small_for_sanitizers(kPersistent128, {128});
  variant_small_for_sanitizers(kPersistent64, {64});
}

// q and output rows at padded strides, the fp32 output's bf16 copy (FlashAttnArgs::o16) checked bit for bit, and
// nothing written past a row's heads: the warp-specialized kernel loads Q through a tensor map that carries the q
// stride (TMA), and its epilogue stores 16-byte column runs where the output rows are 16-byte aligned (pads of 8
// elements, or 4 for fp32 alone) and column pairs where they are not (pad 2), as the other kernels always do.
// Every kernel kind: warp-specialized at each head_dim (plain and persistent grid, packed or not), the one-kernel
// path, decode with one split and with split-K; partial last query tiles; fp16 inputs.
TEST(Prefill, PaddedRowsAndBf16Copy) {
  SKIP_WITHOUT_GPU();
  struct Case {
    Variant v;
    int d, hq, hkv, n, left, q_pad, o_pad;
    bool fp32, o16;
    AttnDtype t;
  };
  const Variant kBase{false, false, false};
  for (Case c : {Case{kPersistent256, 256, 4, 1, 1000, 511, 8, 8, true, true, AttnDtype::BF16},
                 Case{kWs256, 256, 8, 2, 301, kInf, 16, 2, true, true, AttnDtype::BF16},
                 Case{kBase, 256, 4, 1, 300, 100, 8, 8, true, true, AttnDtype::FP16},
                 Case{kPersistent64, 64, 16, 2, 777, 1023, 24, 8, false, false, AttnDtype::BF16},
                 Case{kWs64, 64, 8, 2, 129, kInf, 8, 2, false, false, AttnDtype::FP16},
                 Case{kBase, 64, 8, 8, 200, kInf, 8, 8, false, false, AttnDtype::BF16},
                 Case{kBase, 128, 8, 2, 1000, kInf, 8, 8, true, true, AttnDtype::BF16},
                 Case{kPersistent128, 128, 6, 2, 513, 300, 8, 4, true, false, AttnDtype::BF16}}) {
    const Problem p = make_problem(shape(c.d, c.hq, c.hkv, c.t, c.fp32), 0, c.n, c.left, 0);
    SCOPED_TRACE(describe(p, c.v) + " q pad " + std::to_string(c.q_pad) + " o pad " + std::to_string(c.o_pad) +
                 (c.o16 ? " o16" : ""));
    RunOptions opt = variant_run(c.v);
    opt.q_pad = c.q_pad;
    opt.o_pad = c.o_pad;
    opt.o16 = c.o16;
    run_and_check(p, opt);
  }
  for (auto [d, pos, max_kv, o_pad] : {std::tuple{256, 100, 192, 8}, std::tuple{128, 5000, 6000, 2}}) {
    const Problem p = make_problem(shape(d, 8, 2, AttnDtype::BF16, true), pos, 1, kInf, 0);
    SCOPED_TRACE(describe(p, "decode") + " o pad " + std::to_string(o_pad) + " o16");
    RunOptions opt{Impl::Decode, max_kv, true, max_kv};
    opt.q_pad = 8;
    opt.o_pad = o_pad;
    opt.o16 = true;
    run_and_check(p, opt);
  }
}

// Decode from the q/k/v projection's fp32 rows (FlashAttnArgs::fresh): the kernel norms and rotates them, writes
// the new k and v into the cache (whose slot starts as NaN) and attends. Every head_dim (fresh rows run the plain
// kernel, d 128 on sm_90a too), GQA groups of 1 to 8, both rotation styles, norms on q, k, both or neither, LongRoPE
// factors, softcapping, fp16; the new position first in its key tile, last in it, and position 0; dense over
// split-K (most splits empty) and sliding after the ring wrapped; the device position; a short cache whose keys are
// one block of more key tiles than it has stages (max_kv 192 at d 64; at d 256, a 192-key window straddling four
// tiles), so the tiles loaded before the wait are not all.
TEST(Decode, FreshRowsStagedByTheKernel) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int d, hq, hkv, pos, left;
    bool neox, q_norm, k_norm, factors;
    float softcap;
    AttnDtype t;
    int max_kv = 0;  // 0: twice the position, at least 1024 (dense), or 8192 (sliding)
  };
  for (Case c : {Case{256, 4, 1, 4096, kInf, true, true, true, false, 0.f, AttnDtype::BF16},
                 Case{256, 4, 1, 3071, 511, true, true, true, false, 0.f, AttnDtype::BF16},
                 Case{256, 8, 4, 700, kInf, true, true, true, false, 50.f, AttnDtype::BF16},
                 Case{128, 8, 2, 5000, kInf, false, false, false, true, 0.f, AttnDtype::BF16},
                 Case{128, 8, 1, 2560, 255, true, true, false, false, 0.f, AttnDtype::FP16},
                 Case{128, 32, 8, 127, kInf, true, false, true, false, 0.f, AttnDtype::BF16},
                 Case{64, 4, 4, 0, kInf, true, true, true, true, 0.f, AttnDtype::BF16},
                 Case{64, 16, 2, 1087, 1023, false, true, true, false, 0.f, AttnDtype::BF16},
                 Case{64, 4, 2, 63, 40, true, false, false, false, 5.f, AttnDtype::FP16},
                 Case{256, 4, 1, 170, kInf, true, true, true, false, 0.f, AttnDtype::BF16, 192},
                 Case{256, 4, 1, 1000, 191, true, true, true, false, 0.f, AttnDtype::BF16},
                 Case{64, 8, 2, 150, kInf, false, true, true, false, 0.f, AttnDtype::BF16, 192}}) {
    Problem p = make_problem(shape(c.d, c.hq, c.hkv, c.t, true), c.pos, 1, c.left, 0);
    if (c.softcap > 0.f) p = capped(p, c.softcap, 4.f);
    const FreshRows f = fresh_problem(p, c.neox, c.q_norm, c.k_norm, c.factors);
    SCOPED_TRACE(describe(p, "decode, fresh rows") + (c.neox ? " neox" : " normal") + (c.q_norm ? " q_norm" : "") +
                 (c.k_norm ? " k_norm" : "") + (c.factors ? " factors" : ""));
    const bool sliding = c.left != kInf;
    const int max_kv = c.max_kv ? c.max_kv : sliding ? 8192 : std::max(2 * c.pos + 2, 1024);
    RunOptions opt{Impl::Decode, sliding ? c.left + 1 + 8 : max_kv, true, max_kv};
    opt.fresh = &f;
    run_and_check(p, opt);
  }
}

// ---- attention sinks (gpt-oss): one more logit per head, in the softmax's denominator only ------------------------

// Per-head sinks from [lo, hi]: at unit-scale scores over tens to thousands of keys, heads range from a sink that
// barely matters to one that takes most of the weight, so a missing, doubled, scaled or misplaced sink shows.
std::vector<float> draw_sinks(int n_head, float lo = -3.f, float hi = 8.f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n_head));
  for (float& x : v) x = dist(rng());
  return v;
}

Problem with_sinks(Problem p) {
  p.sinks = draw_sinks(p.s.n_head);
  return p;
}

std::string describe_sinks(const Problem& p, const std::string& what) {
  return what + " sinks " + (p.sinks.empty() ? std::string("none") : std::to_string(p.sinks[0]) + "..");
}

// Without this the other sink tests could pass with kernels that ignore the sinks.
TEST(Sinks, ChangeTheReferenceFarBeyondTheTolerance) {
  for (int left : {kInf, 127, 2}) {
    const Problem plain = make_problem(shape(64, 8, 2), 0, 300, left, 0);
    const Problem sunk = with_sinks(plain);
    std::vector<double> a(64), b(64);
    double diff2 = 0, ref2 = 0;
    for (int i = 0; i < plain.n_q; ++i)
      for (int h = 0; h < 8; ++h) {
        reference_row(plain, i, h, a.data());
        reference_row(sunk, i, h, b.data());
        for (int c = 0; c < 64; ++c) diff2 += (a[c] - b[c]) * (a[c] - b[c]), ref2 += b[c] * b[c];
      }
    EXPECT_GT(std::sqrt(diff2 / ref2), 0.05) << "window " << left << ": the sinks barely change the output";
  }
}

TEST(Sinks, PrefillHeadDimsGqaDenseAndSliding) {
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256})
    for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{16, 2}})
      for (int left : {kInf, 127, 2}) {
        const Problem p = with_sinks(make_problem(shape(d, hq, hkv), 0, 300, left, 0));
        SCOPED_TRACE(describe_sinks(p, describe(p, "flash")));
        run_and_check(p, {});
        if (::testing::Test::HasFailure()) return;
      }
}

// Every flash kernel kind the backend can dispatch, with sinks: the one-kernel path and the warp-specialized kernel
// at each head_dim (plain and persistent grid, GQA-packed or not), dense and windows, a later chunk with fp16 inputs,
// an fp32 output with its bf16 copy, and sinks with softcapping.
TEST(Sinks, EveryFlashVariant) {
  SKIP_WITHOUT_GPU();
  const Variant kBase{false, false, false};
  for (auto [v, d] : {std::pair{kBase, 64}, std::pair{kBase, 128}, std::pair{kBase, 256}, std::pair{kPacked, 64},
                      std::pair{kPacked, 256}, std::pair{kWs256, 256}, std::pair{kPackedWs256, 256},
                      std::pair{kWs64, 64}, std::pair{kPackedWs64, 64}, std::pair{kPersistent64, 64},
                      std::pair{kPersistent128, 128}, std::pair{kPersistent256, 256}}) {
    std::vector<Problem> problems;
    for (int left : {kInf, 511, 0}) problems.push_back(with_sinks(make_problem(shape(d, 8, 2), 0, 1000, left, 0)));
    problems.push_back(with_sinks(make_problem(shape(d, 8, 2, AttnDtype::FP16), 700, 300, 127, 0)));
    problems.push_back(with_sinks(capped(make_problem(shape(d, 8, 2), 0, 600, 255, 0), 5.f, 4.f)));
    problems.push_back(with_sinks(make_problem(shape(d, 16, 2, AttnDtype::BF16, true), 129, 1, kInf, 0)));
    for (const Problem& p : problems) {
      SCOPED_TRACE(describe_sinks(p, describe(p, v)) + (p.s.o_fp32 ? " fp32 out + o16" : ""));
      RunOptions opt = variant_run(v);
      opt.o16 = p.s.o_fp32;
      run_and_check(p, opt);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(Sinks, ChunkedRingWrapsSeveralTimes) {
  SKIP_WITHOUT_GPU();
  chunked_ring(shape(128, 8, 2), 300, 100, 2050, false, 0.f, 1.f, {}, draw_sinks(8));
  chunked_ring(shape(256, 4, 1), 512, 129, 2600, true, 0.f, 1.f, {}, draw_sinks(4));
  chunked_ring(shape(64, 16, 2, AttnDtype::FP16), 128, 33, 700, false, 0.f, 1.f, {}, draw_sinks(16));
  chunked_ring(shape(64, 8, 2), 200, 40, 900, false, 5.f, 4.f, variant_run(kPersistent64), draw_sinks(8));
}

// Decode with sinks: split-K with many splits (most of them empty, so the combine must add the sink once and
// never through a split), one split (the kernel's own epilogue adds it), a few queries, and a window after the ring
// wrapped.
TEST(Sinks, DecodeSplitKOneSplitAndSliding) {
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256})
    for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{64, 8}}) {
      SCOPED_TRACE("d " + std::to_string(d) + " heads " + std::to_string(hq) + "/" + std::to_string(hkv));
      run_and_check(with_sinks(make_problem(shape(d, hq, hkv), 5000, 1, kInf, 0)), {Impl::Decode, 0, true, 20000});
      run_and_check(with_sinks(make_problem(shape(d, hq, hkv, AttnDtype::FP16, true), 777, 3, kInf, 0)),
                    {Impl::Decode, 0, false, 0});
      run_and_check(with_sinks(make_problem(shape(d, hq, hkv), 100, 1, kInf, 0)), {Impl::Decode, 192, true, 192});
      run_and_check(with_sinks(make_problem(shape(d, hq, hkv), 3000, 1, 255, 0)), {Impl::Decode, 256 + 8, true, 8192});
      run_and_check(with_sinks(capped(make_problem(shape(d, hq, hkv), 2000, 1, kInf, 0), 5.f, 4.f)),
                    {Impl::Decode, 4096, true, 4096});
      if (::testing::Test::HasFailure()) return;
    }
}

// gpt-oss's attention: 64 query heads over 8 KV heads of 64, a 128-key window on alternate layers, dense on the
// others. Prefill with the variants the backend picks (use_fastest_variant) and the plain kernels, chunked over a
// ring of window + chunk rows, then decode steps over the wrapped ring and over split-K.
TEST(Sinks, GptOssShapes) {
  SKIP_WITHOUT_GPU();
  const Shape s = shape(64, 64, 8);
  for (int left : {127, kInf})
    for (bool fastest : {true, false}) {
      const Problem p = with_sinks(make_problem(s, 0, 2000, left, 0));
      SCOPED_TRACE(describe_sinks(p, describe(p, "flash")) + (fastest ? " fastest variant" : ""));
      RunOptions opt;
      opt.fastest = fastest;
      run_and_check(p, opt);
    }
  RunOptions fastest;
  fastest.fastest = true;
  chunked_ring(s, 128, 100, 1000, true, 0.f, 1.f, fastest, draw_sinks(64));
  chunked_ring(s, 128, 512, 1600, true, 0.f, 1.f, fastest, draw_sinks(64));
  run_and_check(with_sinks(make_problem(s, 3000, 1, 127, 0)), {Impl::Decode, 128 + 8, true, 8192});
  run_and_check(with_sinks(make_problem(s, 9000, 1, kInf, 0)), {Impl::Decode, 16384, true, 16384});
}

// Sinks far above every score take all the weight: the output is 0 (to fp32 precision; above 2^127 the kernels'
// term overflows to inf, which gives exactly that). Sinks far below (and -inf) take none: the output is the
// sinkless one. Both on every path, and mixed across the heads of one KV head.
TEST(Sinks, EdgeCasesAllWeightToTheSinkAndNoEffect) {
  SKIP_WITHOUT_GPU();
  const RunOptions prefill{}, decode_split{Impl::Decode, 0, true, 20000}, decode_one{Impl::Decode, 192, true, 192},
      naive{Impl::Naive};
  RunOptions persistent = variant_run(kPersistent64), ws128 = variant_run(kPersistent128);
  for (float sink : {1e4f, 200.f, 60.f, -60.f, -1e4f, -INFINITY, 0.f}) {
    std::vector<std::pair<Problem, RunOptions>> runs = {
        {make_problem(shape(64, 8, 2), 0, 300, kInf, 0), prefill},
        {make_problem(shape(64, 8, 2, AttnDtype::BF16, true), 0, 1000, 127, 0), persistent},
        {make_problem(shape(128, 8, 2), 0, 400, kInf, 0), ws128},
        {make_problem(shape(256, 4, 1, AttnDtype::FP16), 0, 200, 50, 0), prefill},
        {make_problem(shape(64, 8, 2), 5000, 1, kInf, 0), decode_split},
        {make_problem(shape(128, 8, 2), 100, 1, kInf, 0), decode_one},
        {make_problem(shape(64, 8, 2, AttnDtype::BF16, true), 0, 200, kInf, 0), naive}};
    for (auto& [p, opt] : runs) {
      p.sinks.assign(size_t(p.s.n_head), sink);
      if (sink == 0.f)  // mixed: all the weight to the sink on even heads, none on odd ones
        for (int h = 0; h < p.s.n_head; ++h) p.sinks[h] = h % 2 ? -1e4f : 1e4f;
      SCOPED_TRACE(describe_sinks(p, describe(p, opt.impl == Impl::Naive    ? "naive"
                                                 : opt.impl == Impl::Decode ? "decode"
                                                                            : "flash")));
      run_and_check(p, opt);
      if (::testing::Test::HasFailure()) return;
    }
  }
  swrun::cuda::naive_attention_release_workspace();
}

TEST(Sinks, NaiveMatchesReference) {
  SKIP_WITHOUT_GPU();
  run_and_check(with_sinks(make_problem(shape(128, 8, 2), 0, 300, kInf, 0)), {Impl::Naive});
  run_and_check(with_sinks(make_problem(shape(64, 64, 8, AttnDtype::BF16, true), 0, 257, 127, 0)), {Impl::Naive});
  run_and_check(with_sinks(make_problem(shape(256, 4, 4, AttnDtype::FP16), 100, 50, 7, 7)), {Impl::Naive});
  run_and_check(with_sinks(capped(make_problem(shape(64, 8, 1), 0, 200, kInf, 0), 5.f, 4.f)), {Impl::Naive});
  swrun::cuda::naive_attention_release_workspace();
}

// gpt-oss's decode step as the backend runs it: the projection's fp32 rows, NeoX RoPE with YaRN (base 150000,
// factor 32) rotated by the kernel itself (FlashAttnArgs::fresh), sinks, GQA 64/8 at head_dim 64, on the sliding
// ring and dense over split-K, at positions under and far over YaRN's original context; YaRN at the other head dims
// and with q/k norms too.
TEST(Sinks, GptOssDecodeFromFreshRowsWithYarn) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int d, hq, hkv, pos, left;
    bool norms, yarn, sinks;
  };
  for (Case c : {Case{64, 64, 8, 3000, 127, false, true, true}, Case{64, 64, 8, 70000, 127, false, true, true},
                 Case{64, 64, 8, 5000, kInf, false, true, true}, Case{64, 64, 8, 127, kInf, false, true, false},
                 Case{128, 8, 2, 40000, kInf, true, true, true}, Case{256, 8, 4, 1000, 511, true, true, false},
                 Case{64, 8, 1, 20000, kInf, true, false, true}}) {
    Problem p = make_problem(shape(c.d, c.hq, c.hkv, AttnDtype::BF16, true), c.pos, 1, c.left, 0);
    if (c.sinks) p = with_sinks(p);
    const FreshRows f = fresh_problem(p, true, c.norms, c.norms, false, c.yarn);
    SCOPED_TRACE(describe_sinks(p, describe(p, "decode, fresh rows")) + (c.yarn ? " yarn" : ""));
    const bool sliding = c.left != kInf;
    const int max_kv = sliding ? 8192 : std::max(2 * c.pos + 2, 1024);
    RunOptions opt{Impl::Decode, sliding ? c.left + 1 + 8 : max_kv, true, max_kv};
    opt.fresh = &f;
    run_and_check(p, opt);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(Sinks, SmallForSanitizers) {  // one launch per kernel kind with sinks, small enough for compute-sanitizer
  SKIP_WITHOUT_GPU();
  for (int d : {64, 128, 256}) {
    const Problem p = with_sinks(make_problem(shape(d, 4, 2), 0, 150, 20, 0));
    SCOPED_TRACE(describe(p, "flash"));
    run_and_check(p, {});
    run_and_check(with_sinks(make_problem(shape(d, 4, 2), 700, 1, kInf, 0)), {Impl::Decode, 2048, true, 2048});
  }
  run_and_check(with_sinks(make_problem(shape(64, 8, 2), 0, 150, 20, 0)), variant_run(kPersistent64));
}

TEST(Naive, OutOfMemoryIsAnError) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer tiny(1024);
  ASSERT_TRUE(tiny.ptr);
  FlashAttnArgs a;
  a.q = a.k = a.v = a.o = tiny.ptr;
  a.n_q = 3'000'000;
  a.n_head = a.n_head_kv = 4;
  a.head_dim = 128;
  a.q_stride = a.kv_stride = a.o_stride = 512;
  a.capacity = a.n_q;
  try {
    swrun::cuda::naive_attention(a, nullptr);
    FAIL() << "expected an out-of-memory Error";
  } catch (const swrun::Error& e) {
    EXPECT_NE(std::string(e.what()).find("dense-naive needs"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(Args, BadArgumentsAreErrors) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer buf(1 << 20);
  ASSERT_TRUE(buf.ptr);
  FlashAttnArgs a;
  a.q = a.k = a.v = a.o = buf.ptr;
  a.n_q = 16;
  a.n_head = 4;
  a.n_head_kv = 4;
  a.head_dim = 128;
  a.q_stride = a.kv_stride = a.o_stride = 512;
  a.capacity = 16;
  auto expect_error = [](FlashAttnArgs bad, const char* what) {
    EXPECT_THROW(swrun::cuda::flash_attention(bad, nullptr), swrun::Error) << what;
  };
  FlashAttnArgs b = a;
  b.head_dim = 96;
  expect_error(b, "head_dim 96");
  b = a;
  b.n_head = 6;
  expect_error(b, "n_head not a multiple of n_head_kv");
  b = a;
  b.q_pos0 = 100;  // dense needs 116 keys, the ring holds 16
  expect_error(b, "ring too small");
  b = a;
  b.kv_stride = 100;
  expect_error(b, "stride too small");
  for (float cap : {-1.f, INFINITY, NAN}) {
    b = a;
    b.softcap = cap;
    expect_error(b, "softcap not 0 or positive and finite");
    EXPECT_THROW(swrun::cuda::naive_attention(b, nullptr), swrun::Error) << "naive, softcap " << cap;
  }
  b = a;
  b.sinks = reinterpret_cast<const float*>(static_cast<char*>(buf.ptr) + 2);
  expect_error(b, "sinks not 4-byte aligned");
  swrun::cuda::flash_attention(a, nullptr);  // the unmodified args are fine
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
