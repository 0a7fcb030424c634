// swrun: generate text from a GGUF model; `swrun inspect FILE` prints a GGUF file's metadata and tensors.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <unistd.h>

#include "models/model.h"
#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/generate.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"

namespace swrun {
namespace {

struct Options {
  std::string model, prompt, prompt_file, backend = "auto", attn = "model";
  int n_predict = 128, ctx = 0, ubatch = 512, threads = 0, top_k = 40;
  float temp = 0.8f, top_p = 0.95f;
  int64_t seed = -1;
  bool no_graph = false;
};

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read prompt file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<Backend> pick_backend(const Options& o) {
  if (o.backend == "cpu") return make_cpu_backend(o.threads);
  if (o.backend == "cuda") return make_cuda_backend(0);
  if (cuda_device_available()) return make_cuda_backend(0);
  std::fprintf(stderr, "swrun: no CUDA device found, using the CPU backend\n");
  return make_cpu_backend(o.threads);
}

void print_attention_table(const ModelConfig& c) {
  std::fprintf(stderr, "attention per layer (%s, %d layers, %d q heads, %d kv heads, head_dim %d):\n",
               c.arch.c_str(), c.n_layer, c.n_head, c.n_head_kv, c.head_dim);
  std::fprintf(stderr, "  %-5s %-14s %-14s %s\n", "layer", "policy", "model declares", "rope base");
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerConfig& lc = c.layers[l];
    std::fprintf(stderr, "  %-5d %-14s %-14s %.0f\n", l, describe(lc.policy).c_str(), describe(lc.declared).c_str(),
                 lc.rope.freq_base);
  }
}

int run_generate(const Options& o) {
  if (o.prompt.empty() == o.prompt_file.empty()) fail("give exactly one of -p/--prompt or -f/--file");
  if (o.n_predict < 0) fail("-n must be >= 0");
  if (o.ubatch < 1) fail("--ubatch must be >= 1");
  if (o.ctx < 0) fail("-c must be >= 0");
  const AttnSpec spec = AttnSpec::parse(o.attn);
  const std::string text = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);

  const double t_load = now_ms();
  auto file = GgufFile::open(o.model);
  auto tok = Tokenizer::from_gguf(*file);
  const std::vector<int32_t> prompt = tok->encode(text, tok->add_bos());
  if (prompt.empty()) fail("the prompt encodes to no tokens");
  const int n_prompt = static_cast<int>(prompt.size());
  auto backend = pick_backend(o);
  const int batch = std::min(o.ubatch, n_prompt);
  auto model = load_model(*file, *backend, spec, batch);
  const ModelConfig& c = model->config();
  int ctx = o.ctx;
  if (ctx == 0) ctx = n_prompt + o.n_predict;  // sized to the job; -c to fix it
  if (n_prompt > ctx)
    fail("prompt has " + std::to_string(n_prompt) + " tokens, longer than -c " + std::to_string(ctx));
  if (ctx > c.ctx_train)
    std::fprintf(stderr, "swrun: note: context %d is beyond the model's training context %d\n", ctx, c.ctx_train);
  model->init_kv(ctx, batch);
  const double load_ms = now_ms() - t_load;
  std::fprintf(stderr, "swrun: %s on %s (%s), prompt %d tokens, context %d, KV cache %s\n", o.model.c_str(),
               backend->name().c_str(), backend->device_name().c_str(), n_prompt, ctx,
               human_bytes(static_cast<double>(backend->kv_bytes())).c_str());
  print_attention_table(c);

  GenerateOptions go;
  go.n_predict = o.n_predict;
  go.ubatch = o.ubatch;
  go.use_graph = !o.no_graph;
  go.progress = isatty(STDERR_FILENO);
  go.sampler = {o.temp, o.top_k, o.top_p,
                o.seed >= 0 ? static_cast<uint64_t>(o.seed) : static_cast<uint64_t>(std::random_device{}())};
  DetokenizeStream stream(*tok, /*at_text_start=*/false);
  const GenerateStats st = generate(*model, *tok, prompt, ctx, go, [&](int32_t id) {
    std::fputs(stream.push(id).c_str(), stdout);
    std::fflush(stdout);
  });
  std::fputs(stream.flush().c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "swrun: load %.0f ms | prompt %d tokens %.1f ms (%.1f tok/s) | generated %d tokens %.1f ms "
               "(%.1f tok/s%s)\n", load_ms, st.n_prompt, st.prompt_ms, st.prompt_tok_s(), st.n_generated,
               st.generate_ms, st.generate_tok_s(), st.graph_used ? ", CUDA graph" : "");
  return 0;
}

int run_inspect(const std::string& path) {
  auto file = GgufFile::open(path);
  print_gguf_summary(*file, stdout);
  return 0;
}

int main_impl(int argc, char** argv) {
  CLI::App app{"swrun: decoder-only LLM runtime with fused dense and sliding-window attention"};
  app.set_version_flag("--version", "swrun 0.1");
  Options o;
  app.add_option("-m,--model", o.model, "GGUF model file")->check(CLI::ExistingFile);
  app.add_option("-p,--prompt", o.prompt, "prompt text");
  app.add_option("-f,--file", o.prompt_file, "read the prompt from a file");
  app.add_option("-n,--n-predict", o.n_predict, "tokens to generate")->capture_default_str();
  app.add_option("-c,--ctx-size", o.ctx, "context size in tokens (0: prompt + n-predict)")->capture_default_str();
  app.add_option("--temp", o.temp, "temperature (0 = greedy)")->capture_default_str();
  app.add_option("--top-k", o.top_k, "top-k sampling (0 = off)")->capture_default_str();
  app.add_option("--top-p", o.top_p, "top-p sampling (1 = off)")->capture_default_str();
  app.add_option("--seed", o.seed, "sampling seed (-1: random)")->capture_default_str();
  app.add_option("--backend", o.backend, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  app.add_option("--attn", o.attn,
                 "attention per layer: model | dense | dense-naive | sliding[:W] | list like "
                 "0-4:sliding:512,5:dense,6-:sliding:1024")->capture_default_str();
  app.add_option("-b,--ubatch", o.ubatch, "prefill chunk size in tokens")->capture_default_str();
  app.add_option("-t,--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_flag("--no-graph", o.no_graph, "decode with plain launches instead of a CUDA graph");
  std::string inspect_path;
  CLI::App* inspect = app.add_subcommand("inspect", "print a GGUF file's metadata and tensor table");
  inspect->add_option("file", inspect_path, "GGUF file")->required()->check(CLI::ExistingFile);
  app.failure_message([](const CLI::App*, const CLI::Error& e) { return "swrun: error: " + std::string(e.what()) + "\n"; });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*inspect) return run_inspect(inspect_path);
  if (o.model.empty()) fail("no model given (-m model.gguf); see --help");
  return run_generate(o);
}

}  // namespace
}  // namespace swrun

int main(int argc, char** argv) {
  try {
    return swrun::main_impl(argc, argv);
  } catch (const swrun::Error& e) {
    std::fprintf(stderr, "swrun: error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "swrun: error: out of host memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "swrun: error: %s\n", e.what());
  }
  return 1;
}
