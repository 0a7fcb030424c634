// `swrun bench`: prefill and decode throughput in llama-bench's terms, so that the two tools' tables can be put
// side by side. A test is ppN (a prefill of N tokens, timed whole) or tgN (N decode steps of one token each), either
// from an empty context or after an untimed prefill of `depth` tokens ("tg128 @ d32768"). Tokens are random ids,
// nothing is sampled: every step feeds a fresh random id, as llama-bench does.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/gguf.h"

namespace swrun {

class Tokenizer;

struct BenchTest {
  int n_prompt = 0, n_gen = 0, n_depth = 0;  // exactly one of n_prompt, n_gen is non-zero
  bool operator==(const BenchTest&) const = default;
};

// llama-bench's test name: "pp512", "tg128", with " @ d32768" when the test runs at a depth.
std::string test_name(const BenchTest& t);

// llama-bench's order: for each depth, a prefill test per prompt size, then a decode test per generation size;
// sizes of 0 are skipped. Throws Error when no test is left.
std::vector<BenchTest> plan_tests(const std::vector<int>& prompts, const std::vector<int>& gens,
                                  const std::vector<int>& depths);

// A comma-separated list of non-negative token counts ("512,8192"); `flag` names it in the error.
std::vector<int> parse_count_list(const std::string& flag, const std::string& text);

// llama-bench's statistics: the mean and the sample standard deviation (n - 1; 0 for fewer than two values).
double mean_of(const std::vector<double>& v);
double stddev_of(const std::vector<double>& v);

// What llama-bench reports about the model: "gemma3 270M Q4_K - Medium", tensor bytes and parameters.
struct BenchModel {
  std::string filename, type;
  uint64_t size_bytes = 0, n_params = 0;
};
BenchModel describe_model(const GgufFile& file);

// One row: a test under one attention spec, with the time of every timed repetition.
struct BenchRow {
  BenchTest test;
  std::string attn;
  std::vector<uint64_t> samples_ns;
  size_t peak_memory_bytes = 0;  // device high-water mark during this test (0 on the CPU)
  std::vector<double> samples_ts() const;  // tokens/s of each repetition
  double avg_ts() const { return mean_of(samples_ts()); }
  double stddev_ts() const { return stddev_of(samples_ts()); }
};

// Everything a report prints: the rows plus what is common to all of them.
struct BenchReport {
  BenchModel model;
  std::string backend;  // "CPU" or "CUDA", as llama-bench names them
  std::string device;   // the backend's device name
  int n_threads = 0;    // CPU threads (CPU backend only)
  int n_gpu_layers = 0; // layers on the GPU (CUDA backend only)
  int n_ubatch = 0;
  bool ubatch_given = false;  // -b was given: the markdown table shows it, as llama-bench shows non-default flags
  bool use_graph = true;  // decode steps through Backend::run_captured
  // From the start of the load to the weights being on the device (GGUF parse, tokenizer, backend set-up, upload;
  // no warm-up: each test runs its own).
  double load_ms = 0;
  std::vector<BenchRow> rows;
};

struct BenchOptions {
  std::vector<BenchTest> tests;
  std::vector<std::string> attn_specs;
  int repetitions = 5;
  int ubatch = 512;
  bool use_graph = true;
  uint64_t seed = 1;
};

// Where a run is: test `index` of `count` (counting every test under every spec), and its phase
// ("warm-up", "depth", "run") with the repetition (1-based; 0 for the warm-up).
struct BenchProgress {
  int index, count, repetition, repetitions;
  const BenchTest& test;
  const std::string& attn;
  const char* phase;
};

// The largest batch a run prefills at once (a prefill chunk: at most ubatch, at most the largest prompt or depth).
int bench_max_batch(const BenchOptions& opt);

// Runs every test under every spec (specs outermost, as llama-bench loops its parameters) on a model loaded with
// max_batch >= bench_max_batch(opt). For each test: a context of depth + prompt + generation tokens, one
// warm-up run (not timed), then per repetition the depth prefill (not timed) and the timed test.
std::vector<BenchRow> run_bench(Model& model, const Tokenizer& tok, const BenchOptions& opt,
                                const std::function<void(const BenchProgress&)>& progress);

}  // namespace swrun
