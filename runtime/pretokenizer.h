// Byte-level BPE pre-tokenizers: the regexes named by tokenizer.ggml.pre split a text into words before BPE
// merges run inside each word. The regexes are those llama.cpp uses (src/llama-vocab.cpp), run by PCRE2 with
// Unicode properties, adapted where llama.cpp's own regex engine reads them differently (see pretokenizer.cpp).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace swrun {

class PreTokenizer {
 public:
  // Throws Error "<where>: tokenizer.ggml.pre '<pre>' is not supported ..." for an unknown name.
  PreTokenizer(const std::string& pre, const std::string& where);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits valid UTF-8 text into words: each regex in turn splits every piece so far into its matches and the
  // text between them. The words are views into `text`, in order, and together they are the whole text.
  std::vector<std::string_view> split(std::string_view text) const;

  // Whether a word that is itself a vocabulary token skips the merges (llama 3's tokenizer.json sets this).
  bool ignore_merges() const { return ignore_merges_; }
  // Whether BOS is added when the file has no tokenizer.ggml.add_bos_token (llama.cpp's per-type default).
  bool adds_bos_by_default() const { return adds_bos_by_default_; }

 private:
  class Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
  bool adds_bos_by_default_ = false;
};

}  // namespace swrun
