#include "engine/bench.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "runtime/common.h"
#include "engine/generate.h"
#include "runtime/tokenizer.h"

namespace swrun {

std::string test_name(const BenchTest& t) {
  std::string name = t.n_gen == 0 ? "pp" + std::to_string(t.n_prompt) : "tg" + std::to_string(t.n_gen);
  if (t.n_depth > 0) name += " @ d" + std::to_string(t.n_depth);
  return name;
}

std::vector<BenchTest> plan_tests(const std::vector<int>& prompts, const std::vector<int>& gens,
                                  const std::vector<int>& depths) {
  std::vector<BenchTest> tests;
  for (int depth : depths) {
    for (int n : prompts)
      if (n > 0) tests.push_back({n, 0, depth});
    for (int n : gens)
      if (n > 0) tests.push_back({0, n, depth});
  }
  if (tests.empty()) fail("no test to run: every -p and -n size is 0");
  return tests;
}

std::vector<int> parse_count_list(const std::string& flag, const std::string& text) {
  std::vector<int> counts;
  size_t start = 0;
  while (true) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int value = 0;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || value < 0)
      fail("bad " + flag + " list '" + text + "': '" + item + "' is not a non-negative token count");
    counts.push_back(value);
    if (comma == text.size()) return counts;
    start = comma + 1;
  }
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return 0;
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double stddev_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double sq = 0;
  for (double x : v) sq += (x - m) * (x - m);
  return std::sqrt(sq / static_cast<double>(v.size() - 1));
}

std::vector<double> BenchRow::samples_ts() const {
  const double tokens = test.n_prompt + test.n_gen;
  std::vector<double> ts;
  for (uint64_t ns : samples_ns) ts.push_back(ns > 0 ? tokens * 1e9 / static_cast<double>(ns) : 0);
  return ts;
}

namespace {

// llama.cpp's names for general.file_type (its llama_ftype enum), as llama-bench prints them in the model column.
std::string file_type_name(int64_t file_type) {
  switch (file_type) {
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 21: return "Q2_K - Small";
    case 32: return "BF16";
    default: return "file type " + std::to_string(file_type);
  }
}

// Parameter count as a size label when the file has none: 268435456 -> "268M".
std::string size_label_of(uint64_t n_params) {
  char buf[32];
  if (n_params >= 1000000000ULL) std::snprintf(buf, sizeof buf, "%.1fB", n_params / 1e9);
  else if (n_params >= 1000000ULL) std::snprintf(buf, sizeof buf, "%.0fM", n_params / 1e6);
  else std::snprintf(buf, sizeof buf, "%.0fK", n_params / 1e3);
  return buf;
}

}  // namespace

BenchModel describe_model(const GgufFile& file) {
  BenchModel m;
  m.filename = file.path();
  for (const GgufTensor& t : file.tensors()) {
    m.size_bytes += t.nbytes;
    m.n_params += static_cast<uint64_t>(t.n_elements());
  }
  m.type = file.get_string("general.architecture") + " " +
           file.get_string("general.size_label", size_label_of(m.n_params));
  if (file.has("general.file_type")) m.type += " " + file_type_name(file.get_int("general.file_type"));
  return m;
}

namespace {

// Random token ids as llama-bench draws them, except ids that end generation (a runtime may treat them
// specially). A sequence that starts a prompt or a generation begins with BOS when the model adds one.
class RandomTokens {
 public:
  RandomTokens(const Tokenizer& tok, int vocab, uint64_t seed)
      : tok_(tok), vocab_(std::min(vocab, tok.vocab_size())), rng_(seed) {
    if (vocab_ < 1) fail("bench: the model has an empty vocabulary");
  }
  std::vector<int32_t> draw(int n) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    std::uniform_int_distribution<int32_t> pick(0, vocab_ - 1);
    for (int32_t& id : ids) {
      do id = pick(rng_);
      while (tok_.is_end_of_generation(id));
    }
    if (n > 0 && tok_.add_bos() && tok_.bos() >= 0) ids[0] = tok_.bos();
    return ids;
  }

 private:
  const Tokenizer& tok_;
  int32_t vocab_;
  std::mt19937_64 rng_;
};

}  // namespace

int bench_max_batch(const BenchOptions& opt) {
  int largest = 1;
  for (const BenchTest& t : opt.tests) largest = std::max({largest, t.n_prompt, t.n_depth});
  return std::min(largest, opt.ubatch);
}

std::vector<BenchRow> run_bench(Model& model, const Tokenizer& tok, const BenchOptions& opt,
                                const std::function<void(const BenchProgress&)>& progress) {
  std::vector<AttnSpec> specs;
  for (const std::string& text : opt.attn_specs) {
    specs.push_back(AttnSpec::parse(text));
    model.set_attention(specs.back());  // a spec the model cannot take fails now, before any test runs
  }
  RandomTokens random(tok, model.config().vocab, opt.seed);
  // tg steps are the decode steps `swrun --temp 0` runs: the backend's argmax, one id back per token.
  int32_t greedy_id = 0;
  float greedy_logit = 0.f;
  auto decode = [&](int32_t token, int32_t pos) {
    decode_step(model, token, pos, 1, opt.use_graph, &greedy_id, &greedy_logit);
  };
  const int max_batch = bench_max_batch(opt);

  std::vector<BenchRow> rows;
  const int count = static_cast<int>(specs.size() * opt.tests.size());
  for (size_t s = 0; s < specs.size(); ++s) {
    model.set_attention(specs[s]);
    for (const BenchTest& t : opt.tests) {
      BenchRow row{t, opt.attn_specs[s], {}, 0};
      auto report = [&](const char* phase, int rep) {
        progress({static_cast<int>(rows.size()) + 1, count, rep, opt.repetitions, t, row.attn, phase});
      };
      model.init_kv(t.n_depth + t.n_prompt + t.n_gen, max_batch);
      model.backend().reset_peak_memory();
      // Warm-up as llama-bench does it: the prefill, or one decode step (which also captures the CUDA graph).
      report("warm-up", 0);
      if (t.n_prompt > 0) prefill(model, random.draw(t.n_prompt), opt.ubatch, false);
      if (t.n_gen > 0) decode(random.draw(1)[0], 0);
      for (int rep = 1; rep <= opt.repetitions; ++rep) {
        // The depth is prefilled again every time: the test's own tokens overwrite sliding layers' ring slots.
        if (t.n_depth > 0) {
          report("depth", rep);
          prefill(model, random.draw(t.n_depth), opt.ubatch, false);
        }
        report("run", rep);
        const std::vector<int32_t> tokens = random.draw(t.n_prompt + t.n_gen);
        const double t0 = now_ms();
        if (t.n_prompt > 0) prefill(model, tokens, opt.ubatch, false, t.n_depth);
        for (int i = 0; i < t.n_gen; ++i) decode(tokens[i], t.n_depth + i);
        row.samples_ns.push_back(static_cast<uint64_t>(std::llround((now_ms() - t0) * 1e6)));
      }
      row.peak_memory_bytes = model.backend().peak_memory_bytes();
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

}  // namespace swrun
