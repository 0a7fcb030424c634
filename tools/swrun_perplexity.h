// `swrun perplexity`: llama-perplexity's perplexity and KL divergence over a text file (engine/perplexity.h);
// several --attn specs side by side (engine/perplexity_specs.h).
#pragma once
#include <string>

namespace CLI {
class App;
}

namespace swrun {

class PerplexityCommand {
 public:
  explicit PerplexityCommand(CLI::App& app);  // registers the subcommand
  bool chosen() const;
  int run() const;

 private:
  CLI::App* command_;
  std::string model_, text_file_, backend_ = "auto", attn_ = "model", kl_base_;
  std::string cache_type_k_, cache_type_v_;  // -ctk / -ctv
  int ctx_ = 512, chunks_ = -1, ubatch_ = 0, threads_ = 0;
  bool kl_divergence_ = false;
};

}  // namespace swrun
