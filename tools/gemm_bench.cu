// gemm_bench: the prefill projections' GEMMs (activations [M x K] bf16 against a weight [N x K] bf16, fp32
// accumulation) through cuBLAS, one row per shape x M x variant: checked, then timed.
//
//   gemm_bench [--shapes NxK,...] [--rows M,...] [--reps R] [--warmup W]
//
// Variants: 1 = cublasGemmEx with an fp32 output (what CudaBackend::gemm_bf16 runs), 2 = the same with a bf16
// output (half the bytes written). Check: the output is poisoned (NaN) first, then 512 sampled entries are compared
// with an fp64 dot of the same bf16 inputs and must be within 1e-2 (bf16 output) or 1e-5 (fp32) of the sum of
// |products|. Timing: W warm-up launches, then R launches each between two CUDA events; the median. TFLOP/s counts
// 2*M*N*K; GB/s counts the inputs read once and the output written once.
// Exit status: 1 when a row fails its check, 2 on bad arguments.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"

namespace {

using swrun::cuda::check_cublas;
using swrun::cuda::check_cuda;

struct Shape {
  int n, k;
};

struct Options {
  // Gemma 3 270M: q, k/v, q+k+v, attention output, gate (or up), gate+up, down.
  std::vector<Shape> shapes{{1024, 640}, {256, 640}, {1536, 640}, {640, 1024}, {2048, 640}, {4096, 640}, {640, 2048}};
  std::vector<int> rows{4096, 8192, 16384, 32768};
  int reps = 50, warmup = 5;
};

bool parse_ints(const std::string& s, std::vector<int>* out) {
  out->clear();
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end || v <= 0 || v > (1 << 20)) return false;
    out->push_back(int(v));
  }
  return !out->empty();
}

bool parse_shapes(const std::string& s, std::vector<Shape>* out) {
  out->clear();
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    Shape sh{};
    char x = 0;
    std::stringstream one(item);
    if (!(one >> sh.n >> x >> sh.k) || x != 'x' || sh.n <= 0 || sh.k <= 0 || !one.eof()) return false;
    out->push_back(sh);
  }
  return !out->empty();
}

std::vector<__nv_bfloat16> random_bf16(size_t n, std::mt19937& rng) {
  std::vector<__nv_bfloat16> v(n);  // uniform in [-1, 1): cheap enough for 67M-element inputs
  for (auto& e : v) e = __float2bfloat16(float(rng() >> 16) / 32768.f - 1.f);
  return v;
}

