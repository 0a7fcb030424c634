// logprob_bench: perplexity's per-row kernels (kernels/logprob) on `rows` rows of `vocab` fp32 logits, one line per
// vocabulary x variant: checked, then timed.
//
//   logprob_bench [--vocab V,...] [--rows R] [--reps N] [--warmup W]
//
// Variants: score (-log p(target) and the top token: Backend::score_rows without a base), score+base (with the KL
// against a base row: score_rows with one), compress (a KL base row per row: compress_rows). Check: outputs
// poisoned first, then every row against runtime/logprob.cpp (nll and kld within 1e-5 relative, tokens and codes
// equal). Timing: W warm-up launches, then N launches each between two CUDA events; the median. GB/s counts the
// logits read once, the base rows read or written once. Exit status: 1 when a check fails, 2 on bad arguments.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/logprob/logprob.cuh"
#include "runtime/logprob.h"

namespace {

using swrun::RowScore;
using swrun::cuda::check_cuda;

bool parse_ints(const std::string& s, std::vector<int>* out) {
  out->clear();
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      const int v = std::stoi(item);
      if (v < 1) return false;
      out->push_back(v);
    } catch (...) {
      return false;
    }
  }
  return !out->empty();
}

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class T>
T* device_array(size_t n) {
  void* p = nullptr;
  check_cuda(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

bool near(double got, double want) { return std::fabs(got - want) <= 1e-5 * (1 + std::fabs(want)); }

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> vocabs{262144, 151936, 32000};
  int rows = 512, reps = 20, warmup = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    std::vector<int> one;
    bool ok = false;
    if (a == "--vocab" && has_value) ok = parse_ints(argv[++i], &vocabs);
    else if (a == "--rows" && has_value) ok = parse_ints(argv[++i], &one) && (rows = one[0], true);
    else if (a == "--reps" && has_value) ok = parse_ints(argv[++i], &one) && (reps = one[0], true);
    else if (a == "--warmup" && has_value) ok = parse_ints(argv[++i], &one) && (warmup = one[0], true);
    if (!ok) {
      std::fprintf(stderr, "logprob_bench: bad or incomplete argument '%s'\n", a.c_str());
      return 2;
    }
  }
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const unsigned seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  std::printf("logprob_bench on %s, seed %u, %d rows, median of %d after %d warm-up\n\n", prop.name, seed, rows, reps,
              warmup);
  std::printf("%8s  %-11s  %10s  %8s  %s\n", "vocab", "variant", "ms", "GB/s", "check");
  cudaStream_t stream;
  check_cuda(cudaStreamCreate(&stream), "stream");
  bool all_ok = true;
  for (const int vocab : vocabs) {
    const size_t width = size_t(swrun::kl_row_width(vocab)), cells = size_t(rows) * vocab;
    std::vector<float> logits(cells);
    std::normal_distribution<float> normal(0.f, 3.f);
    for (float& x : logits) x = normal(rng);
    std::vector<int32_t> targets(rows);
    for (int32_t& t : targets) t = int32_t(rng() % uint64_t(vocab));
    std::vector<uint16_t> base(size_t(rows) * width);
    std::vector<float> perturbed(vocab);
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < vocab; ++i) perturbed[i] = logits[size_t(r) * vocab + i] + 0.3f * normal(rng);
      swrun::compress_row(vocab, perturbed.data(), targets[r], base.data() + r * width);
    }
    float* x = device_array<float>(cells);
    int32_t* t = device_array<int32_t>(rows);
    uint16_t* b = device_array<uint16_t>(size_t(rows) * width);
    uint16_t* out_rows = device_array<uint16_t>(size_t(rows) * width);
    RowScore* scores = device_array<RowScore>(rows);
    double* nll = device_array<double>(rows);
    check_cuda(cudaMemcpy(x, logits.data(), cells * 4, cudaMemcpyHostToDevice), "upload");
    check_cuda(cudaMemcpy(t, targets.data(), size_t(rows) * 4, cudaMemcpyHostToDevice), "upload");
    check_cuda(cudaMemcpy(b, base.data(), base.size() * 2, cudaMemcpyHostToDevice), "upload");

    struct Variant {
      const char* name;
      std::function<void()> launch;
      double bytes;
    };
    const Variant variants[] = {
        {"score", [&] { swrun::cuda::score_rows_f32(x, rows, vocab, t, nullptr, scores, stream); }, cells * 4.0},
        {"score+base", [&] { swrun::cuda::score_rows_f32(x, rows, vocab, t, b, scores, stream); },
         cells * 4.0 + base.size() * 2.0},
        {"compress", [&] { swrun::cuda::compress_rows_f32(x, rows, vocab, t, out_rows, nll, stream); },
         cells * 4.0 + base.size() * 2.0},
    };
    for (const Variant& v : variants) {
      check_cuda(cudaMemset(scores, 0xFF, size_t(rows) * sizeof(RowScore)), "poison");
      check_cuda(cudaMemset(out_rows, 0xFF, base.size() * 2), "poison");
      check_cuda(cudaMemset(nll, 0xFF, size_t(rows) * 8), "poison");
      v.launch();
      check_cuda(cudaStreamSynchronize(stream), v.name);
      int bad = 0;
      const bool compress = std::string(v.name) == "compress", with_base = std::string(v.name) == "score+base";
      if (compress) {
        std::vector<uint16_t> got(base.size()), want(width);
        std::vector<double> got_nll(rows);
        check_cuda(cudaMemcpy(got.data(), out_rows, got.size() * 2, cudaMemcpyDeviceToHost), "download");
        check_cuda(cudaMemcpy(got_nll.data(), nll, size_t(rows) * 8, cudaMemcpyDeviceToHost), "download");
        for (int r = 0; r < rows; ++r) {
          const double want_nll = swrun::compress_row(vocab, logits.data() + size_t(r) * vocab, targets[r], want.data());
          bad += !near(got_nll[r], want_nll) || !std::equal(want.begin() + 4, want.end(), got.begin() + r * width + 4);
        }
      } else {
        std::vector<RowScore> got(rows);
        check_cuda(cudaMemcpy(got.data(), scores, got.size() * sizeof(RowScore), cudaMemcpyDeviceToHost), "download");
        for (int r = 0; r < rows; ++r) {
          const RowScore want = swrun::score_row(vocab, logits.data() + size_t(r) * vocab, targets[r],
                                                 with_base ? base.data() + r * width : nullptr);
          bad += !near(got[r].nll, want.nll) || got[r].top != want.top ||
                 (with_base && (!near(got[r].kld, want.kld) || got[r].top_base != want.top_base));
        }
      }
      for (int i = 0; i < warmup; ++i) v.launch();
      std::vector<cudaEvent_t> events(2 * size_t(reps));
      for (auto& e : events) check_cuda(cudaEventCreate(&e), "event");
      for (int i = 0; i < reps; ++i) {
        check_cuda(cudaEventRecord(events[2 * i], stream), "event");
        v.launch();
        check_cuda(cudaEventRecord(events[2 * i + 1], stream), "event");
      }
      check_cuda(cudaStreamSynchronize(stream), v.name);
      std::vector<float> ms(reps);
      for (int i = 0; i < reps; ++i) check_cuda(cudaEventElapsedTime(&ms[i], events[2 * i], events[2 * i + 1]), "elapsed");
      for (auto& e : events) cudaEventDestroy(e);
      const double t_ms = median(ms);
      std::printf("%8d  %-11s  %10.4f  %8.1f  %s\n", vocab, v.name, t_ms, v.bytes / (t_ms * 1e6),
                  bad ? ("FAIL (" + std::to_string(bad) + " rows)").c_str() : "ok");
      all_ok = all_ok && bad == 0;
    }
    for (void* p : {static_cast<void*>(x), static_cast<void*>(t), static_cast<void*>(b), static_cast<void*>(out_rows),
                    static_cast<void*>(scores), static_cast<void*>(nll)})
      cudaFree(p);
  }
  return all_ok ? 0 : 1;
}
