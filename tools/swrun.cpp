// swrun: generate text from a GGUF model; `swrun inspect FILE` prints a GGUF file's metadata and tensors;
// `swrun bench` measures prefill and decode speed in llama-bench's terms (tools/swrun_bench.cpp).
// `swrun tokenize -m FILE -p TEXT` prints token ids (tools/swrun_tokenize.cpp). `swrun fit -m FILE -c CTX` prints the
// GPU memory plan of a run and whether it fits (tools/swrun_fit.cpp). `swrun perplexity -m FILE -f TEXT` is
// llama-perplexity's perplexity and KL divergence (tools/swrun_perplexity.cpp, engine/perplexity.cpp). `swrun needle`
// is the needle-in-a-haystack grid per attention spec (tools/swrun_needle.cpp, engine/needle.cpp).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <random>
#include <unistd.h>

#include "models/model.h"
#include "runtime/backend.h"
#include "runtime/common.h"
#include "engine/generate.h"
#include "runtime/gguf.h"
#include "runtime/load_log.h"
#include "engine/prefill_study.h"
#include "engine/prompt_fill.h"
#include "engine/report.h"
#include "runtime/tokenizer.h"
#include "tools/cli_attention.h"
#include "tools/cli_backend.h"
#include "tools/cli_files.h"
#include "tools/swrun_bench.h"
#include "tools/swrun_fit.h"
#include "tools/swrun_needle.h"
#include "tools/swrun_perplexity.h"
#include "tools/swrun_tokenize.h"

