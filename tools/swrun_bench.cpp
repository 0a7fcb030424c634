#include "tools/swrun_bench.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "models/model.h"
#include "engine/bench.h"
#include "engine/bench_report.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"
#include "tools/cli_backend.h"

namespace swrun {

CLI::App* add_bench_subcommand(CLI::App& app, BenchCli& cli) {
  CLI::App* cmd = app.add_subcommand("bench", "prefill and decode speed in llama-bench's terms (ppN, tgN, @ dN)");
  cmd->add_option("-m,--model", cli.model, "GGUF model file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-p,--n-prompt", cli.prompts, "prefill test sizes, comma-separated (0: none)")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", cli.gens, "decode test sizes, comma-separated (0: none)")->capture_default_str();
  cmd->add_option("-d,--n-depth", cli.depths, "context depths the tests run at, comma-separated")
      ->capture_default_str();
  cmd->add_option("-r,--repetitions", cli.repetitions, "timed repetitions per test")->capture_default_str();
  cmd->add_option("--attn", cli.attn, "attention specs to compare, comma-separated (model, dense, sliding:512, "
                  "a per-layer list, ...)")->capture_default_str();
  cmd->add_option("-b,--ubatch", cli.ubatch, "prefill chunk size in tokens (0: on CUDA the largest power of two from 32768 down to 512 that the memory plan fits, with activations + workspace <= 2.5 GiB; 512 on CPU)")
      ->capture_default_str();
  cmd->add_option("-o,--output", cli.output, "output format: md, csv or json")->capture_default_str();
  cmd->add_option("--backend", cli.backend, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  cmd->add_option("-t,--threads", cli.threads, "CPU threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--no-graph", cli.no_graph, "decode with plain launches instead of a CUDA graph");
  return cmd;
}

int run_bench_subcommand(const BenchCli& cli) {
  BenchOptions opt;
  opt.tests = plan_tests(parse_count_list("-p", cli.prompts), parse_count_list("-n", cli.gens),
                         parse_count_list("-d", cli.depths));
  opt.attn_specs = split_attn_specs(cli.attn);
  for (const std::string& spec : opt.attn_specs) AttnSpec::parse(spec);  // bad specs fail before the model loads
  const BenchFormat format = parse_bench_format(cli.output);
  if (cli.repetitions < 1) fail("-r must be >= 1");
  if (cli.ubatch < 0) fail("-b must be >= 1 (or 0 for the backend's default)");
  if (cli.threads < 0) fail("-t must be >= 0");
  opt.repetitions = cli.repetitions;
  opt.use_graph = !cli.no_graph;

  const double t_load = now_ms();
  BackendStart start(cli.backend, cli.threads);  // beside the file and tokenizer set-up
  auto file = GgufFile::open(cli.model);
  auto tok = Tokenizer::from_gguf(*file);
  auto backend = start.get(nullptr);
  // The memory plan of the whole run: the largest context and prefill of any test, each spec in turn on one backend.
  MemoryJob job;
  job.ctx = 1;
  job.longest_prefill = 1;
  for (const BenchTest& t : opt.tests) {
    job.ctx = std::max(job.ctx, t.n_depth + t.n_prompt + t.n_gen);
    job.longest_prefill = std::max({job.longest_prefill, t.n_prompt, t.n_depth});
  }
  job.specs.clear();
  for (const std::string& spec : opt.attn_specs) job.specs.push_back(AttnSpec::parse(spec));
  job.ctx_flag = "";  // the tests' sizes set the context
  opt.ubatch = choose_ubatch(*backend, *file, cli.ubatch, job);
  auto model = load_model(*file, *backend, AttnSpec::parse(opt.attn_specs[0]), bench_max_batch(opt));
  backend->finish_uploads();
  const double load_ms = now_ms() - t_load;

  BenchReport report;
  report.model = describe_model(*file);
  report.backend = backend->name() == "cuda" ? "CUDA" : "CPU";
  report.device = backend->device_name();
  // The CPU backend's rule for -t 0 (all cores); on CUDA every layer runs on the GPU.
  report.n_threads = backend->name() == "cpu" ? (cli.threads > 0 ? cli.threads : omp_get_max_threads()) : 0;
  report.n_gpu_layers = backend->name() == "cuda" ? model->config().n_layer : 0;
  report.n_ubatch = opt.ubatch;
  report.ubatch_given = cli.ubatch > 0;
  report.use_graph = opt.use_graph;
  report.load_ms = load_ms;

  // One line rewritten in place on a terminal; one line per test otherwise (logs stay short).
  const bool tty = isatty(STDERR_FILENO);
  struct ClearProgressLine {  // before the table, and when a test fails (the error then starts its own line)
    bool tty;
    ~ClearProgressLine() { if (tty) std::fputs("\r\033[K", stderr); }
  };
  {
    ClearProgressLine clear{tty};
    report.rows = run_bench(*model, *tok, opt, [&](const BenchProgress& p) {
      const std::string where = "swrun bench: " + std::to_string(p.index) + "/" + std::to_string(p.count) + " " +
                                test_name(p.test) + " [attn " + p.attn + "]";
      if (tty && p.repetition > 0)
        std::fprintf(stderr, "\r\033[K%s: %s %d/%d", where.c_str(), p.phase, p.repetition, p.repetitions);
      else if (tty)
        std::fprintf(stderr, "\r\033[K%s: %s", where.c_str(), p.phase);
      else if (p.repetition == 0)
        std::fprintf(stderr, "%s: warm-up + %d repetitions\n", where.c_str(), p.repetitions);
    });
  }
  // Written only now that every test has run: an error above leaves no half table on stdout.
  std::fputs(render(report, format).c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace swrun
