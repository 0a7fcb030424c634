// `swrun fit -m MODEL [-c CTX] [-b UBATCH] [--attn SPEC] [--mem 24G] [--json]`: the device memory plan of a run
// (engine/memory_plan.h) and whether it fits. Reads only the file's header and tensor table: no GPU needed.
// Exit status 0 when it fits, 1 when it does not, 2 on bad input.
#pragma once
#include <string>

namespace CLI {
class App;
}

namespace swrun {

class FitCommand {
 public:
  explicit FitCommand(CLI::App& app);  // registers the subcommand
  bool chosen() const;
  int run() const;

  static constexpr int kFits = 0, kDoesNotFit = 1, kBadInput = 2;

 private:
  int plan_and_print() const;

  CLI::App* command_;
  std::string model_, attn_ = "model", mem_;
  int ctx_ = 4096;  // llama.cpp's default context for its tools (common_params::n_ctx); 0: the training context
  int ubatch_ = 0;  // 0: the default from the plan
  bool json_ = false;
};

}  // namespace swrun
