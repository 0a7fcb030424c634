#include "tools/swrun_needle.h"

#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdio>

#include "engine/needle.h"
#include "engine/needle_report.h"
#include "models/model.h"
#include "engine/bench.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "engine/report.h"
#include "runtime/tokenizer.h"
#include "tools/cli_attention.h"
#include "tools/cli_backend.h"
#include "tools/cli_files.h"

namespace swrun {
namespace {

// --depths: comma-separated fractions in [0, 1].
std::vector<double> parse_depths(const std::string& text) {
  std::vector<double> depths;
  size_t start = 0;
  while (true) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    double value = -1;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || !(value >= 0 && value <= 1))
      fail("needle: bad --depths '" + text + "': '" + item + "' is not a fraction in [0, 1]");
    depths.push_back(value);
    if (comma == text.size()) return depths;
    start = comma + 1;
  }
}

// Fails now, before the run, when an output file could not be written at its end.
void check_writable(const std::string& path) {
  if (path.empty()) return;
  const std::string probe = path + ".tmp";
  FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) fail("needle: cannot write '" + path + "'");
  std::fclose(f);
  std::remove(probe.c_str());
}

std::string minutes_seconds(double ms) {
  const long s = std::lround(ms / 1e3);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

}  // namespace

NeedleCommand::NeedleCommand(CLI::App& app) {
  command_ = app.add_subcommand("needle", "needle-in-a-haystack retrieval per attention spec: a fact planted at each "
                                          "depth of a haystack of each length, asked for and scored by exact match");
  command_->add_option("-m,--model", model_, "GGUF model file")->required()->check(CLI::ExistingFile);
  command_->add_option("--lengths", lengths_, "prompt lengths in tokens, comma-separated")->capture_default_str();
  command_->add_option("--depths", depths_, "needle depths, fractions of the haystack in [0, 1], comma-separated")
      ->capture_default_str();
  command_->add_option("--needles", needles_, "needles per cell (own key, number and depth jitter each)")
      ->capture_default_str();
  command_->add_option("--attn", attn_, "attention specs to compare, comma-separated (model, dense, sliding:512, "
                                        "a per-layer list, ...)")->capture_default_str();
  command_->add_option("-f,--file", haystack_file_, "haystack text, repeated and cut to length (default: built-in "
                                                    "prose)");
  command_->add_option("--csv", csv_, "write every trial as CSV");
  command_->add_option("--json", json_, "write the cells and every trial as JSON");
  command_->add_option("--svg", svg_, "write the heatmap (depth x length, one panel per spec) as SVG");
  command_->add_option("--seed", seed_, "seed of the keys, numbers and depth jitter")->capture_default_str();
  command_->add_option("-b,--ubatch", ubatch_, "prefill chunk in tokens (0: the backend's default)")
      ->capture_default_str();
  command_->add_option("--backend", backend_, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  command_->add_option("-t,--threads", threads_, "CPU threads (0: all cores)")->capture_default_str();
}

bool NeedleCommand::chosen() const { return command_->parsed(); }

int NeedleCommand::run() const {
  // Every flag is checked before the model loads: a bad one costs nothing and leaves no file behind.
  const std::vector<int> lengths = parse_count_list("--lengths", lengths_);
  const std::vector<double> depths = parse_depths(depths_);
  if (needles_ < 1) fail("needle: --needles must be >= 1");
  if (ubatch_ < 0) fail("needle: -b/--ubatch must be >= 1 (or 0 for the backend's default)");
  if (threads_ < 0) fail("needle: -t must be >= 0");
  const std::vector<std::string> specs = split_attn_specs(attn_);
  std::vector<AttnSpec> parsed;
  for (const std::string& spec : specs) parsed.push_back(AttnSpec::parse(spec));
  for (const std::string* path : {&csv_, &json_, &svg_}) check_writable(*path);

  auto file = GgufFile::open(model_);
  auto tok = Tokenizer::from_gguf(*file);
  const NeedlePrompts prompts(*tok, haystack_file_.empty() ? builtin_haystack()
                                                           : read_whole_file(haystack_file_, "haystack file"));
  const std::vector<NeedlePlan> plans = prompts.plan(lengths, depths, needles_, seed_);

  NeedleOptions opt;
  const int longest = *std::max_element(lengths.begin(), lengths.end());
  auto backend = make_backend(backend_, threads_);
  MemoryJob job;
  job.ctx = longest + opt.answer_tokens;
  job.longest_prefill = longest;
  job.min_ctx = job.ctx;
  job.specs = parsed;
  opt.ubatch = std::min(choose_ubatch(*backend, *file, ubatch_, job), longest);
  auto model = load_model(*file, *backend, parsed[0], opt.ubatch);
  if (job.ctx > model->config().ctx_train)
    std::fprintf(stderr, "needle: note: prompts of %d tokens are beyond the model's training context %d\n", longest,
                 model->config().ctx_train);
  for (size_t s = 0; s < specs.size(); ++s) {  // a spec the model cannot take fails here, before any trial
    model->set_attention(parsed[s]);
    std::fprintf(stderr, "needle: attn %s\n", specs[s].c_str());
    print_attention_table(model->config());
  }
  std::fprintf(stderr, "needle: %s, backend %s, %zu trials per spec (%zu lengths x %zu depths x %d needles)\n",
               model_.c_str(), backend->name().c_str(), plans.size(), lengths.size(), depths.size(), needles_);

  NeedleReport report;
  report.model = model_.substr(model_.find_last_of('/') + 1);
  report.specs = specs;
  report.lengths = lengths;
  report.depths = depths;
  report.needles = needles_;
  report.trials = run_needle(*model, *tok, prompts, plans, specs, opt, [](const NeedleProgress& p) {
    const NeedleTrial& t = *p.last;
    const double eta = p.elapsed_ms / p.tokens_done * (p.tokens_total - p.tokens_done);
    std::fprintf(stderr, "needle: %d/%d [attn %s] length %d depth %.2f #%d: %s (answer \"%s\", %.1f s), ETA %s\n",
                 p.done, p.total, t.attn.c_str(), t.plan.length, t.plan.depth, t.plan.needle + 1,
                 t.found ? "found" : "missed", t.answer.c_str(), t.ms / 1e3, minutes_seconds(eta).c_str());
  });

  std::fputs(needle_grid_text(report).c_str(), stdout);
  std::fflush(stdout);
  if (!csv_.empty()) write_report(csv_, needle_csv(report));
  if (!json_.empty()) write_report(json_, needle_json(report));
  if (!svg_.empty()) write_report(svg_, needle_svg(report));
  return 0;
}

}  // namespace swrun