namespace swrun {
namespace {

struct Options {
  std::string model, prompt, prompt_file, backend = "auto", attn = "model";
  std::string cache_type_k, cache_type_v;  // -ctk / -ctv ("": the backend's own)
  int n_predict = 128, ctx = 0, ubatch = 0, threads = 0, top_k = 40;  // ubatch 0: per backend
  float temp = 0.8f, top_p = 0.95f;
  int64_t seed = -1;
  bool no_graph = false;
  bool verbose = false;  // -v: where the load time goes
  int64_t prompt_len = 0;  // 0: the prompt as given
  // --profile / --ab
  bool profile = false;
  bool ab = false;
  std::vector<std::string> ab_specs;
  int repeat = 3;
  std::string json_path, csv_path, svg_path;
};

std::unique_ptr<Backend> pick_backend(const Options& o) { return make_backend(o.backend, o.threads); }

void check_common(const Options& o) {
  if (o.prompt.empty() == o.prompt_file.empty()) fail("give exactly one of -p/--prompt or -f/--file");
  if (o.n_predict < 0) fail("-n must be >= 0");
  if (o.ubatch < 0) fail("--ubatch must be >= 1 (or 0 for the backend's default)");
  if (o.ctx < 0) fail("-c must be >= 0");
  if (o.prompt_len < 0) fail("--prompt-len must be >= 0");
  if (o.repeat < 1) fail("--repeat must be >= 1");
}

// The memory job of a run over `n_prompt` prompt tokens with a context of `ctx` (engine/memory_plan.h).
MemoryJob memory_job(int ctx, int n_prompt, std::vector<AttnSpec> specs) {
  MemoryJob job;
  job.ctx = ctx;
  job.longest_prefill = n_prompt;
  job.min_ctx = n_prompt;
  job.specs = std::move(specs);
  return job;
}

// ", KV cache K q8_0 / V f16" where -ctk / -ctv set a type, else "".
std::string kv_cache_note(const KvTypes& t) {
  if (!t.k && !t.v) return "";
  auto name = [](const std::optional<GgmlType>& type) { return type ? kv_type_name(*type) : std::string("default"); };
  return ", KV cache K " + name(t.k) + " / V " + name(t.v);
}

// The prompt's tokens: the text as encoded, or filled to --prompt-len tokens by repeating it.
std::vector<int32_t> prompt_tokens(const Options& o, const Tokenizer& tok) {
  const std::string text = o.prompt_file.empty() ? o.prompt : read_whole_file(o.prompt_file, "prompt file");
  std::vector<int32_t> ids = tok.encode(text, tok.add_bos());
  if (o.prompt_len > 0) ids = fill_prompt(ids, tok.add_bos() ? tok.bos() : -1, o.prompt_len);
  if (ids.empty()) fail("the prompt encodes to no tokens");
  return ids;
}

// Context for a job of n_prompt + n_predict tokens: -c when given (checked), else exactly what the job needs.
int context_for(const Options& o, int n_prompt, int n_predict) {
  int ctx = o.ctx ? o.ctx : n_prompt + n_predict;
  if (n_prompt > ctx)
    fail("prompt has " + std::to_string(n_prompt) + " tokens, longer than -c " + std::to_string(ctx));
  return ctx;
}

void note_context(int ctx, const ModelConfig& c) {
  if (ctx > c.ctx_train)
    std::fprintf(stderr, "swrun: note: context %d is beyond the model's training context %d\n", ctx, c.ctx_train);
}

void write_outputs(const Options& o, const std::function<std::string(ReportFormat)>& render_as) {
  if (!o.json_path.empty()) write_report(o.json_path, render_as(ReportFormat::Json));
  if (!o.csv_path.empty()) write_report(o.csv_path, render_as(ReportFormat::Csv));
  if (!o.svg_path.empty()) write_report(o.svg_path, render_as(ReportFormat::Svg));
}

// ", weights X on device (file Y)" where the backend holds its own copy of the weights.
std::string weights_line(const Backend& be, const GgufFile& f) {
  if (be.weight_bytes() == 0) return "";
  return ", weights " + human_bytes(static_cast<double>(be.weight_bytes())) + " on device (file " +
         human_bytes(static_cast<double>(f.file_size())) + ")";
}

// "253.0 MB": the size of what a load phase read or uploaded.
std::string megabytes(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", double(bytes) / 1e6);
  return text;
}

int run_generate(const Options& o) {
  check_common(o);
  const AttnSpec spec = AttnSpec::parse(o.attn);
  const KvTypes kv_types = parse_kv_types(o.cache_type_k, o.cache_type_v);
  // Load phases are always timed on the host clock (a few clock reads); only -v prints them and lets the backend
  // time its own split, which waits for the GPU at the end of each phase.
  LoadLog log;
  LoadLog* verbose_log = o.verbose ? &log : nullptr;
  const double t_load = now_ms();
  BackendStart start(o.backend, o.threads);  // beside the file and tokenizer phases below
  double t = t_load;
  auto phase_done = [&](const std::string& name, const std::string& detail) {
    const double now = now_ms();
    log.add(name, now - t, detail);
    t = now;
  };
  auto file = GgufFile::open(o.model);
  phase_done("gguf open", megabytes(file->file_size()) + ", " + std::to_string(file->tensors().size()) + " tensors");
  auto tok = Tokenizer::from_gguf(*file);
  phase_done("tokenizer", std::to_string(tok->vocab_size()) + " tokens");
  const std::vector<int32_t> prompt = prompt_tokens(o, *tok);
  const int n_prompt = static_cast<int>(prompt.size());
  phase_done("prompt encode", std::to_string(n_prompt) + " tokens");
  auto backend = start.get(verbose_log);
  char detail[160];
  std::snprintf(detail, sizeof detail, "%s (%s): set-up %.2f ms on its own thread, beside the phases above",
                backend->name().c_str(), backend->device_name().c_str(), start.setup_ms());
  phase_done("backend init (wait)", detail);
  const int ctx = context_for(o, n_prompt, o.n_predict);
  MemoryJob job = memory_job(ctx, n_prompt, {spec});
  job.kv_types = kv_types;
  const int ubatch = choose_ubatch(*backend, *file, o.ubatch, job);
  const int batch = std::min(ubatch, n_prompt);
  backend->attach_load_log(verbose_log);
  auto model = load_model(*file, *backend, spec, batch);
  if (o.verbose) backend->finish_uploads();
  backend->attach_load_log(nullptr);
  phase_done("weights", backend->weight_bytes() ? megabytes(backend->weight_bytes()) + " on the device"
                                                : "read in place from the file mapping");
  note_context(ctx, model->config());
  model->set_kv_types(kv_types);
  model->init_kv(ctx, batch);
  phase_done("KV cache", human_bytes(static_cast<double>(backend->kv_bytes())) + " for " + std::to_string(ctx) +
                             " tokens");
  GenerateOptions go;
  go.sampler = {o.temp, o.top_k, o.top_p,
                o.seed >= 0 ? static_cast<uint64_t>(o.seed) : static_cast<uint64_t>(std::random_device{}())};
  go.use_graph = !o.no_graph;
  // On a GPU the first calls load kernels, plan GEMMs and build the decode graph; done here, that is load time,
  // not time to first token or decode time.
  if (backend->name() == "cuda" && ctx > batch) warm_up(*model, batch, go.sampler, go.use_graph, verbose_log);
  else if (o.verbose)
    log.add("warm-up", 0, backend->name() == "cuda" ? "none: no room in the context" : "none on the CPU");
  const double load_ms = now_ms() - t_load;
  if (o.verbose) std::fputs(log.render(load_ms).c_str(), stderr);
  std::fprintf(stderr, "swrun: %s on %s (%s), prompt %d tokens, context %d, KV cache %s%s%s\n", o.model.c_str(),
               backend->name().c_str(), backend->device_name().c_str(), n_prompt, ctx,
               human_bytes(static_cast<double>(backend->kv_bytes())).c_str(), kv_cache_note(kv_types).c_str(),
               weights_line(*backend, *file).c_str());
  print_attention_table(model->config());

  go.n_predict = o.n_predict;
  go.ubatch = ubatch;
  go.progress = isatty(STDERR_FILENO);
  DetokenizeStream stream(*tok, /*at_text_start=*/false);
  const GenerateStats st = generate(*model, *tok, prompt, ctx, go, [&](int32_t id) {
    std::fputs(stream.push(id).c_str(), stdout);
    std::fflush(stdout);
  });
  std::fputs(stream.flush().c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "swrun: load %.0f ms | prompt %d tokens %.1f ms (%.1f tok/s) | generated %d tokens %.1f ms "
               "(%.1f tok/s%s) | ubatch %d | peak %s\n", load_ms, st.n_prompt, st.prompt_ms, st.prompt_tok_s(),
               st.n_generated, st.generate_ms, st.generate_tok_s(), st.graph_used ? ", CUDA graph" : "", ubatch,
               backend->peak_memory_bytes() ? human_bytes(double(backend->peak_memory_bytes())).c_str() : "n/a");
  return 0;
}

ProfileOptions profile_options(const Options& o, int ubatch, const std::string& spec_text) {
  ProfileOptions po;
  po.ubatch = ubatch;
  po.repeat = o.repeat;
  po.progress = isatty(STDERR_FILENO);
  po.model_path = o.model;
  po.attn_spec = spec_text;
  return po;
}

void print_overhead(const ProfileResult& r) {
  const double profiled = r.profile.prefill_ms();
  std::fprintf(stderr, "swrun: prefill median %.2f ms with op timers, %.2f ms without (%+.1f%%)\n", profiled,
               r.unprofiled_prefill_ms, 100.0 * (profiled / r.unprofiled_prefill_ms - 1.0));
}

int run_profile(const Options& o) {
  check_common(o);
  const AttnSpec spec = AttnSpec::parse(o.attn);
  const KvTypes kv_types = parse_kv_types(o.cache_type_k, o.cache_type_v);
  auto file = GgufFile::open(o.model);
  auto tok = Tokenizer::from_gguf(*file);
  const std::vector<int32_t> prompt = prompt_tokens(o, *tok);
  const int n = static_cast<int>(prompt.size());
  auto backend = pick_backend(o);
  const int ctx = context_for(o, n, 0);
  MemoryJob job = memory_job(ctx, n, {spec});
  job.kv_types = kv_types;
  const int ubatch = choose_ubatch(*backend, *file, o.ubatch, job);
  const int batch = std::min(ubatch, n);
  auto model = load_model(*file, *backend, spec, batch);
  note_context(ctx, model->config());
  model->set_kv_types(kv_types);
  model->init_kv(ctx, batch);
  print_attention_table(model->config());
  const ProfileResult r = profile_prefill(*model, prompt, profile_options(o, ubatch, o.attn));
  std::fputs(render(r.profile, ReportFormat::Table).c_str(), stdout);
  print_overhead(r);
  write_outputs(o, [&](ReportFormat f) { return render(r.profile, f); });
  return 0;
}

int run_ab(const Options& o) {
  check_common(o);
  const std::string text_a = o.ab_specs.size() > 0 ? o.ab_specs[0] : "dense";
  const std::string text_b = o.ab_specs.size() > 1 ? o.ab_specs[1] : "model";
  const AttnSpec spec_a = AttnSpec::parse(text_a), spec_b = AttnSpec::parse(text_b);
  // -ctk / -ctv apply to B: A keeps the backend's own caches, so the A/B shows what a cache type costs.
  const KvTypes kv_types_b = parse_kv_types(o.cache_type_k, o.cache_type_v);
  auto file = GgufFile::open(o.model);
  auto tok = Tokenizer::from_gguf(*file);
  const std::vector<int32_t> prompt = prompt_tokens(o, *tok);
  const int n = static_cast<int>(prompt.size());
  // Two backends so both configurations keep their KV caches while the quality pass walks the text once.
  auto backend_a = pick_backend(o), backend_b = pick_backend(o);
  const int ctx = context_for(o, n, o.n_predict);
  // Both models on the GPU at once, and the quality pass reads the logits of every position.
  MemoryJob job = memory_job(ctx, n, {spec_a, spec_b});
  job.side_by_side = true;
  job.all_logits = true;
  job.kv_types = kv_types_b;
  const int ubatch = choose_ubatch(*backend_a, *file, o.ubatch, job);
  const int batch = std::min(ubatch, n);
  auto model_a = load_model(*file, *backend_a, spec_a, batch);
  auto model_b = load_model(*file, *backend_b, spec_b, batch);
  note_context(ctx, model_a->config());
  model_a->init_kv(ctx, batch);
  model_b->set_kv_types(kv_types_b);
  model_b->init_kv(ctx, batch);
  std::fprintf(stderr, "A = %s\n", text_a.c_str());
  print_attention_table(model_a->config());
  std::fprintf(stderr, "B = %s%s\n", text_b.c_str(), kv_cache_note(kv_types_b).c_str());
  print_attention_table(model_b->config());
  AbReport report;
  const ProfileResult ra = profile_prefill(*model_a, prompt, profile_options(o, ubatch, text_a));
  const ProfileResult rb = profile_prefill(*model_b, prompt, profile_options(o, ubatch, text_b));
  report.a = ra.profile;
  report.b = rb.profile;
  report.quality = compare_quality(*model_a, *model_b, *tok, prompt, ubatch, o.n_predict, isatty(STDERR_FILENO));
  std::fputs(render(report, ReportFormat::Table).c_str(), stdout);
  write_outputs(o, [&](ReportFormat f) { return render(report, f); });
  return 0;
}

int run_inspect(const std::string& path) {
  auto file = GgufFile::open(path);
  print_gguf_summary(*file, stdout);
  // The layout as a run builds it (policies, head shapes, shared KV), when the file has weights; the CPU backend
  // reads them in place, so this costs no copy of the model.
  if (!file->tensors().empty()) {
    std::fputs("\n", stdout);
    try {
      auto be = make_cpu_backend(1);
      print_attention_table(load_model(*file, *be, AttnSpec::parse("model"), 1)->config(), stdout);
    } catch (const Error& e) {
      std::printf("layout: not available (%s)\n", e.what());
    }
  }
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
  app.add_option("-b,--ubatch", o.ubatch, "prefill chunk size in tokens (0: on CUDA the largest power of two from 32768 down to 512 that the memory plan fits, with activations + workspace <= 2.5 GiB; 512 on CPU)")->capture_default_str();
  app.add_option("-t,--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--cache-type-k", o.cache_type_k,
                 "KV cache type for K (-ctk): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 (default: the backend's own, CPU "
                 "f32, CUDA bf16; the CPU keeps f32 and rounds each stored row through the type; CUDA: bf16 only)");
  app.add_option("--cache-type-v", o.cache_type_v, "KV cache type for V (-ctv, as -ctk); with --ab both apply to B");
  app.add_flag("--no-graph", o.no_graph, "decode with plain launches instead of a CUDA graph");
  app.add_flag("-v,--verbose", o.verbose, "print where the load time goes, one line per phase (stderr; generation mode)");
  app.add_option("--prompt-len", o.prompt_len, "fill the prompt to N tokens by repeating its text");
  app.add_flag("--profile", o.profile, "profile a prefill of the prompt: per-layer, per-op times");
  CLI::Option* ab = app.add_option("--ab", o.ab_specs,
      "A/B two attention specs on the prompt, speed and quality (default: dense model)")->expected(0, 2);
  app.add_option("--repeat", o.repeat, "timed prefills for --profile/--ab (median)")->capture_default_str();
  app.add_option("--profile-json", o.json_path, "write the --profile/--ab report as JSON");
  app.add_option("--profile-csv", o.csv_path, "write the --profile/--ab report as CSV");
  app.add_option("--profile-svg", o.svg_path, "write the --profile/--ab report as an SVG chart");
  std::string inspect_path;
  CLI::App* inspect = app.add_subcommand("inspect", "print a GGUF file's metadata and tensor table");
  inspect->add_option("file", inspect_path, "GGUF file")->required()->check(CLI::ExistingFile);
  BenchCli bench_cli;
  CLI::App* bench = add_bench_subcommand(app, bench_cli);
  TokenizeCommand tokenize(app);
  FitCommand fit(app);
  PerplexityCommand perplexity(app);
  NeedleCommand needle(app);
  app.failure_message([](const CLI::App*, const CLI::Error& e) { return "swrun: error: " + std::string(e.what()) + "\n"; });
  // llama.cpp spells some flags with one dash and several letters, which CLI11 takes for bundled short flags.
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) {
    if (a == "-ctk") a = "--cache-type-k";
    if (a == "-ctv") a = "--cache-type-v";
  }
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  try {
    app.parse(argc, arg_ptrs.data());
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // `swrun fit` answers bad input with its own status, apart from "does not fit" (1).
    return code != 0 && argc > 1 && std::string(argv[1]) == "fit" ? FitCommand::kBadInput : code;
  }
  if (fit.chosen()) return fit.run();
  if (*inspect) return run_inspect(inspect_path);
  if (*bench) return run_bench_subcommand(bench_cli);
  if (tokenize.chosen()) return tokenize.run();
  if (perplexity.chosen()) return perplexity.run();
  if (needle.chosen()) return needle.run();
  if (o.model.empty()) fail("no model given (-m model.gguf); see --help");
  o.ab = ab->count() > 0;
  if (o.profile && o.ab) fail("--profile and --ab are separate modes; pick one");
  if (!o.profile && !o.ab && !(o.json_path.empty() && o.csv_path.empty() && o.svg_path.empty()))
    fail("--profile-json/--profile-csv/--profile-svg need --profile or --ab");
  if (o.profile) return run_profile(o);
  if (o.ab) return run_ab(o);
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
