// `swrun tokenize`: text to token ids with a model's vocabulary, like llama.cpp's llama-tokenize. Needs only the
// tokenizer.ggml.* keys, so vocab-only GGUF files work.
#pragma once
#include <string>

namespace CLI {
class App;
}

namespace swrun {

class TokenizeCommand {
 public:
  explicit TokenizeCommand(CLI::App& app);  // registers the subcommand
  bool chosen() const;
  int run() const;

 private:
  CLI::App* command_;
  std::string model_, prompt_, prompt_file_;
  bool ids_only_ = false, no_bos_ = false, parse_special_ = false;
};

}  // namespace swrun
