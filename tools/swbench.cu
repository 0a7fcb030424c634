// swbench: attention benchmark. For each shape x N x implementation: median time (CUDA events, after warm-up),
// useful TFLOP/s (4 * d * Hq * sum_i visible_keys(i), d the shape's own head_dim), speed relative to dense fused
// and to dense-naive, the bytes of the row's buffers, the device-memory peak measured around the row, and a spot
// check of sampled query rows against an fp64 CPU reference.
//
//   swbench [--shapes gemma3,gemma2,mistral,llama64,gptoss,NAME:HQ/HKV/D/W,NAME:HQ/HKV/D/L:R] [--impls naive,
//           dense,sliding,decode-dense,decode-sliding] [--variants best,base,packed,ws256,ws64,packed+ws64,...]
//           [--n 4096,...] [--dtype bf16|fp16] [--softcap C] [--sinks S] [--reps R] [--target-ms T]
//           [--decode-batch B] [--check-rows K] [--max-n-naive N] [--json FILE] [--csv FILE]
// Decode rows (one query against N cached keys) time B calls back to back per sample (default 20) and report the
// time per call: a decode step launches each kernel under the one before it, so a lone call's launch latency is not
// what a step pays. Their input sets rotate through at least twice the L2 in K/V bytes, so K and V come from memory.
// --variants runs the dense and sliding rows once per flash kernel variant, on the same inputs in one process
// (bench/attention_notes.md #14): best (the default; rows keep the plain impl name) is what the CUDA backend runs
// (use_fastest_variant), base no switch, packed forces GQA packing (FlashAttnArgs::pack_gqa), ws256 and ws64 the
// warp-specialized kernel at head_dim 256 and 64 (FlashAttnArgs::ws_d256, ws_d64; #14b, #15), persistent its
// persistent grid (FlashAttnArgs::persistent, #16); switches combine with '+', and such rows are named e.g.
// sliding-packed+ws256+persistent.
// --softcap C caps every scaled score s to C * tanh(s / C) (Gemma 2 uses 50); the spot check caps too.
// --sinks S gives every head an attention sink of logit S (gpt-oss: FlashAttnArgs::sinks); the spot check adds it.
// A shape's window W is a causal window of W keys, (W-1, 0); NAME:HQ/HKV/D/L:R gives a (left, right) window.
// A two-sided window (R > 0) is an encoder's, so that shape's dense rows are full bidirectional attention.
// A head_dim the fused kernels lack (below 64, 128 or 256) runs them on inputs zero-padded to the next one with
// the scale of the real head_dim, which leaves scores and outputs unchanged; dense-naive runs unpadded.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attention/attention.h"
#include "kernels/common/cuda_check.h"
#include "runtime/common.h"

namespace {

using swrun::cuda::AttnDtype;
using swrun::cuda::FlashAttnArgs;
using swrun::cuda::check_cuda;

struct Shape {
  std::string name;
  int hq, hkv, d;
  int32_t left, right;  // the sliding policy's window
  int d_fused = 0;      // the head_dim the fused kernels run it at (d, or d zero-padded)
};

// An allocation the device could not satisfy: its row is marked OOM, not ERROR.
struct OutOfMemory : swrun::Error {
  using swrun::Error::Error;
};

struct Options {
  std::vector<Shape> shapes;
  std::vector<std::string> impls{"naive", "dense", "sliding"};
  std::vector<std::string> variants{"best"};
  std::vector<int> ns{4096, 8192, 16384, 32768, 65536, 131072};
  AttnDtype dtype = AttnDtype::BF16;
  float softcap = 0.f;  // 0: none
  float sinks = NAN;    // every head's sink logit; NaN: no sinks
  int max_reps = 50;
  double target_ms = 300;  // timing budget per row, before max_reps caps it
  int decode_batch = 20;    // decode calls per timed sample
  int check_rows = 3;
  int64_t max_n_naive = INT64_MAX;
  std::string json, csv;
};

// The decode impls (decode-dense, decode-sliding): one query against the cache.
bool is_decode(const std::string& impl) { return impl.rfind("decode", 0) == 0; }

struct Row {
  std::string shape, impl, check = "-", note;
  int n = 0, reps = 0;
  double ms = NAN, tflops = NAN, kv_gbs = NAN, vs_dense = NAN, vs_naive = NAN, max_rel_err = NAN;
  double bytes = 0, peak_bytes = NAN;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

int to_int(const std::string& s, const std::string& what) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 0 || v > INT32_MAX) swrun::fail("swbench: bad " + what + " '" + s + "'");
  return static_cast<int>(v);
}

