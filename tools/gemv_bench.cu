// gemv_bench: the quantized GEMV variants (kernels/gemv/gemv_quant_variants.cuh) on the same inputs, one row per
// shape x activation rows x variant: checked, then timed. Every variant is forced through gemv_quant_variant; the
// one the public gemv_quant picks for the shape is in the `default` column.
//
//   gemv_bench [--shapes NOUTxCOLS:TYPE,...] [--variants 1,2,...,11] [--rows 1,2,...] [--reps R] [--warmup W]
//              [--warm]
//
// Inputs: random GGUF blocks with finite scales (tests/quant_random_blocks.h, seed printed) and N(0,1)
// activations. Check: the output is poisoned (NaN) first, then every element is compared with an fp64 dot of the
// CPU-dequantized row (runtime/dequant.h) and must be within 3e-5 of the sum of |products|; the output after the
// timed runs must equal the first run's bit for bit (deterministic). Timing: W warm-up launches, then R launches
// each between two CUDA events; the median. GB/s counts the weight bytes (file size) once per launch; % is of the
// device's copy bandwidth, measured first (a device-to-device cudaMemcpy of 1 GiB: read + write bytes per second),
// the floor a decode step's weight stream is held to. Launches rotate over enough copies of the matrix to pass 4x
// the L2 size, so each reads its weights from HBM as a decode step does (a step reads every matrix once); `--warm`
// runs one copy instead (a matrix under the L2 size is then read from L2: latency, not bandwidth).
// Exit status: 1 when a row fails its check, 2 on bad arguments.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <strings.h>
#include <thread>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/gemv/gemv_quant.cuh"
#include "kernels/gemv/gemv_quant_variants.cuh"
#include "runtime/common.h"
#include "runtime/dequant.h"
#include "tests/quant_random_blocks.h"

namespace {

using swrun::GgmlType;
using swrun::cuda::check_cuda;
using swrun::cuda::GemvVariant;

constexpr double kTolerance = 3e-5;  // |got - want| / sum |x_i w_i|

struct Shape {
  int64_t n_out, cols;
  GgmlType type;
};

struct Options {
  // Gemma 3 270M (output projection, MLP, attention), Llama 3 8B (q/o, MLP up, output projection), Qwen2.5 7B
  // (q/o, k/v, gate/up, down in both of Q4_K_M's types, output) and Gemma 3 27B (q, gate/up, down, tied output).
  std::vector<std::string> shapes{
      "262144x640:Q8_0",   "2048x640:Q8_0",     "2048x640:Q5_0",     "1024x640:Q8_0",    "1024x640:Q5_0",
      "640x2048:Q4_K",     "640x2048:Q6_K",     "4096x4096:Q4_K",    "14336x4096:Q4_K",  "128256x4096:Q6_K",
      "3584x3584:Q4_K",    "512x3584:Q4_K",     "18944x3584:Q4_K",   "3584x18944:Q4_K",  "3584x18944:Q6_K",
      "152064x3584:Q6_K",  "4096x5376:Q4_K",    "21504x5376:Q4_K",   "5376x21504:Q4_K",  "5376x21504:Q6_K",
      "262144x5376:Q6_K",  "4096x4096:Q8_0",    "14336x4096:Q8_0"};
  std::vector<int> variants{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  std::vector<int> rows{1};
  int reps = 100, warmup = 10;
  bool warm = false;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  return out;
}

int64_t parse_int(const std::string& s, const std::string& what) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) swrun::fail(what + ": '" + s + "' is not an integer");
  return v;
}

GgmlType parse_type(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const swrun::GgmlTypeInfo info = swrun::ggml_type_info(id);
    if (info.name && strcasecmp(info.name, name.c_str()) == 0) return GgmlType(id);
  }
  swrun::fail("--shapes: unknown type '" + name + "'");
}

Shape parse_shape(const std::string& s) {
  const size_t x = s.find('x'), colon = s.find(':');
  if (x == std::string::npos || colon == std::string::npos || colon < x)
    swrun::fail("--shapes: '" + s + "' is not NOUTxCOLS:TYPE");
  Shape sh{parse_int(s.substr(0, x), "--shapes"), parse_int(s.substr(x + 1, colon - x - 1), "--shapes"),
           parse_type(s.substr(colon + 1))};
  if (sh.n_out < 1 || !swrun::cuda::gemv_quant_supported(sh.type, sh.cols))
    swrun::fail("--shapes: '" + s + "': rows of " + std::to_string(sh.cols) + " elements of this type are not " +
                "supported (whole blocks, a type with a block decoder)");
  return sh;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--warm") {
      o.warm = true;
      continue;
    }
    if (i + 1 >= argc) swrun::fail(a + ": needs a value (or unknown flag)");
    const std::string v = argv[++i];
    if (a == "--shapes") {
      o.shapes = split(v, ',');
    } else if (a == "--variants" || a == "--rows") {
      std::vector<int>& dst = a == "--variants" ? o.variants : o.rows;
      dst.clear();
      for (const std::string& item : split(v, ',')) dst.push_back(int(parse_int(item, a)));
    } else if (a == "--reps") {
      o.reps = int(parse_int(v, a));
    } else if (a == "--warmup") {
      o.warmup = int(parse_int(v, a));
    } else {
      swrun::fail("unknown flag " + a);
    }
  }
  for (int v : o.variants)
    if (v < 1 || v > swrun::cuda::kGemvVariantCount)
      swrun::fail("--variants: " + std::to_string(v) + " (1.." + std::to_string(swrun::cuda::kGemvVariantCount) + ")");
  for (int r : o.rows)
    if (r < 1 || r > swrun::cuda::kGemvQuantMaxRows)
      swrun::fail("--rows: " + std::to_string(r) + " (1.." + std::to_string(swrun::cuda::kGemvQuantMaxRows) + ")");
  if (o.reps < 1 || o.warmup < 0) swrun::fail("--reps must be >= 1 and --warmup >= 0");
  return o;
}

