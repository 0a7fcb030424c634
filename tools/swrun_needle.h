// `swrun needle`: needle-in-a-haystack retrieval per attention spec (engine/needle.h), grid on stdout, trials as
// CSV/JSON and an SVG heatmap.
#pragma once
#include <string>

namespace CLI {
class App;
}

namespace swrun {

class NeedleCommand {
 public:
  explicit NeedleCommand(CLI::App& app);  // registers the subcommand
  bool chosen() const;
  int run() const;

 private:
  CLI::App* command_;
  std::string model_, haystack_file_, backend_ = "auto", attn_ = "model";
  std::string lengths_ = "1024,4096", depths_ = "0,0.25,0.5,0.75,1", csv_, json_, svg_;
  int needles_ = 3, ubatch_ = 0, threads_ = 0;
  uint64_t seed_ = 1;
};

}  // namespace swrun
