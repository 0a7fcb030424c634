#include "tools/swrun_perplexity.h"

#include <CLI/CLI.hpp>

#include <cstdio>

#include "engine/perplexity.h"
#include "engine/perplexity_specs.h"
#include "models/model.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"
#include "tools/cli_attention.h"
#include "tools/cli_backend.h"
#include "tools/cli_files.h"

namespace swrun {
namespace {

// The text as llama-perplexity's -f reads it: the file's bytes less one trailing newline.
std::string read_text(const std::string& path) {
  std::string text = read_whole_file(path, "text file");
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

struct FileCloser {
  FILE* f;
  ~FileCloser() {
    if (f) std::fclose(f);
  }
};

}  // namespace

PerplexityCommand::PerplexityCommand(CLI::App& app) {
  command_ = app.add_subcommand(
      "perplexity", "perplexity of a model over a text, and KL divergence against a base file (llama-perplexity's "
                    "method, output and --kl-divergence-base format)");
  command_->add_option("-m,--model", model_, "GGUF model file")->required()->check(CLI::ExistingFile);
  command_->add_option("-f,--file", text_file_, "text file (one trailing newline is dropped, as llama.cpp's -f)");
  command_->add_option("-c,--ctx-size", ctx_, "tokens per chunk (llama-perplexity's -c; with --kl-divergence: the "
                                              "base file's, checked when given)")->capture_default_str();
  command_->add_option("--chunks", chunks_, "score at most N chunks (-1: all)")->capture_default_str();
  command_->add_option("-b,--ubatch", ubatch_, "tokens per forward call (0: the backend's default, at most -c)")
      ->capture_default_str();
  command_->add_option("--attn", attn_, "attention per layer, as for a run (model | dense | sliding[:W] | list); "
                                        "several specs, comma-separated, run over the same chunks and are reported "
                                        "side by side, the first as the base of the others when no base file is read")
      ->capture_default_str();
  command_->add_option("--backend", backend_, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  command_->add_option("-t,--threads", threads_, "CPU threads (0: all cores)")->capture_default_str();
  command_->add_option("--cache-type-k", cache_type_k_, "KV cache type for K (-ctk), as for a run (f32, f16, bf16, "
                                                       "q8_0, ...; default: the backend's own)");
  command_->add_option("--cache-type-v", cache_type_v_, "KV cache type for V (-ctv, as -ctk)");
  command_->add_option("--kl-divergence-base", kl_base_,
                       "without --kl-divergence: write the log-probabilities of every scored token to this file "
                       "(llama.cpp's format); with it: the base file to compare against");
  command_->add_flag("--kl-divergence", kl_divergence_,
                     "KL divergence (and llama-perplexity's other statistics) against --kl-divergence-base");
}

bool PerplexityCommand::chosen() const { return command_->parsed(); }

int PerplexityCommand::run() const {
  const bool ctx_given = command_->count("--ctx-size") > 0;
  if (ctx_ < 8) fail("perplexity: -c must be at least 8 (got " + std::to_string(ctx_) + ")");
  if (chunks_ == 0 || chunks_ < -1) fail("perplexity: --chunks must be >= 1 (or -1: all)");
  if (ubatch_ < 0) fail("perplexity: -b/--ubatch must be >= 1 (or 0 for the backend's default)");
  if (threads_ < 0) fail("perplexity: -t must be >= 0");
  if (kl_divergence_ && kl_base_.empty()) fail("perplexity: --kl-divergence needs --kl-divergence-base FILE");
  if (!kl_divergence_ && text_file_.empty()) fail("perplexity: give the text with -f FILE");
  const std::vector<std::string> specs = split_attn_specs(attn_);
  std::vector<AttnSpec> parsed;
  for (const std::string& spec : specs) parsed.push_back(AttnSpec::parse(spec));  // bad specs fail before the load

  auto file = GgufFile::open(model_);
  auto tok = Tokenizer::from_gguf(*file);
  const int32_t bos = tok->add_bos() ? tok->bos() : -1;

  // The tokens: the text's, or with --kl-divergence the base file's (the text, when given, must give the same).
  std::vector<int32_t> tokens;
  if (!text_file_.empty()) tokens = tok->encode(read_text(text_file_), tok->add_bos());
  KlBase base;
  FileCloser in{nullptr};
  int n_ctx = ctx_;
  if (kl_divergence_) {
    in.f = std::fopen(kl_base_.c_str(), "rb");
    if (!in.f) fail("cannot read KL-divergence base file '" + kl_base_ + "'");
    base = read_kl_base_header(in.f, kl_base_);
    if (ctx_given && uint32_t(ctx_) != base.n_ctx)
      fail(kl_base_ + " was computed with -c " + std::to_string(base.n_ctx) + ", not " + std::to_string(ctx_));
    n_ctx = static_cast<int>(base.n_ctx);
    if (!text_file_.empty()) {
      const bool same = tokens.size() >= base.tokens.size() &&
                        std::equal(base.tokens.begin(), base.tokens.end(), tokens.begin());
      if (!same)
        fail(text_file_ + " does not tokenize to the tokens of " + kl_base_ +
             " with this model's vocabulary (a different text or vocabulary)");
    }
  }

  const KvTypes kv_types = parse_kv_types(cache_type_k_, cache_type_v_);
  auto backend = make_backend(backend_, threads_);
  MemoryJob job;
  job.kv_types = kv_types;
  job.ctx = n_ctx;
  job.longest_prefill = n_ctx;
  job.min_ctx = n_ctx;
  job.specs = parsed;
  job.all_logits = true;
  job.base_rows = specs.size() > 1 || !kl_base_.empty();
  job.shared_kv = true;  // the specs take turns over one set of caches (init_kv_for_specs below)
  const int ubatch = std::min(choose_ubatch(*backend, *file, ubatch_, job), n_ctx);
  auto model = load_model(*file, *backend, parsed[0], ubatch);
  if (n_ctx > model->config().ctx_train)
    std::fprintf(stderr, "perplexity: warning: model was trained on only %d context tokens (%d specified)\n",
                 model->config().ctx_train, n_ctx);
  for (size_t s = 0; s < specs.size(); ++s) {  // a spec the model cannot take fails here, before any chunk
    model->set_attention(parsed[s]);
    std::fprintf(stderr, "perplexity: attn %s\n", specs[s].c_str());
    print_attention_table(model->config());
  }
  model->set_kv_types(kv_types);
  model->init_kv_for_specs(n_ctx, ubatch, parsed);  // once: the specs take turns over the same caches
  std::fprintf(stderr, "perplexity: %s, backend %s, attention %s, %zu tokens\n", model_.c_str(),
               backend->name().c_str(), attn_.c_str(), kl_divergence_ ? base.tokens.size() : tokens.size());

  PerplexityOptions opt;
  opt.n_ctx = n_ctx;
  opt.n_chunks = chunks_;
  opt.ubatch = ubatch;
  opt.kl_base = kl_base_;
  opt.kl_divergence = kl_divergence_;
  if (specs.size() > 1) {
    const auto results = run_perplexity_specs(*model, specs, tokens, bos, opt, kl_divergence_ ? &base : nullptr, in.f);
    print_spec_report(results, kl_divergence_ ? kl_base_ : "", stdout);
  } else if (kl_divergence_) {
    run_kl_divergence(*model, base, in.f, bos, opt);
  } else {
    run_perplexity(*model, tokens, bos, opt);
  }
  return 0;
}

}  // namespace swrun
