// `swrun tokenize`: text to token ids with a model's vocabulary, like llama.cpp's llama-tokenize. Needs only the
// tokenizer.ggml.* keys, so vocab-only GGUF files work.
#pragma once
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace swrun {

class Tokenizer;

class TokenizeCommand {
 public:
  explicit TokenizeCommand(CLI::App& app);  // registers the subcommand
  bool chosen() const;
  int run() const;

 private:
  // Appends the ids of `text` (one line with --ids, else one line per token) to `out`.
  void print_tokens(const Tokenizer& tok, const std::string& text, std::string& out) const;

  CLI::App* command_;
  std::string model_, prompt_;
  std::vector<std::string> prompt_files_;
  bool ids_only_ = false, no_bos_ = false, parse_special_ = false;
};

}  // namespace swrun
