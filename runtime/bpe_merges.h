// What the two BPE tokenizers share (internal to tokenizer_bpe.cpp and tokenizer_gemma4.cpp): the ranked merges of
// tokenizer.ggml.merges and the merge loop that runs them inside one word, as llama.cpp's llm_tokenizer_bpe does.
// - byte-level BPE ("gpt2"): a word starts as one symbol per byte, spelled in GPT-2's byte alphabet;
// - SentencePiece-style BPE ("gemma4"): a word starts as one symbol per UTF-8 character, spaces written as U+2581.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace swrun {

class Tokenizer;
struct BpeVocabulary;

// String-keyed maps that can be searched with a string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringViewHash, std::equal_to<>>;

class BpeMerges {
 public:
  // merges: "left right" strings (split at the first space after the first character, so the left part may be a
  // space), earlier ones merge first; the first of duplicate pairs keeps its rank. Throws Error naming `where`
  // and the entry for one that is not two parts.
  BpeMerges(const std::vector<std::string>& merges, const std::string& where);

  // Symbols are the strings merges talk about, numbered on first sight.
  int32_t add_symbol(std::string_view text);  // the symbol of `text`, numbered now if new
  int32_t find_symbol(std::string_view text) const;  // -1 for a string no merge and no add_symbol() named
  const std::string& symbol_text(int32_t symbol) const { return symbol_text_[symbol]; }

  // One symbol of a word and the bytes of the word it covers. Symbol -1 takes part in no merge.
  struct Part {
    int32_t symbol;
    uint32_t begin, end;
  };
  // Joins the adjacent pair with the lowest merge rank (leftmost on ties) until no ranked pair is left; `parts`
  // holds the word's first symbols in order and on return the merged ones, in order.
  void merge(std::vector<Part>& parts) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t joined;  // symbol of the merged string
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  StringMap<int32_t> symbol_of_;
  std::vector<std::string> symbol_text_;
  std::unordered_map<uint64_t, Merge> merges_;
};

// The SentencePiece-style BPE tokenizer (tokenizer_gemma4.cpp): tokenizer.ggml.model = "gemma4", or "gpt2" with
// one of the pre-tokenizers that select the same rules in llama.cpp (see uses_spm_style_bpe).
std::unique_ptr<Tokenizer> make_gemma4_tokenizer(const BpeVocabulary& vocab, const std::string& where);
bool uses_spm_style_bpe(const BpeVocabulary& vocab);

}  // namespace swrun
