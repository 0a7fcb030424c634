// Byte-level BPE (GPT-2 style) from tokenizer.ggml.tokens + tokenizer.ggml.merges, as llama.cpp runs it:
// special tokens are cut out of the text first, the pre-tokenizer splits the rest into words, each word's bytes are
// spelled in GPT-2's printable byte alphabet, and inside a word the adjacent pair with the lowest merge rank is
// joined (leftmost on ties) until no ranked pair is left.
#include <algorithm>
#include <iterator>
#include <string_view>
#include <unordered_map>

#include "runtime/bpe_merges.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/pretokenizer.h"
#include "runtime/tokenizer.h"

namespace swrun {
namespace {

std::string utf8_of(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other bytes (controls, space, ...)
// for U+0100 onwards in byte order, so every byte has a visible one-character spelling.
struct ByteAlphabet {
  static constexpr uint32_t kCodePoints = 256 + 68;  // 68 bytes are not printable
  std::string spelling[256];
  int16_t byte_of[kCodePoints];  // code point -> byte, -1 for code points that spell no byte

  ByteAlphabet() {
    std::fill(std::begin(byte_of), std::end(byte_of), int16_t{-1});
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : next++;
      spelling[b] = utf8_of(cp);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// A token's bytes: each character of its GPT-2 spelling back to its byte; characters outside the alphabet (a
// token not spelled that way) are kept as they are.
std::string bytes_of_spelling(const std::string& spelled) {
  const ByteAlphabet& alphabet = byte_alphabet();
  std::string out;
  for (size_t pos = 0; pos < spelled.size();) {
    const auto lead = static_cast<unsigned char>(spelled[pos]);
    uint32_t cp = lead;
    size_t len = 1;
    if (lead >= 0xC0 && lead < 0xE0 && pos + 1 < spelled.size()) {  // the alphabet is U+0000..U+0143
      cp = ((lead & 0x1F) << 6) | (static_cast<unsigned char>(spelled[pos + 1]) & 0x3F);
      len = 2;
    }
    const bool spells_byte = cp < ByteAlphabet::kCodePoints && (cp < 0x80 || len == 2) && alphabet.byte_of[cp] >= 0;
    if (spells_byte) out += static_cast<char>(alphabet.byte_of[cp]);
    else out.append(spelled, pos, len);
    pos += len;
  }
  return out;
}

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(const BpeVocabulary& v, const std::string& where) : pre_(v.pre, where), merges_(v.merges, where) {
    const size_t n = v.tokens.size();
    token_of_.reserve(n);
    pieces_ = v.tokens;
    types_.resize(n);
    kinds_.resize(n);
    surfaces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      int32_t t = v.types.empty() || v.types[i] == kUndefined ? kNormal : v.types[i];  // as SentencePiece
      if (is_end_of_turn_piece(v.tokens[i])) t = kControl;
      types_[i] = static_cast<TokenType>(t);
      if (!v.tokens[i].empty()) token_of_[v.tokens[i]] = static_cast<int32_t>(i);
      if (t == kNormal) {
        kinds_[i] = PieceKind::kBytes;
        surfaces_[i] = bytes_of_spelling(v.tokens[i]);
      } else if (t == kByte && byte_of_piece(v.tokens[i]) >= 0) {  // "<0xNN>", which some BPE vocabularies carry
        kinds_[i] = PieceKind::kBytes;
        surfaces_[i] = std::string(1, static_cast<char>(byte_of_piece(v.tokens[i])));
      } else if (t == kUserDefined) {  // added tokens are stored as plain text
        kinds_[i] = PieceKind::kText;
        surfaces_[i] = v.tokens[i];
      } else {  // control, unknown, unused: not shown, as llama.cpp's detokenizer does
        kinds_[i] = PieceKind::kControl;
      }
    }
    index_special_tokens();

    const ByteAlphabet& alphabet = byte_alphabet();
    for (int b = 0; b < 256; ++b) byte_symbol_[b] = merges_.add_symbol(alphabet.spelling[b]);

    bos_ = v.bos_id;
    eos_ = v.eos_id;
    add_bos_ = v.add_bos >= 0 ? v.add_bos == 1 : pre_.adds_bos_by_default();
    add_space_prefix_ = false;
    collect_end_of_generation({v.eos_id, v.eot_id, v.eom_id});
  }

  std::vector<int32_t> encode(const std::string& raw_text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    const std::string text = sanitize_utf8(raw_text);
    // User-defined tokens are cut out even without parse_special, as llama.cpp and Hugging Face do.
    for (const Fragment& f : split_special(text, parse_special)) {
      if (f.token >= 0) out.push_back(f.token);
      else
        for (std::string_view word : pre_.split(f.text)) encode_word(word, out);
    }
    return out;
  }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const {
    const ByteAlphabet& alphabet = byte_alphabet();
    if (pre_.ignore_merges()) {
      std::string spelled;
      for (unsigned char b : word) spelled += alphabet.spelling[b];
      const auto it = token_of_.find(spelled);
      if (it != token_of_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    // One symbol per byte, spelled in GPT-2's alphabet.
    std::vector<BpeMerges::Part> parts(word.size());
    for (size_t i = 0; i < word.size(); ++i)
      parts[i] = {byte_symbol_[static_cast<unsigned char>(word[i])], static_cast<uint32_t>(i),
                  static_cast<uint32_t>(i) + 1};
    merges_.merge(parts);
    for (const BpeMerges::Part& part : parts) {
      const auto it = token_of_.find(merges_.symbol_text(part.symbol));
      if (it != token_of_.end()) {
        out.push_back(it->second);
        continue;
      }
      // A merged string that is not a token (a vocabulary inconsistency): fall back to its bytes' tokens.
      for (uint32_t b = part.begin; b < part.end; ++b) {
        const auto byte_token = token_of_.find(alphabet.spelling[static_cast<unsigned char>(word[b])]);
        if (byte_token != token_of_.end()) out.push_back(byte_token->second);
      }
    }
  }

  PreTokenizer pre_;
  BpeMerges merges_;
  StringMap<int32_t> token_of_;
  int32_t byte_symbol_[256];
};

int32_t optional_id(const GgufFile& f, const std::string& key) { return static_cast<int32_t>(f.get_int(key, -1)); }

}  // namespace

BpeVocabulary BpeVocabulary::from_gguf(const GgufFile& f) {
  BpeVocabulary v;
  v.model = f.get_string("tokenizer.ggml.model", "gpt2");
  const std::string tokens_key = "tokenizer.ggml.tokens";
  const std::string types_key = "tokenizer.ggml.token_type";
  const std::string merges_key = "tokenizer.ggml.merges";
  for (const GgufValue& item : f.get_array(tokens_key).items) v.tokens.push_back(item.as_string(tokens_key));
  if (f.has(types_key))
    for (const GgufValue& item : f.get_array(types_key).items)
      v.types.push_back(static_cast<int32_t>(item.as_int(types_key)));
  for (const GgufValue& item : f.get_array(merges_key).items) v.merges.push_back(item.as_string(merges_key));
  // llama.cpp falls back to its "default" pre-tokenizer when a file names none.
  v.pre = f.get_string("tokenizer.ggml.pre", "default");
  v.bos_id = optional_id(f, "tokenizer.ggml.bos_token_id");
  v.eos_id = optional_id(f, "tokenizer.ggml.eos_token_id");
  v.eot_id = optional_id(f, "tokenizer.ggml.eot_token_id");
  v.eom_id = optional_id(f, "tokenizer.ggml.eom_token_id");
  if (f.has("tokenizer.ggml.add_bos_token")) v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", false) ? 1 : 0;
  return v;
}

std::unique_ptr<Tokenizer> Tokenizer::from_vocabulary(const BpeVocabulary& v, const std::string& where) {
  const size_t n = v.tokens.size();
  if (n == 0) fail(where + ": tokenizer.ggml.tokens is empty");
  if (!v.types.empty()) check_entry_count(where, "token_type", v.types.size(), n);
  for (size_t i = 0; i < v.types.size(); ++i) check_token_type(where, i, v.types[i]);
  check_special_id(where, "bos_token_id", v.bos_id, n);
  check_special_id(where, "eos_token_id", v.eos_id, n);
  check_special_id(where, "eot_token_id", v.eot_id, n);
  check_special_id(where, "eom_token_id", v.eom_id, n);
  if (uses_spm_style_bpe(v)) return make_gemma4_tokenizer(v, where);
  return std::make_unique<BpeTokenizer>(v, where);
}

}  // namespace swrun
