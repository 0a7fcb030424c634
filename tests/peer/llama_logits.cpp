// The llama.cpp side of the peer comparison (tests/peer/compare_llama.py): loads a GGUF with llama.cpp's CPU
// library, optionally tokenizes a text with llama.cpp's own tokenizer, runs every position of one sequence in a
// single batch and writes the logits of every position as raw float32 [n, vocab].
//   llama_logits MODEL --text FILE --ids-out FILE      tokenize FILE (with BOS if the vocabulary adds one)
//   llama_logits MODEL --ids FILE --out FILE [-t N]    logits of the comma-separated ids in FILE
// Flash attention is off and the KV cache is F32, so llama.cpp's attention is the plain fp32 softmax(QK^T)V.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "llama_logits: %s\n", why.c_str());
  std::exit(1);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<llama_token> parse_ids(const std::string& path) {
  std::vector<llama_token> ids;
  std::string text = read_file(path);
  for (char& c : text)
    if (c == ',') c = ' ';
  std::istringstream in(text);
  long long v;
  while (in >> v) ids.push_back(static_cast<llama_token>(v));
  if (!in.eof()) die(path + ": not a list of token ids");
  if (ids.empty()) die(path + ": no token ids");
  return ids;
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: llama_logits MODEL (--text FILE --ids-out FILE | --ids FILE --out FILE) [-t N]");
  const std::string model_path = argv[1];
  std::string text_path, ids_out, ids_path, out_path;
  int threads = 2;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--text") text_path = v;
    else if (a == "--ids-out") ids_out = v;
    else if (a == "--ids") ids_path = v;
    else if (a == "--out") out_path = v;
    else if (a == "-t") threads = std::atoi(v.c_str());
    else die("unknown option " + a);
  }

  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(model_path.c_str(), mp);
  if (!model) die(model_path + ": llama.cpp could not load it");
  const llama_vocab* vocab = llama_model_get_vocab(model);

  if (!text_path.empty()) {
    if (ids_out.empty()) die("--text needs --ids-out");
    const std::string text = read_file(text_path);
    std::vector<llama_token> ids(text.size() + 16);
    const int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), ids.data(),
                                 static_cast<int32_t>(ids.size()), /*add_special=*/true, /*parse_special=*/false);
    if (n <= 0) die(text_path + ": tokenization failed");
    std::ofstream out(ids_out);
    for (int i = 0; i < n; ++i) out << (i ? "," : "") << ids[i];
    out << "\n";
    if (!out) die("cannot write " + ids_out);
    std::fprintf(stderr, "llama_logits: %d tokens -> %s\n", n, ids_out.c_str());
    return 0;
  }
  if (ids_path.empty() || out_path.empty()) die("need --ids FILE --out FILE (or --text FILE --ids-out FILE)");

  std::vector<llama_token> ids = parse_ids(ids_path);
  const int n = static_cast<int>(ids.size());
  const int n_vocab = llama_vocab_n_tokens(vocab);
  for (llama_token id : ids)
    if (id < 0 || id >= n_vocab) die(ids_path + ": id " + std::to_string(id) + " outside the vocabulary");

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n);
  cp.n_batch = static_cast<uint32_t>(n);
  cp.n_ubatch = static_cast<uint32_t>(n);
  cp.n_seq_max = 1;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.type_k = GGML_TYPE_F32;
  cp.type_v = GGML_TYPE_F32;
  cp.swa_full = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) die("llama.cpp could not create a context of " + std::to_string(n) + " tokens");

  llama_batch batch = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    batch.token[i] = ids[i];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = n;
  if (llama_decode(ctx, batch) != 0) die("llama_decode failed");

  std::FILE* out = std::fopen(out_path.c_str(), "wb");
  if (!out) die("cannot open " + out_path);
  for (int i = 0; i < n; ++i) {
    const float* row = llama_get_logits_ith(ctx, i);
    if (!row || std::fwrite(row, sizeof(float), n_vocab, out) != static_cast<size_t>(n_vocab)) die("cannot write " + out_path);
  }
  if (std::fclose(out) != 0) die("cannot write " + out_path);
  std::fprintf(stderr, "llama_logits: %d positions x %d logits -> %s\n", n, n_vocab, out_path.c_str());
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