// The smallest head_dim of the fused kernels that holds d; a d above all of them is left for the kernels to refuse.
int fused_head_dim(int d) {
  for (int supported : {64, 128, 256})
    if (d <= supported) return supported;
  return d;
}

Shape parse_shape(const std::string& spec) {
  Shape s;
  if (spec == "gemma3") s = {"gemma3", 4, 1, 256, 511, 0};
  else if (spec == "gemma2") s = {"gemma2", 16, 8, 256, 4095, 0};  // Gemma 2 9B's local layers
  else if (spec == "mistral") s = {"mistral", 32, 8, 128, 4095, 0};
  else if (spec == "llama64") s = {"llama64", 32, 4, 64, 1023, 0};
  else if (spec == "gptoss") s = {"gptoss", 64, 8, 64, 127, 0};  // gpt-oss 20B / 120B: 128-key windows
  else {
    const auto colon = spec.find(':');
    const auto parts = colon == std::string::npos ? std::vector<std::string>{} : split(spec.substr(colon + 1), '/');
    if (parts.size() != 4)
      swrun::fail("swbench: shape '" + spec +
                  "' is not gemma3|gemma2|mistral|llama64|gptoss|NAME:HQ/HKV/D/W|NAME:HQ/HKV/D/L:R");
    s = {spec.substr(0, colon), to_int(parts[0], "Hq"), to_int(parts[1], "Hkv"), to_int(parts[2], "head_dim"), 0, 0};
    const auto lr = split(parts[3], ':');
    if (lr.size() == 2) {
      s.left = to_int(lr[0], "left");
      s.right = to_int(lr[1], "right");
    } else {
      s.left = to_int(parts[3], "window") - 1;
    }
    if (s.hq == 0 || s.hkv == 0 || s.hq % s.hkv || s.d == 0 || s.left < 0)
      swrun::fail("swbench: shape '" + spec + "' needs Hq a positive multiple of Hkv, D > 0 and W > 0");
  }
  s.d_fused = fused_head_dim(s.d);
  return s;
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> shapes{"gemma3", "mistral", "llama64"};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::puts("swbench [--shapes gemma3,gemma2,mistral,llama64,gptoss,NAME:HQ/HKV/D/W,NAME:HQ/HKV/D/L:R] "
                "[--impls naive,dense,sliding,decode-dense,decode-sliding] [--variants best,base,packed,ws256,ws64,packed+ws64,...] "
                "[--n LIST] [--dtype bf16|fp16] [--softcap C] [--sinks S] [--reps R] [--target-ms T] [--decode-batch B] "
                "[--check-rows K] [--max-n-naive N] [--json FILE] [--csv FILE]\n"
                "  --decode-batch B: decode rows time B calls back to back per sample (default 20), time per call.\n"
                "  --variants: dense and sliding once per flash variant (rows named e.g. sliding-packed): best (default,\n"
                "  plain row names) = what the CUDA backend runs, base = no switch, packed = GQA packing forced,\n"
                "  ws256 / ws64 = warp-specialized kernel at head_dim 256 / 64, persistent = its persistent grid;\n"
                "  switches combine with '+'.\n"
                "  --softcap C: scores capped to C * tanh(s / C) before the softmax (Gemma 2: 50); 0 = none.\n"
                "  --sinks S: every head gets an attention sink of logit S (gpt-oss).\n"
                "  NAME:HQ/HKV/D/W: causal window of W keys. NAME:HQ/HKV/D/L:R: L keys before and R after each query\n"
                "  (e.g. toy:4/4/16/2:2); with R > 0 the dense and naive rows are bidirectional. A head_dim below 64\n"
                "  (or between 64, 128, 256) runs the fused kernels zero-padded to the next of those.\n"
                "  --json/--csv are rewritten after every shape x N, so an interrupted run keeps its finished rows.");
      std::exit(0);
    }
    if (i + 1 >= argc) swrun::fail("swbench: " + flag + " needs a value");
    const std::string val = argv[++i];
    if (flag == "--shapes") shapes = split(val, ',');
    else if (flag == "--impls") o.impls = split(val, ',');
    else if (flag == "--variants") o.variants = split(val, ',');
    else if (flag == "--n") {
      o.ns.clear();
      for (auto& s : split(val, ',')) o.ns.push_back(to_int(s, "N"));
    } else if (flag == "--dtype") {
      if (val != "bf16" && val != "fp16") swrun::fail("swbench: --dtype must be bf16 or fp16");
      o.dtype = val == "bf16" ? AttnDtype::BF16 : AttnDtype::FP16;
    } else if (flag == "--softcap") {
      char* end = nullptr;
      o.softcap = std::strtof(val.c_str(), &end);
      if (val.empty() || *end || !swrun::cuda::valid_softcap(o.softcap))
        swrun::fail("swbench: --softcap must be a finite number >= 0, not '" + val + "'");
    } else if (flag == "--sinks") {
      char* end = nullptr;
      o.sinks = std::strtof(val.c_str(), &end);
      if (val.empty() || *end || !std::isfinite(o.sinks))
        swrun::fail("swbench: --sinks must be a finite number, not '" + val + "'");
    } else if (flag == "--reps") o.max_reps = std::max(1, to_int(val, "--reps"));
    else if (flag == "--target-ms") o.target_ms = to_int(val, "--target-ms");
    else if (flag == "--decode-batch") o.decode_batch = std::max(1, to_int(val, "--decode-batch"));
    else if (flag == "--check-rows") o.check_rows = to_int(val, "--check-rows");
    else if (flag == "--max-n-naive") o.max_n_naive = to_int(val, "--max-n-naive");
    else if (flag == "--json") o.json = val;
    else if (flag == "--csv") o.csv = val;
    else swrun::fail("swbench: unknown flag " + flag);
  }
  for (auto& s : shapes) o.shapes.push_back(parse_shape(s));
  for (auto& im : o.impls)
    if (im != "naive" && im != "dense" && im != "sliding" && im != "decode-dense" && im != "decode-sliding")
      swrun::fail("swbench: unknown impl " + im);
  for (auto& v : o.variants) {
    const auto parts = split(v, '+');
    const auto known = [](const std::string& x) {
      return x == "packed" || x == "ws256" || x == "ws64" || x == "persistent";
    };
    const bool ok = v == "best" || v == "base" || (!parts.empty() && std::all_of(parts.begin(), parts.end(), known));
    if (!ok)
      swrun::fail("swbench: unknown variant '" + v +
                  "' (best, base, or packed, ws256, ws64, persistent joined by '+')");
  }
  std::vector<std::string> rows;  // dense and sliding once per variant
  for (const auto& im : o.impls)
    if (im == "dense" || im == "sliding")
      for (const auto& v : o.variants) rows.push_back(v == "best" ? im : im + "-" + v);
    else
      rows.push_back(im);
  o.impls = rows;
  return o;
}