float median(std::vector<float> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    bool ok = has_value;
    std::vector<int> one;
    if (a == "--shapes" && has_value) ok = parse_shapes(argv[++i], &o.shapes);
    else if (a == "--rows" && has_value) ok = parse_ints(argv[++i], &o.rows);
    else if (a == "--reps" && has_value) ok = parse_ints(argv[++i], &one) && (o.reps = one[0], true);
    else if (a == "--warmup" && has_value) ok = parse_ints(argv[++i], &one) && (o.warmup = one[0], true);
    else ok = false;
    if (!ok) {
      std::fprintf(stderr, "gemm_bench: bad argument '%s' (--shapes NxK,... --rows M,... --reps R --warmup W)\n",
                   a.c_str());
      return 2;
    }
  }
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "device properties");
  cudaStream_t stream;
  check_cuda(cudaStreamCreate(&stream), "stream");
  cublasHandle_t cublas;
  check_cublas(cublasCreate(&cublas), "cublas");
  check_cublas(cublasSetStream(cublas, stream), "cublas stream");

  const uint32_t seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::printf("gemm_bench on %s, seed %u, median of %d after %d warm-up\n\n", prop.name, seed, o.reps, o.warmup);
  std::printf("| N x K | M | variant | ms | TFLOP/s | GB/s | max err/scale |\n|---|---|---|---|---|---|---|\n");
  bool all_ok = true;
  for (const Shape& sh : o.shapes) {
    for (int m : o.rows) {
      const size_t x_elems = size_t(m) * sh.k, w_elems = size_t(sh.n) * sh.k, o_elems = size_t(m) * sh.n;
      const auto x = random_bf16(x_elems, rng), w = random_bf16(w_elems, rng);
      __nv_bfloat16 *dx, *dw;
      void* dout;
      check_cuda(cudaMalloc(&dx, x_elems * 2), "x");
      check_cuda(cudaMalloc(&dw, w_elems * 2), "w");
      check_cuda(cudaMalloc(&dout, o_elems * 4), "out");
      check_cuda(cudaMemcpy(dx, x.data(), x_elems * 2, cudaMemcpyHostToDevice), "x upload");
      check_cuda(cudaMemcpy(dw, w.data(), w_elems * 2, cudaMemcpyHostToDevice), "w upload");
      for (int variant : {1, 2}) {
        const bool out16 = variant == 2;
        const cudaDataType out_type = out16 ? CUDA_R_16BF : CUDA_R_32F;
        const float alpha = 1.f, beta = 0.f;
        auto launch = [&] {
          check_cublas(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, sh.n, m, sh.k, &alpha, dw, CUDA_R_16BF, sh.k,
                                    dx, CUDA_R_16BF, sh.k, &beta, dout, out_type, sh.n, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT),
                       "gemm");
        };
        check_cuda(cudaMemset(dout, 0xff, o_elems * 4), "poison");
        launch();
        check_cuda(cudaStreamSynchronize(stream), "gemm");
        std::vector<float> got(o_elems);
        if (out16) {
          std::vector<__nv_bfloat16> g16(o_elems);
          check_cuda(cudaMemcpy(g16.data(), dout, o_elems * 2, cudaMemcpyDeviceToHost), "read");
          for (size_t i = 0; i < o_elems; ++i) got[i] = __bfloat162float(g16[i]);
        } else {
          check_cuda(cudaMemcpy(got.data(), dout, o_elems * 4, cudaMemcpyDeviceToHost), "read");
        }
        double worst = 0;
        std::uniform_int_distribution<size_t> pick(0, o_elems - 1);
        for (int s = 0; s < 512; ++s) {
          const size_t e = s == 0 ? 0 : s == 1 ? o_elems - 1 : pick(rng);
          const size_t r = e / sh.n, c = e % sh.n;
          double dot = 0, scale = 0;
          for (int i = 0; i < sh.k; ++i) {
            const double p = double(__bfloat162float(x[r * sh.k + i])) * double(__bfloat162float(w[c * sh.k + i]));
            dot += p;
            scale += std::fabs(p);
          }
          const double err = std::fabs(double(got[e]) - dot) / scale;
          worst = std::isfinite(err) ? std::max(worst, err) : INFINITY;
        }
        const bool ok = worst <= (out16 ? 1e-2 : 1e-5);
        all_ok &= ok;
        for (int i = 0; i < o.warmup; ++i) launch();
        std::vector<cudaEvent_t> events(2 * size_t(o.reps));
        for (auto& e : events) check_cuda(cudaEventCreate(&e), "event");
        for (int i = 0; i < o.reps; ++i) {
          check_cuda(cudaEventRecord(events[2 * i], stream), "event");
          launch();
          check_cuda(cudaEventRecord(events[2 * i + 1], stream), "event");
        }
        check_cuda(cudaStreamSynchronize(stream), "timed runs");
        std::vector<float> ms(o.reps);
        for (int i = 0; i < o.reps; ++i)
          check_cuda(cudaEventElapsedTime(&ms[i], events[2 * i], events[2 * i + 1]), "elapsed");
        for (auto& e : events) cudaEventDestroy(e);
        const double t = median(ms);
        const double flops = 2.0 * m * sh.n * sh.k;
        const double bytes = double(x_elems + w_elems) * 2 + double(o_elems) * (out16 ? 2 : 4);
        std::printf("| %dx%d | %d | %d (%s out) | %.4f | %.1f | %.0f | %.2e%s |\n", sh.n, sh.k, m, variant,
                    out16 ? "bf16" : "fp32", t, flops / t * 1e-9, bytes / t * 1e-6, worst, ok ? "" : " FAIL");
        std::fflush(stdout);
      }
      cudaFree(dx);
      cudaFree(dw);
      cudaFree(dout);
    }
  }
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
  if (!all_ok) std::fprintf(stderr, "gemm_bench: a row failed its check\n");
  return all_ok ? 0 : 1;
}