// want[r * n_out + n] = x[r] . W[n] and mag the sum of |products|, in fp64 over the CPU-dequantized rows,
// on every core.
void reference(const Shape& sh, const std::vector<uint8_t>& bytes, const std::vector<float>& x, int x_rows,
               std::vector<double>& want, std::vector<double>& mag) {
  want.assign(size_t(x_rows * sh.n_out), 0);
  mag.assign(want.size(), 0);
  const size_t row_bytes = swrun::ggml_row_bytes(swrun::ggml_type_info(uint32_t(sh.type)), sh.cols);
  const int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::vector<float> w(size_t(sh.cols));
      for (int64_t n = t; n < sh.n_out; n += threads) {
        swrun::dequantize_row(sh.type, bytes.data() + n * row_bytes, w.data(), sh.cols);
        for (int r = 0; r < x_rows; ++r) {
          double sum = 0, m = 0;
          for (int64_t i = 0; i < sh.cols; ++i) {
            const double p = double(x[r * sh.cols + i]) * w[i];
            sum += p;
            m += std::fabs(p);
          }
          want[r * sh.n_out + n] = sum;
          mag[r * sh.n_out + n] = m;
        }
      }
    });
  for (auto& th : pool) th.join();
}

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { check_cuda(cudaMalloc(&ptr, bytes), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

void run_variant(int variant, const Shape& sh, const void* w, const float* x, float* out, int x_rows,
                 cudaStream_t stream) {
  swrun::cuda::gemv_quant_variant(GemvVariant(variant), sh.type, w, x, out, x_rows, sh.n_out, sh.cols, stream);
}

// The device's copy bandwidth: read + write bytes per second of a 1 GiB device-to-device copy, median of 20.
double copy_bytes_per_second(cudaStream_t stream) {
  constexpr size_t kBytes = size_t(1) << 30;
  DeviceBuffer a(kBytes), b(kBytes);
  check_cuda(cudaMemsetAsync(a.ptr, 1, kBytes, stream), "memset");
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "event");
  check_cuda(cudaEventCreate(&stop), "event");
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    check_cuda(cudaEventRecord(start, stream), "event");
    check_cuda(cudaMemcpyAsync(b.ptr, a.ptr, kBytes, cudaMemcpyDeviceToDevice, stream), "copy");
    check_cuda(cudaEventRecord(stop, stream), "event");
    check_cuda(cudaEventSynchronize(stop), "copy");
    float t = 0;
    check_cuda(cudaEventElapsedTime(&t, start, stop), "elapsed");
    if (i >= 3) ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return 2.0 * double(kBytes) / (ms[ms.size() / 2] * 1e-3);
}

int run(const Options& o) {
  int failures = 0;
  cudaStream_t stream;
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "device properties");
  const double copy_bw = copy_bytes_per_second(stream);
  std::printf("device %s, %d SMs, L2 %.0f MiB; copy bandwidth %.0f GB/s (the %% column); weights %s\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1048576.0, copy_bw / 1e9,
              o.warm ? "warm (one copy)" : "cold (copies rotated past 4x L2)");
  std::printf("| shape | type | MiB | x rows | default | variant | us | GB/s | %% copy | max err | check |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |\n");
  std::fflush(stdout);
  for (const std::string& spec : o.shapes) {
    const Shape sh = parse_shape(spec);
    const int64_t blocks = sh.n_out * sh.cols / swrun::ggml_type_info(uint32_t(sh.type)).block_elems;
    const std::vector<uint8_t> bytes = swrun::testing::random_blocks(sh.type, blocks, swrun::testing::rng());
    const size_t padded = swrun::cuda::gemv_quant_padded_bytes(bytes.size());
    const size_t copies = o.warm ? 1 : std::max<size_t>(1, (4 * size_t(prop.l2CacheSize) + padded - 1) / padded);
    DeviceBuffer wd(padded * copies);
    for (size_t c = 0; c < copies; ++c)
      check_cuda(cudaMemcpy(static_cast<uint8_t*>(wd.ptr) + c * padded, bytes.data(), bytes.size(),
                            cudaMemcpyHostToDevice),
                 "upload weights");
    size_t launch = 0;  // which copy the next timed launch reads
    auto copy_at = [&](size_t i) {
      return static_cast<const void*>(static_cast<uint8_t*>(wd.ptr) + (i % copies) * padded);
    };
    for (int x_rows : o.rows) {
      std::normal_distribution<float> normal;
      std::vector<float> x(size_t(x_rows * sh.cols));
      for (float& v : x) v = normal(swrun::testing::rng());
      std::vector<double> want, mag;
      reference(sh, bytes, x, x_rows, want, mag);
      DeviceBuffer xd(x.size() * 4), od(want.size() * 4);
      check_cuda(cudaMemcpy(xd.ptr, x.data(), x.size() * 4, cudaMemcpyHostToDevice), "upload x");
      const auto* xp = static_cast<const float*>(xd.ptr);
      auto* op = static_cast<float*>(od.ptr);
      const int picked = int(swrun::cuda::gemv_quant_pick_variant(sh.type, sh.n_out, sh.cols, x_rows));
      for (int variant : o.variants) {
        if (!swrun::cuda::gemv_variant_applies(GemvVariant(variant), sh.type, sh.cols, x_rows)) continue;
        std::vector<float> first(want.size()), last(want.size());
        check_cuda(cudaMemsetAsync(op, 0xFF, want.size() * 4, stream), "poison");
        run_variant(variant, sh, wd.ptr, xp, op, x_rows, stream);
        check_cuda(cudaMemcpyAsync(first.data(), op, want.size() * 4, cudaMemcpyDeviceToHost, stream), "download");
        check_cuda(cudaStreamSynchronize(stream), "first run");
        double worst = 0;
        int64_t bad = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          const double err = std::fabs(first[i] - want[i]) / (mag[i] + 1e-30);
          if (!(err <= kTolerance)) ++bad;  // NaN (a row never written) counts as bad
          if (!(err <= worst)) worst = err;
        }
        for (int i = 0; i < o.warmup; ++i) run_variant(variant, sh, copy_at(launch++), xp, op, x_rows, stream);
        std::vector<cudaEvent_t> events(2 * size_t(o.reps));
        for (auto& e : events) check_cuda(cudaEventCreate(&e), "event");
        for (int i = 0; i < o.reps; ++i) {
          check_cuda(cudaEventRecord(events[2 * i], stream), "event");
          run_variant(variant, sh, copy_at(launch++), xp, op, x_rows, stream);
          check_cuda(cudaEventRecord(events[2 * i + 1], stream), "event");
        }
        check_cuda(cudaMemcpyAsync(last.data(), op, want.size() * 4, cudaMemcpyDeviceToHost, stream), "download");
        check_cuda(cudaStreamSynchronize(stream), "timed runs");
        std::vector<float> ms(size_t(o.reps));
        for (int i = 0; i < o.reps; ++i)
          check_cuda(cudaEventElapsedTime(&ms[i], events[2 * i], events[2 * i + 1]), "elapsed");
        for (auto& e : events) cudaEventDestroy(e);
        std::nth_element(ms.begin(), ms.begin() + o.reps / 2, ms.end());
        const double us = ms[o.reps / 2] * 1e3;
        const double bytes_per_s = double(bytes.size()) / (us * 1e-6);
        const bool deterministic = std::memcmp(first.data(), last.data(), first.size() * 4) == 0;
        std::string check = bad == 0 && deterministic ? "ok" : "FAIL";
        if (bad) check += " (" + std::to_string(bad) + " wrong)";
        if (!deterministic) check += " (not deterministic)";
        failures += check != "ok";
        std::printf("| %lldx%lld | %s | %.1f | %d | %d | %d %s | %.2f | %.0f | %.1f | %.1e | %s |\n",
                    static_cast<long long>(sh.n_out), static_cast<long long>(sh.cols),
                    swrun::ggml_type_name(uint32_t(sh.type)).c_str(), bytes.size() / 1048576.0, x_rows, picked,
                    variant, swrun::cuda::gemv_variant_name(GemvVariant(variant)), us, bytes_per_s / 1e9,
                    100 * bytes_per_s / copy_bw, worst, check.c_str());
        std::fflush(stdout);
      }
    }
  }
  cudaStreamDestroy(stream);
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse_args(argc, argv);
    for (const std::string& s : o.shapes) parse_shape(s);  // bad shapes fail before any GPU work
  } catch (const swrun::Error& e) {
    std::fprintf(stderr, "gemv_bench: %s\n", e.what());
    return 2;
  }
  try {
    return run(o);
  } catch (const swrun::Error& e) {
    std::fprintf(stderr, "gemv_bench: %s\n", e.what());
    return 1;
  }
}