// Deterministic pseudo-random inputs in [-2, 2), generated on the GPU (host RNG is too slow at 131072 rows).
// Element c of head row r depends on r * d + c only, so heads laid out `pitch` apart (zero padding after
// column d) hold the same values as packed ones.
template <typename T>
__global__ void fill_random(T* x, size_t n, int d, int pitch, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    x[i / d * pitch + i % d] = static_cast<T>(static_cast<float>(h >> 40) * (4.0f / 16777216.0f) - 2.0f);
  }
}

float to_float(uint16_t bits, AttnDtype t) {
  if (t == AttnDtype::BF16) {
    __nv_bfloat16_raw b;
    b.x = bits;
    return __bfloat162float(__nv_bfloat16(b));
  }
  __half_raw h;
  h.x = bits;
  return __half2float(__half(h));
}

// The keys the queries q_pos0 .. q_pos0 + n_q - 1 see, summed over the queries.
double visible_keys(int64_t q_pos0, int64_t n_q, int64_t kv_len, int32_t left, int32_t right) {
  double keys = 0;
  for (int64_t i = q_pos0; i < q_pos0 + n_q; ++i)
    keys += double(std::min<int64_t>(kv_len - 1, i + right) - std::max<int64_t>(0, i - left) + 1);
  return keys;
}

struct Inputs {
  int n = 0, sets = 1;
  int pitch = 0;  // elements from one head to the next in a row: the head_dim the kernels are told
  size_t q_elems = 0, kv_elems = 0;
  std::vector<void*> q, k, v, o;  // `sets` copies rotated through when one set fits in L2
  void* dpos = nullptr;
  double bytes = 0;
  ~Inputs() {
    for (auto* vec : {&q, &k, &v, &o})
      for (void* p : *vec) cudaFree(p);
    cudaFree(dpos);
  }
};

