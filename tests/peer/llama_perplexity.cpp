// The llama.cpp side of tests/peer/perplexity_peer.py: llama-perplexity's method computed on llama.cpp's CPU library
// (its logits, its tokenizer), written for this test against the library API rather than building llama.cpp's
// common library and tool. The method (tools/perplexity/perplexity.cpp of llama.cpp): the text (one trailing
// newline dropped, as llama.cpp's -f) is tokenized with BOS, cut into chunks of CTX tokens whose first token is
// replaced by BOS; positions CTX/2 .. CTX-2 are scored. The KL-divergence base file is llama.cpp's format.
//   llama_perplexity MODEL TEXT CTX CHUNKS [--write-base FILE] [-t N]
//       prints "[1]ppl,[2]ppl,..." and "Final estimate: PPL = x +/- y"; with --write-base also writes the base file
//   llama_perplexity MODEL --read-base FILE [-t N]
//       KL divergence of llama.cpp's logits against the base file; prints "kld_mean X same_top Y count N"
// Flash attention is off and the KV cache is F32, as in llama_logits.
#include <cmath>
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
  std::fprintf(stderr, "llama_perplexity: %s\n", why.c_str());
  std::exit(1);
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

int row_width(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

// Runs one chunk (BOS-replaced first token when the vocabulary adds BOS) and returns the logits of its scored
// positions first .. n_ctx-2 ([n_ctx - 1 - first, n_vocab]).
std::vector<float> chunk_logits(llama_context* ctx, const llama_vocab* vocab, const llama_token* chunk, int n_ctx) {
  const int first = n_ctx / 2, n_vocab = llama_vocab_n_tokens(vocab);
  llama_memory_clear(llama_get_memory(ctx), true);
  llama_batch batch = llama_batch_init(n_ctx, 0, 1);
  for (int i = 0; i < n_ctx; ++i) {
    batch.token[i] = i == 0 && llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : chunk[i];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = i >= first;
  }
  batch.n_tokens = n_ctx;
  if (llama_decode(ctx, batch) != 0) die("llama_decode failed");
  std::vector<float> out;
  for (int i = first; i < n_ctx - 1; ++i) {
    const float* row = llama_get_logits_ith(ctx, i);
    out.insert(out.end(), row, row + n_vocab);
  }
  llama_batch_free(batch);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) die("usage: see the header of tests/peer/llama_perplexity.cpp");
  const std::string model_path = argv[1];
  std::string text_path, base_out, base_in;
  int n_ctx = 0, n_chunks = 0, threads = 2, i = 2;
  if (std::string(argv[2]) != "--read-base") {
    if (argc < 5) die("usage: llama_perplexity MODEL TEXT CTX CHUNKS [--write-base FILE] [-t N]");
    text_path = argv[2];
    n_ctx = std::atoi(argv[3]);
    n_chunks = std::atoi(argv[4]);
    i = 5;
  }
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--write-base") base_out = v;
    else if (a == "--read-base") base_in = v;
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
  const int n_vocab = llama_vocab_n_tokens(vocab), nv = row_width(n_vocab);

  std::vector<llama_token> tokens;
  std::FILE* in = nullptr;
  if (!base_in.empty()) {
    in = std::fopen(base_in.c_str(), "rb");
    if (!in) die("cannot read " + base_in);
    char magic[8];
    int32_t header[3];
    if (std::fread(magic, 1, 8, in) != 8 || std::memcmp(magic, "_logits_", 8) != 0 ||
        std::fread(header, 4, 3, in) != 3)
      die(base_in + ": not a base file");
    n_ctx = header[0];
    if (header[1] != n_vocab) die(base_in + ": vocabulary size differs");
    n_chunks = header[2];
    tokens.resize(size_t(n_ctx) * n_chunks);
    if (std::fread(tokens.data(), 4, tokens.size(), in) != tokens.size()) die(base_in + ": truncated tokens");
  } else {
    std::ifstream f(text_path, std::ios::binary);
    if (!f) die("cannot read " + text_path);
    std::stringstream s;
    s << f.rdbuf();
    std::string text = s.str();
    if (!text.empty() && text.back() == '\n') text.pop_back();
    tokens.resize(text.size() + 16);
    const int n = llama_tokenize(vocab, text.data(), int32_t(text.size()), tokens.data(), int32_t(tokens.size()),
                                 /*add_special=*/true, /*parse_special=*/false);
    if (n <= 0) die(text_path + ": tokenization failed");
    tokens.resize(n);
    if (n < 2 * n_ctx) die("text too short");
    n_chunks = std::min(n_chunks, n / n_ctx);
  }

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = uint32_t(n_ctx);
  cp.n_seq_max = 1;
  cp.n_threads = cp.n_threads_batch = threads;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.swa_full = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) die("llama.cpp could not create a context");

  const int first = n_ctx / 2, n_scored = n_ctx - 1 - first;
  std::FILE* out = nullptr;
  if (!base_out.empty()) {
    out = std::fopen(base_out.c_str(), "wb");
    if (!out) die("cannot write " + base_out);
    const int32_t header[3] = {n_ctx, n_vocab, n_chunks};
    std::fwrite("_logits_", 1, 8, out);
    std::fwrite(header, 4, 3, out);
    std::fwrite(tokens.data(), 4, size_t(n_chunks) * n_ctx, out);
  }

  double nll = 0, nll2 = 0, kld = 0;
  size_t count = 0, same_top = 0;
  std::vector<uint16_t> rows(size_t(n_scored) * nv);
  for (int c = 0; c < n_chunks; ++c) {
    const llama_token* chunk = tokens.data() + size_t(c) * n_ctx;
    const std::vector<float> logits = chunk_logits(ctx, vocab, chunk, n_ctx);
    if (in && std::fread(rows.data(), 2, rows.size(), in) != rows.size()) die(base_in + ": truncated rows");
    for (int r = 0; r < n_scored; ++r) {
      const float* l = logits.data() + size_t(r) * n_vocab;
      const int tok = chunk[first + r + 1];
      float mx = l[0], mn = l[0];
      int imax = 0;
      for (int v = 1; v < n_vocab; ++v) {
        if (l[v] > mx) mx = l[v], imax = v;
        mn = std::min(mn, l[v]);
      }
      double sum_exp = 0;
      for (int v = 0; v < n_vocab; ++v) sum_exp += std::exp(l[v] - mx);
      const double row_nll = -(l[tok] - mx - std::log(sum_exp));
      nll += row_nll;
      nll2 += row_nll * row_nll;
      ++count;
      if (out) {  // llama.cpp's compressed log-probabilities
        uint16_t* q = rows.data() + size_t(r) * nv;
        std::fill(q, q + nv, uint16_t(0));
        mn = std::max(mn, mx - 16);
        const float lse = float(std::log(sum_exp)), min_lp = mn - mx - lse, scale = (mx - mn) / 65535.f;
        std::memcpy(q, &scale, 4);
        std::memcpy(q + 2, &min_lp, 4);
        if (scale != 0.f)
          for (int v = 0; v < n_vocab; ++v)
            q[4 + v] = l[v] > mn ? uint16_t(std::nearbyint((l[v] - mn) * (1 / scale))) : 0;
      }
      if (in) {  // KL(base || llama.cpp) over the base's log-probabilities above -16
        const uint16_t* q = rows.data() + size_t(r) * nv;
        float scale, min_lp;
        std::memcpy(&scale, q, 4);
        std::memcpy(&min_lp, q + 2, 4);
        const double log_norm = mx + std::log(sum_exp);
        double k = 0;
        int ibase = 0;
        for (int v = 0; v < n_vocab; ++v) {
          const double lp = double(scale) * q[4 + v] + min_lp;
          if (q[4 + v] > q[4 + ibase]) ibase = v;
          if (lp > -16) k += std::exp(lp) * (lp - (l[v] - log_norm));
        }
        kld += k;
        same_top += ibase == imax;
      }
    }
    if (out) std::fwrite(rows.data(), 2, rows.size(), out);
    if (!in) std::printf("[%d]%.4f,", c + 1, std::exp(nll / count));
  }
  if (out && std::fclose(out) != 0) die("cannot write " + base_out);
  if (in) {
    std::printf("kld_mean %.8f same_top %.6f count %zu\n", kld / count, double(same_top) / count, count);
  } else {
    const double mean = nll / count, var = nll2 / count - mean * mean, ppl = std::exp(mean);
    std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl, std::sqrt(var / (count - 1)) * ppl);
  }
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
