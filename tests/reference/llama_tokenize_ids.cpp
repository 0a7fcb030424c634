// The llama.cpp tokenizer as an oracle: `llama_tokenize_ids VOCAB.gguf [--parse-special] FILE...` prints one line
// of ids per file, no BOS/EOS (llama.cpp's add_special = false). Built against llama.cpp from PyPI's
// llama-cpp-python source package by scripts/build-llama-oracle.sh (the library of scripts/build-llama-cpp.sh).
#include <llama.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s VOCAB.gguf [--parse-special] FILE...\n", argv[0]);
    return 2;
  }
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model_params params = llama_model_default_params();
  params.vocab_only = true;
  llama_model* model = llama_model_load_from_file(argv[1], params);
  if (!model) {
    std::fprintf(stderr, "cannot load the vocabulary of %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  bool parse_special = false;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--parse-special")) {
      parse_special = true;
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    std::vector<llama_token> ids(s.size() + 16);
    int n = llama_tokenize(vocab, s.data(), s.size(), ids.data(), ids.size(), false, parse_special);
    if (n < 0) {
      ids.resize(-n);
      n = llama_tokenize(vocab, s.data(), s.size(), ids.data(), ids.size(), false, parse_special);
    }
    std::string line;
    for (int k = 0; k < n; ++k) line += (k ? " " : "") + std::to_string(ids[k]);
    std::printf("%s\n", line.c_str());
  }
  llama_model_free(model);
  return 0;
}