// `head_rows` rows of d values, `pitch` apart; the padding between them is zero.
void fill(void* x, size_t head_rows, int d, int pitch, uint64_t seed, AttnDtype dt) {
  if (pitch != d) check_cuda(cudaMemset(x, 0, head_rows * pitch * 2), "swbench: zero padding");
  if (dt == AttnDtype::BF16)
    fill_random<__nv_bfloat16><<<1024, 256>>>(static_cast<__nv_bfloat16*>(x), head_rows * d, d, pitch, seed);
  else
    fill_random<__half><<<1024, 256>>>(static_cast<__half*>(x), head_rows * d, d, pitch, seed);
  swrun::cuda::check_launch("swbench fill_random");
}

size_t free_device_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "swbench: cudaMemGetInfo");
  return free_bytes;
}

void* device_alloc(size_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky, but the next launch check would report it as its own
    throw OutOfMemory("swbench: " + what + " needs " + swrun::human_bytes(double(bytes)) + ", " +
                      swrun::human_bytes(double(free_device_bytes())) + " free");
  }
  check_cuda(status, ("swbench: cudaMalloc " + what).c_str());
  return p;
}

// One set of 16-bit Q, K, V, O with heads `pitch` elements apart: what a real call touches.
double input_set_bytes(const Shape& s, int n, int pitch) { return 2.0 * n * pitch * (2.0 * s.hq + 2.0 * s.hkv); }

// The bytes a row's buffers take, known before allocating them (so an OOM row says what it needed).
double row_bytes(const Shape& s, int n, int pitch, bool naive) {
  FlashAttnArgs a;
  a.n_head = s.hq;
  a.n_q = n;
  return input_set_bytes(s, n, pitch) + (naive ? double(swrun::cuda::naive_attention_workspace_bytes(a)) : 0.0);
}

// Throws OutOfMemory when the device cannot hold the inputs; what was allocated is freed with `in`. A call reads
// the whole set, or with `decode` its K and V alone: enough sets that a rotation through them reads at least twice
// the L2 keeps a call from finding what an earlier one left there.
void alloc_inputs(Inputs& in, const Shape& s, int n, int pitch, int l2_bytes, AttnDtype dt, bool decode) {
  in.n = n;
  in.pitch = pitch;
  in.q_elems = size_t(n) * s.hq * pitch;
  in.kv_elems = size_t(n) * s.hkv * pitch;
  in.bytes = input_set_bytes(s, n, pitch);
  const double read = decode ? 2.0 * 2.0 * double(in.kv_elems) : in.bytes;
  in.sets = read < 2.0 * l2_bytes ? std::min(16, int(2.0 * l2_bytes / read) + 1) : 1;
  for (int i = 0; i < in.sets; ++i) {
    in.q.push_back(device_alloc(in.q_elems * 2, "q"));
    in.k.push_back(device_alloc(in.kv_elems * 2, "k"));
    in.v.push_back(device_alloc(in.kv_elems * 2, "v"));
    in.o.push_back(device_alloc(in.q_elems * 2, "o"));
    const uint64_t seed = 1000003ull * n + 7919ull * i;
    fill(in.q[i], size_t(n) * s.hq, s.d, pitch, seed + 1, dt);
    fill(in.k[i], size_t(n) * s.hkv, s.d, pitch, seed + 2, dt);
    fill(in.v[i], size_t(n) * s.hkv, s.d, pitch, seed + 3, dt);
  }
  in.dpos = device_alloc(sizeof(int32_t), "position");
}

