// make_layout_model: a full-size GGUF of a published model layout with random weights, for timing (`swrun bench`,
// llama-bench): the real hyperparameters, tensor names, shapes and (for q4_k_m) llama.cpp's Q4_K_M type mix, a
// real tokenizer copied from --vocab and padded to the layout's vocabulary. Weights are tiled from a few MiB of
// valid random blocks per type, and the file is written by several threads at once (tools/layout_models.h).
//   make_layout_model --layout qwen2.5-7b --type q4_k_m --vocab qwen2-vocab.gguf -o qwen7b.gguf
//   make_layout_model --list
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/gguf_vocab_copy.h"
#include "runtime/gguf_writer.h"
#include "tools/layout_models.h"

namespace {

using namespace swrun::layout;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_cancel{false};
void on_signal(int) { g_cancel = true; }

uint64_t data_bytes(const std::vector<TensorSpec>& tensors) {
  uint64_t n = 0;
  for (const TensorSpec& t : tensors) n += t.bytes();
  return n;
}

void list_layouts() {
  std::printf("%-13s %-7s %6s %5s %9s %4s %6s %7s %7s %12s  %s\n", "layout", "arch", "layers", "dim", "heads/kv",
              "head", "ffn", "vocab", "ctx", "q4_k_m GB", "source");
  for (const Layout& l : layouts()) {
    const std::string heads = std::to_string(l.n_head) + "/" + std::to_string(l.n_head_kv);
    std::printf("%-13s %-7s %6d %5d %9s %4d %6d %7d %7d %12.2f  %s\n", l.name, l.arch, l.n_layer, l.dim,
                heads.c_str(), l.head_dim, l.ffn, l.vocab, l.ctx, data_bytes(layout_tensors(l, Mix::Q4_K_M)) / 1e9,
                l.source);
  }
  std::printf("(sizes: tensor data; the header with the vocabulary adds a few MB)\n");
}

std::string known_layouts() {
  std::string s;
  for (const Layout& l : layouts()) s += (s.empty() ? "" : ", ") + std::string(l.name);
  return s;
}

// Progress on stderr: one line rewritten in place on a terminal, a line every few seconds otherwise.
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO)), start_(Clock::now()), last_(start_) {}
  void update(uint64_t written, uint64_t total) {
    const auto now = Clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    if (written < total && since < (tty_ ? 0.25 : 2.0)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "%s  %.2f / %.2f GB (%3.0f%%)  %.0f MB/s%s", tty_ ? "\r" : "", written / 1e9, total / 1e9,
                 total ? 100.0 * written / total : 100.0, s > 0 ? written / 1e6 / s : 0.0, tty_ ? "" : "\n");
    if (tty_ && written == total) std::fputc('\n', stderr);
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  bool tty_;
  Clock::time_point start_, last_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"make_layout_model: a full-size random-weight GGUF of a published model layout"};
  std::string layout_name, type = "q4_k_m", vocab_path, out_path;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  uint64_t seed = 1;
  bool list = false, vocab_only = false;
  app.add_option("--layout", layout_name, "layout name (--list shows them)");
  app.add_option("--type", type, "tensor type mix: q4_k_m (llama.cpp's Q4_K_M rule) | q8_0 | f16");
  app.add_option("--vocab", vocab_path, "GGUF whose tokenizer.* keys the model takes (a model or a vocab-only file)");
  app.add_option("-o,--out", out_path, "output GGUF path (written as a temporary file, renamed when complete)");
  app.add_option("--threads", threads, "writer threads (default: every core)");
  app.add_option("--seed", seed, "seed of the random blocks");
  app.add_flag("--list", list, "print the layouts and exit");
  app.add_flag("--vocab-only", vocab_only, "write the layout's keys and the vocabulary only, no tensors");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "make_layout_model: %s\n", e.what());
    return 2;
  }
  if (list) {
    list_layouts();
    return 0;
  }

  try {
    if (layout_name.empty()) swrun::fail("--layout NAME is needed (one of: " + known_layouts() + ")");
    const Layout* l = find_layout(layout_name);
    if (!l) swrun::fail("unknown layout '" + layout_name + "' (known: " + known_layouts() + ")");
    Mix mix;
    if (!parse_mix(type, &mix)) swrun::fail("unknown --type '" + type + "' (q4_k_m, q8_0 or f16)");
    if (vocab_path.empty())
      swrun::fail("a vocabulary is needed: --vocab FILE.gguf (a GGUF with tokenizer.* keys; "
                  "scripts/make-layout-vocabs.sh prepares small ones)");
    if (out_path.empty()) swrun::fail("an output path is needed: -o OUT.gguf");
    if (threads < 1) swrun::fail("--threads must be at least 1");

    swrun::GgufWriter w;
    set_layout_keys(w, *l, mix);
    {
      auto vocab = swrun::GgufFile::open(vocab_path);
      swrun::copy_tokenizer(*vocab, w, l->vocab);
    }
    if (vocab_only) {
      w.write(out_path);
      std::fprintf(stderr, "make_layout_model: wrote %s: %s vocabulary only (%d tokens), %.2f MB\n",
                   out_path.c_str(), l->name, l->vocab, w.file_size() / 1e6);
      return 0;
    }
    const std::vector<TensorSpec> tensors = layout_tensors(*l, mix);
    const auto t0 = Clock::now();
    add_layout_tensors(w, *l, tensors, seed, threads);
    const double pool_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const uint64_t file_size = w.file_size();
    std::fprintf(stderr, "make_layout_model: %s %s: %zu tensors, %.2f GB -> %s (%d threads; blocks drawn in %.2f s)\n",
                 l->name, mix_name(mix), tensors.size(), file_size / 1e9, out_path.c_str(), threads, pool_s);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    Progress progress;
    swrun::GgufWriteOptions opt;
    opt.threads = threads;
    opt.cancel = &g_cancel;
    opt.progress = [&](uint64_t written, uint64_t total) { progress.update(written, total); };
    w.write(out_path, opt);
    const double s = progress.seconds();
    std::fprintf(stderr, "make_layout_model: wrote %s: %.2f GB in %.1f s (%.0f MB/s)\n", out_path.c_str(),
                 file_size / 1e9, s, file_size / 1e6 / s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_layout_model: %s\n", e.what());
    return g_cancel ? 130 : 1;
  }
  return 0;
}
