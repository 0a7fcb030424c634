// Runs a token-id list through a GGUF model and writes the logits of every position as raw float32 [n, vocab]:
// the C++ side of the comparison against the independent Python reference (tests/reference/check_logits.py).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/common.h"

namespace {

std::vector<int32_t> parse_tokens(const std::string& text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > INT32_MAX)
      swrun::fail("--tokens: '" + item + "' is not a token id (expected e.g. 2,818,5279)");
    ids.push_back(static_cast<int32_t>(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

void write_raw(const std::string& path, const std::vector<float>& values) {
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (!out) swrun::fail("cannot open " + path + " for writing");
  const size_t written = std::fwrite(values.data(), sizeof(float), values.size(), out);
  if (std::fclose(out) != 0 || written != values.size()) swrun::fail("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"swrun_logits: logits of every position of a token-id list, as raw float32 [n, vocab]"};
  std::string model_path, tokens_text, out_path, attn = "model", backend_name = "cpu";
  int ubatch = 0, threads = 0;
  app.add_option("-m,--model", model_path, "GGUF model")->required();
  app.add_option("--tokens", tokens_text, "comma-separated token ids, e.g. 2,818,5279")->required();
  app.add_option("--out", out_path, "output file (raw float32, row-major [n, vocab])")->required();
  app.add_option("--attn", attn, "attention spec: model | dense | sliding[:W] | per-layer list");
  app.add_option("--backend", backend_name, "cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--ubatch", ubatch, "tokens per forward call (0 = all at once; 1 = token-by-token decode)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    const std::vector<int32_t> tokens = parse_tokens(tokens_text);
    const int n = static_cast<int>(tokens.size());
    const int batch = ubatch > 0 && ubatch < n ? ubatch : n;

    auto file = swrun::GgufFile::open(model_path);
    auto backend = backend_name == "cuda" ? swrun::make_cuda_backend() : swrun::make_cpu_backend(threads);
    auto model = swrun::load_model(*file, *backend, swrun::AttnSpec::parse(attn), batch);
    const int vocab = model->config().vocab;
    for (int32_t id : tokens)
      if (id >= vocab) swrun::fail("--tokens: id " + std::to_string(id) + " is outside the vocabulary of " +
                                   std::to_string(vocab));
    model->init_kv(n, batch);

    std::vector<float> logits(static_cast<size_t>(n) * vocab);
    for (int pos = 0; pos < n; pos += batch) {
      const int count = std::min(batch, n - pos);
      model->forward(tokens.data() + pos, pos, count, swrun::LogitsMode::All,
                     logits.data() + static_cast<size_t>(pos) * vocab);
    }
    write_raw(out_path, logits);
    std::fprintf(stderr, "swrun_logits: %d positions x %d logits -> %s\n", n, vocab, out_path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "swrun_logits: %s\n", e.what());
    return 1;
  }
  return 0;
}