FlashAttnArgs make_args(const Shape& s, const Inputs& in, int set, const Options& opt, bool windowed, int n_q) {
  FlashAttnArgs a;
  a.q = in.q[set];
  a.k = in.k[set];
  a.v = in.v[set];
  a.o = in.o[set];
  a.dtype = opt.dtype;
  a.q_stride = a.o_stride = int64_t{s.hq} * in.pitch;
  a.kv_stride = int64_t{s.hkv} * in.pitch;
  a.n_q = n_q;
  a.q_pos0 = in.n - n_q;
  a.n_head = s.hq;
  a.n_head_kv = s.hkv;
  a.head_dim = in.pitch;
  a.capacity = in.n;
  // Dense is what the model would compute without the window: causal, or everything for an encoder.
  a.left = windowed ? s.left : INT32_MAX;
  a.right = windowed ? s.right : s.right > 0 ? INT32_MAX : 0;
  a.scale = 1.f / std::sqrt(float(s.d));  // the real head_dim's: zero padding adds nothing to the scores
  a.softcap = opt.softcap;
  if (!std::isnan(opt.sinks)) {  // one device vector per head count, kept for the process
    static std::vector<std::pair<int, float*>> vectors;
    auto it = std::find_if(vectors.begin(), vectors.end(), [&](const auto& e) { return e.first == s.hq; });
    if (it == vectors.end()) {
      float* d = nullptr;
      check_cuda(cudaMalloc(&d, size_t(s.hq) * sizeof(float)), "swbench: sinks");
      const std::vector<float> host(size_t(s.hq), opt.sinks);
      check_cuda(cudaMemcpy(d, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "swbench: sinks");
      vectors.emplace_back(s.hq, d);
      it = vectors.end() - 1;
    }
    a.sinks = it->second;
  }
  return a;
}

// Sampled query rows of the output against fp64 on the host: returns the worst relative row error over the
// first d columns of each head (heads are a.head_dim apart; beyond d is padding).
double spot_check(const FlashAttnArgs& a, int d, int rows, std::mt19937& rng) {
  const int pitch = a.head_dim, kv_len = a.q_pos0 + a.n_q, group = a.n_head / a.n_head_kv;
  std::vector<int> picks{a.n_q - 1};
  std::uniform_int_distribution<int> pick(0, a.n_q - 1);
  while (int(picks.size()) < std::min(rows, a.n_q)) picks.push_back(pick(rng));
  double worst = 0;
  for (int i : picks) {
    const int64_t pos = int64_t{a.q_pos0} + i;
    const int64_t lo = std::max<int64_t>(0, pos - a.left), hi = std::min<int64_t>(kv_len - 1, pos + a.right);
    const size_t kv_row = size_t(a.kv_stride), nrows = size_t(hi - lo + 1);
    std::vector<uint16_t> q(size_t(a.q_stride)), o(size_t(a.o_stride)), k(nrows * kv_row), v(nrows * kv_row);
    check_cuda(cudaMemcpy(q.data(), static_cast<const uint16_t*>(a.q) + i * a.q_stride, q.size() * 2,
                          cudaMemcpyDeviceToHost), "swbench: copy q row");
    check_cuda(cudaMemcpy(o.data(), static_cast<const uint16_t*>(a.o) + i * a.o_stride, o.size() * 2,
                          cudaMemcpyDeviceToHost), "swbench: copy o row");
    check_cuda(cudaMemcpy(k.data(), static_cast<const uint16_t*>(a.k) + lo * kv_row, k.size() * 2,
                          cudaMemcpyDeviceToHost), "swbench: copy k rows");
    check_cuda(cudaMemcpy(v.data(), static_cast<const uint16_t*>(a.v) + lo * kv_row, v.size() * 2,
                          cudaMemcpyDeviceToHost), "swbench: copy v rows");
    for (int h : {0, a.n_head - 1}) {
      const int hk = h / group;
      std::vector<double> sc(nrows), ref(d, 0.0);
      double mx = -INFINITY, sum = 0, err2 = 0, ref2 = 0, sink = -INFINITY;
      if (a.sinks) {
        float host = 0.f;
        check_cuda(cudaMemcpy(&host, a.sinks + h, sizeof host, cudaMemcpyDeviceToHost), "swbench: copy sink");
        sink = host;
      }
      for (size_t j = 0; j < nrows; ++j) {
        double dot = 0;
        for (int c = 0; c < d; ++c)
          dot += double(to_float(q[h * pitch + c], a.dtype)) * to_float(k[j * kv_row + hk * pitch + c], a.dtype);
        sc[j] = dot * a.scale;
        if (a.softcap > 0.f) sc[j] = a.softcap * std::tanh(sc[j] / a.softcap);
        mx = std::max(mx, sc[j]);
      }
      if (a.sinks) mx = std::max(mx, sink), sum = std::exp(sink - mx);  // in the denominator only
      for (auto& x : sc) sum += (x = std::exp(x - mx));
      for (size_t j = 0; j < nrows; ++j)
        for (int c = 0; c < d; ++c) ref[c] += sc[j] / sum * to_float(v[j * kv_row + hk * pitch + c], a.dtype);
      for (int c = 0; c < d; ++c) {
        const double e = to_float(o[h * pitch + c], a.dtype) - ref[c];
        err2 += e * e;
        ref2 += ref[c] * ref[c];
      }
      worst = std::max(worst, std::isfinite(err2) ? std::sqrt(err2 / std::max(ref2, 1e-30)) : INFINITY);
    }
  }
  return worst;
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::string fmt(double x, const char* f = "%.3f") {
  if (!std::isfinite(x)) return "-";
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

void add_note(Row& r, const std::string& note) { r.note += (r.note.empty() ? "" : "; ") + note; }

Row row_of(const Shape& s, int n, const std::string& impl) {
  Row r;
  r.shape = s.name;
  r.impl = impl;
  r.n = n;
  if (impl != "naive" && s.d_fused != s.d) add_note(r, "padded to head_dim " + std::to_string(s.d_fused));
  return r;
}

// `fused_in` holds the inputs at the fused kernels' head_dim; `free_before` is the free device memory before
// they were allocated, the base of the row's measured peak.
Row run_impl(const Options& opt, const Shape& s, Inputs& fused_in, const std::string& impl, int l2_bytes,
             size_t free_before, std::mt19937& rng) {
  const bool naive = impl == "naive";
  const bool decode = is_decode(impl);
  const bool windowed = impl.rfind("sliding", 0) == 0 || impl == "decode-sliding";
  // Prefill variants (parse_args): the switches named after the impl's dash, e.g. sliding-packed+ws256.
  const std::string variant = decode || impl.find('-') == std::string::npos ? "" : impl.substr(impl.find('-'));
  const bool pack_gqa = variant.find("packed") != std::string::npos;
  const bool ws_d256 = variant.find("ws256") != std::string::npos;
  const bool ws_d64 = variant.find("ws64") != std::string::npos;
  const bool persistent = variant.find("persistent") != std::string::npos;
  const int n = fused_in.n, n_q = decode ? 1 : n;
  Row r = row_of(s, n, impl);
  if (opt.softcap > 0.f) add_note(r, "softcap " + fmt(opt.softcap, "%g"));
  if (!std::isnan(opt.sinks)) add_note(r, "sinks " + fmt(opt.sinks, "%g"));
  if (naive && n > opt.max_n_naive) {
    r.check = "skip";
    add_note(r, "N above --max-n-naive");
    return r;
  }
  Inputs packed;  // dense-naive runs at the shape's own head_dim: cuBLAS needs no padding
  Inputs& in = naive && s.d != fused_in.pitch ? packed : fused_in;
  r.bytes = row_bytes(s, n, naive ? s.d : fused_in.pitch, naive);
  void* workspace = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  size_t lowest_free = SIZE_MAX;
  auto sample_memory = [&] { lowest_free = std::min(lowest_free, free_device_bytes()); };
  auto call = [&](int set) {
    FlashAttnArgs a = make_args(s, in, set, opt, windowed, n_q);
    if (variant.empty() && !decode) {
      swrun::cuda::use_fastest_variant(a);  // what the CUDA backend runs for prefill
    } else {
      a.pack_gqa = pack_gqa;
      a.ws_d256 = ws_d256;
      a.ws_d64 = ws_d64;
      a.persistent = persistent;
    }
    if (naive) swrun::cuda::naive_attention(a, nullptr);
    else if (decode) {
      a.q_pos0_dev = static_cast<const int32_t*>(in.dpos);
      swrun::cuda::flash_attention_decode(a, n, workspace, nullptr);
    } else swrun::cuda::flash_attention(a, nullptr);
  };
  try {
    if (&in == &packed) alloc_inputs(packed, s, n, s.d, l2_bytes, opt.dtype, false);
    const FlashAttnArgs base = make_args(s, in, 0, opt, windowed, n_q);
    if (naive)  // the baseline reports a failed workspace allocation like any error: probing tells OOM apart
      check_cuda(cudaFree(device_alloc(swrun::cuda::naive_attention_workspace_bytes(base),
                                       "dense-naive workspace (N x N scores and probabilities)")),
                 "swbench: cudaFree");
    if (decode) {
      const size_t ws = swrun::cuda::flash_decode_workspace_bytes(base, n);
      r.bytes += double(ws);
      workspace = device_alloc(std::max<size_t>(ws, 16), "decode workspace");
      // The position comes from device memory, as in a captured decode step.
      const int32_t pos = base.q_pos0;
      check_cuda(cudaMemcpy(in.dpos, &pos, sizeof pos, cudaMemcpyHostToDevice), "swbench: position");
    }
    check_cuda(cudaEventCreate(&e0), "swbench: event");
    check_cuda(cudaEventCreate(&e1), "swbench: event");
    std::vector<float> times;
    call(0);  // warm-up: module load, cuBLAS handle, workspace
    check_cuda(cudaDeviceSynchronize(), ("swbench: " + impl + " warm-up").c_str());
    sample_memory();
    // A decode call is a few microseconds, as long as launching it: as in a decode step, where each kernel's launch
    // overlaps the one before (programmatic dependent launch), a sample times a batch of calls back to back.
    const int batch = decode ? opt.decode_batch : 1;
    if (batch > 1) add_note(r, "per call of " + std::to_string(batch) + " back to back");
    int reps = opt.max_reps, set = 0;
    for (int i = 0; i < reps; ++i) {
      check_cuda(cudaEventRecord(e0), "swbench: record");
      for (int j = 0; j < batch; ++j) call(set++ % in.sets);
      check_cuda(cudaEventRecord(e1), "swbench: record");
      check_cuda(cudaEventSynchronize(e1), ("swbench: " + impl).c_str());
      float ms = 0;
      check_cuda(cudaEventElapsedTime(&ms, e0, e1), "swbench: elapsed");
      times.push_back(ms / float(batch));
      if (i == 0)
        reps = std::clamp(int(opt.target_ms / std::max(ms, 1e-3f)), std::min(5, opt.max_reps), opt.max_reps);
    }
    sample_memory();
    r.reps = int(times.size());
    r.ms = median(times);
    const double keys = visible_keys(base.q_pos0, n_q, n, base.left, base.right);
    r.tflops = 4.0 * s.d * s.hq * keys / (r.ms * 1e-3) / 1e12;
    // Decode reads every visible key's K and V row once (at the shape's own head_dim): memory-bound, so its rate
    // is bytes per second (issue 9's bar: 80% of the HBM bandwidth).
    if (decode) r.kv_gbs = keys * s.hkv * s.d * 2.0 * 2.0 / (r.ms * 1e-3) / 1e9;
    r.peak_bytes = double(free_before - std::min(lowest_free, free_before));
    if (opt.check_rows > 0) {
      call(0);
      check_cuda(cudaDeviceSynchronize(), "swbench: check run");
      r.max_rel_err = spot_check(make_args(s, in, 0, opt, windowed, n_q), s.d, opt.check_rows, rng);
      r.check = r.max_rel_err <= 2e-2 ? "ok" : "FAIL";
    }
  } catch (const OutOfMemory& e) {
    r.check = "OOM";
    add_note(r, e.what());
  } catch (const std::exception& e) {
    r.check = "ERROR";
    add_note(r, e.what());
  }
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  cudaFree(workspace);
  if (naive) try {
      swrun::cuda::naive_attention_release_workspace();
    } catch (const swrun::Error& e) {  // a broken context: this row says so, the next rows try on
      r.check = "ERROR";
      add_note(r, e.what());
    }
  return r;
}

// Speedups inside one shape x N group: prefill rows over dense and dense-naive, decode rows over decode-dense.
void compare_within_group(std::vector<Row>& rows, size_t first) {
  double dense = NAN, naive = NAN, decode_dense = NAN;
  for (size_t i = first; i < rows.size(); ++i) {
    if (rows[i].impl == "dense") dense = rows[i].ms;
    if (rows[i].impl == "naive") naive = rows[i].ms;
    if (rows[i].impl == "decode-dense") decode_dense = rows[i].ms;
  }
  for (size_t i = first; i < rows.size(); ++i) {
    Row& r = rows[i];
    const bool dec = is_decode(r.impl);
    r.vs_dense = (dec ? decode_dense : dense) / r.ms;
    if (!dec) r.vs_naive = naive / r.ms;
  }
}

// Through a temporary file and a rename, so a run killed while writing leaves the previous complete file.
void replace_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << text;
    if (!f.flush()) swrun::fail("swbench: cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) swrun::fail("swbench: cannot rename " + tmp + " to " + path);
}

void write_outputs(const Options& opt, const std::vector<Row>& rows, const std::string& device) {
  if (!opt.csv.empty()) {
    std::ostringstream f;
    f << "device,shape,impl,N,ms,tflops,kv_gbs,vs_dense,vs_naive,bytes,peak_bytes,reps,check,max_rel_err,note\n";
    for (auto& r : rows)
      f << '"' << device << "\"," << r.shape << ',' << r.impl << ',' << r.n << ',' << fmt(r.ms, "%.5f") << ','
        << fmt(r.tflops, "%.2f") << ',' << fmt(r.kv_gbs, "%.1f") << ',' << fmt(r.vs_dense) << ',' << fmt(r.vs_naive)
        << ',' << fmt(r.bytes, "%.0f")
        << ',' << fmt(r.peak_bytes, "%.0f") << ',' << r.reps << ',' << r.check << ','
        << fmt(r.max_rel_err, "%.2e") << ",\"" << r.note << "\"\n";
    replace_file(opt.csv, f.str());
  }
  if (!opt.json.empty()) {
    auto num = [](double x, const char* f) { return std::isfinite(x) ? fmt(x, f) : std::string("null"); };
    auto esc = [](std::string s) {
      std::string o;
      for (char c : s) o += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
      return o;
    };
    std::ostringstream f;
    f << "{\"device\": \"" << esc(device) << "\", \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      f << "  {\"shape\": \"" << r.shape << "\", \"impl\": \"" << r.impl << "\", \"N\": " << r.n
        << ", \"ms\": " << num(r.ms, "%.5f") << ", \"tflops\": " << num(r.tflops, "%.2f")
        << ", \"kv_gbs\": " << num(r.kv_gbs, "%.1f")
        << ", \"vs_dense\": " << num(r.vs_dense, "%.3f") << ", \"vs_naive\": " << num(r.vs_naive, "%.3f")
        << ", \"bytes\": " << fmt(r.bytes, "%.0f") << ", \"peak_bytes\": " << num(r.peak_bytes, "%.0f")
        << ", \"reps\": " << r.reps << ", \"check\": \"" << r.check
        << "\", \"max_rel_err\": " << num(r.max_rel_err, "%.3e") << ", \"note\": \"" << esc(r.note) << "\"}"
        << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    f << "]}\n";
    replace_file(opt.json, f.str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options opt = parse_args(argc, argv);
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, 0), "swbench: no CUDA device");
    const std::string device = prop.name;
    std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
    std::mt19937 rng(12345);
    std::vector<Row> rows;
    std::printf("%-9s %-20s %7s %10s %8s %8s %8s %8s %10s %5s %-5s %s\n", "shape", "impl", "N", "ms", "TFLOP/s",
                "KV-GB/s", "vs-dense", "vs-naive", "MiB", "reps", "check", "note");
    const bool any_decode = std::any_of(opt.impls.begin(), opt.impls.end(), is_decode);
    for (const Shape& s : opt.shapes)
      for (int n : opt.ns) {
        const size_t first = rows.size();
        {
          const size_t free_before = free_device_bytes();
          Inputs in;
          std::string input_status, input_failure;
          try {
            alloc_inputs(in, s, n, s.d_fused, prop.l2CacheSize, opt.dtype, any_decode);
          } catch (const OutOfMemory& e) {
            input_status = "OOM", input_failure = e.what();
          } catch (const std::exception& e) {
            input_status = "ERROR", input_failure = e.what();
          }
          for (const auto& impl : opt.impls) {
            if (input_failure.empty()) {
              rows.push_back(run_impl(opt, s, in, impl, prop.l2CacheSize, free_before, rng));
              continue;
            }
            Row r = row_of(s, n, impl);
            r.bytes = row_bytes(s, n, impl == "naive" ? s.d : s.d_fused, impl == "naive");
            r.check = input_status;
            add_note(r, "inputs: " + input_failure);
            rows.push_back(r);
          }
        }
        compare_within_group(rows, first);
        for (size_t i = first; i < rows.size(); ++i) {
          const Row& r = rows[i];
          std::printf("%-9s %-20s %7d %10s %8s %8s %8s %8s %10s %5d %-5s %s\n", r.shape.c_str(), r.impl.c_str(), r.n,
                      fmt(r.ms, "%.4f").c_str(), fmt(r.tflops, "%.1f").c_str(), fmt(r.kv_gbs, "%.0f").c_str(),
                      fmt(r.vs_dense, "%.2f").c_str(),
                      fmt(r.vs_naive, "%.2f").c_str(), fmt(r.bytes / 1048576.0, "%.0f").c_str(), r.reps,
                      r.check.c_str(), r.note.c_str());
        }
        std::fflush(stdout);
        write_outputs(opt, rows, device);
      }
    const bool failed = std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.check == "FAIL" || r.check == "ERROR"; });
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
