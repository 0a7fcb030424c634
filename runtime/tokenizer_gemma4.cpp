// Gemma 4's tokenizer (tokenizer.ggml.model = "gemma4"): BPE over SentencePiece-style text, as llama.cpp runs it
// (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_GEMMA4):
// - special tokens are cut out of the text first (user-defined ones always, the others with parse_special);
// - every space of the remaining text becomes U+2581 ("escape_whitespaces"); no dummy prefix is added;
// - the text is split only into runs of newlines and runs of everything else ([^\n]+|[\n]+);
// - a run of newlines that is itself a token is that token; otherwise a word starts as one symbol per UTF-8
//   character (raw UTF-8, not GPT-2's byte alphabet) and the ranked merges join them (bpe_merges.h);
// - a merged piece that is no token falls back to its bytes' "<0xNN>" tokens (byte fallback);
// - BOS is always added when asked for (llama.cpp overrides add_bos_token = false for Gemma 4).
// Decoding turns U+2581 back into spaces and "<0xNN>" tokens into their bytes; control tokens vanish.
#include <algorithm>

#include "runtime/bpe_merges.h"
#include "runtime/common.h"
#include "runtime/pretokenizer.h"
#include "runtime/tokenizer.h"

namespace swrun {
namespace {

const std::string kEscapedSpace = "\xE2\x96\x81";  // U+2581

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0;;) {
    const size_t hit = text.find(from, pos);
    out.append(text.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos));
    if (hit == std::string_view::npos) return out;
    out.append(to);
    pos = hit + from.size();
  }
}

size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
}

class Gemma4Tokenizer : public Tokenizer {
 public:
  Gemma4Tokenizer(const BpeVocabulary& v, const std::string& where) : pre_("gemma4", where), merges_(v.merges, where) {
    const size_t n = v.tokens.size();
    token_of_.reserve(n);
    pieces_ = v.tokens;
    types_.resize(n);
    kinds_.resize(n);
    surfaces_.resize(n);
    // llama.cpp forces the well-known end-of-turn pieces to control, but with Gemma 4's "<|tool_response>" in the
    // vocabulary "</s>" is an ordinary piece.
    const bool normal_end_of_sentence =
        std::find(v.tokens.begin(), v.tokens.end(), "<|tool_response>") != v.tokens.end();
    std::fill(std::begin(byte_token_), std::end(byte_token_), -1);
    for (size_t i = 0; i < n; ++i) {
      const std::string& piece = v.tokens[i];
      int32_t t = v.types.empty() || v.types[i] == kUndefined ? kNormal : v.types[i];
      if (is_end_of_turn_piece(piece)) t = normal_end_of_sentence && piece == "</s>" ? kNormal : kControl;
      types_[i] = static_cast<TokenType>(t);
      if (!piece.empty()) token_of_[piece] = static_cast<int32_t>(i);
      if (t == kNormal) {  // kBytes: the stream holds a character back until it is whole, as for byte pieces
        kinds_[i] = PieceKind::kBytes;
        surfaces_[i] = replace_all(piece, kEscapedSpace, " ");
      } else if (t == kByte && byte_of_piece(piece) >= 0) {
        kinds_[i] = PieceKind::kBytes;
        surfaces_[i] = std::string(1, static_cast<char>(byte_of_piece(piece)));
      } else if (t == kUserDefined) {  // shown as written, like the other tokenizers
        kinds_[i] = PieceKind::kText;
        surfaces_[i] = piece;
      } else {  // control, unknown, unused, and byte pieces not spelled "<0xNN>": not shown, as in llama.cpp
        kinds_[i] = PieceKind::kControl;
      }
    }
    // Byte fallback looks the byte up by its "<0xNN>" spelling, whatever type the file gives that token.
    for (int b = 0; b < 256; ++b) {
      static const char* const kHex = "0123456789ABCDEF";
      const auto it = token_of_.find(std::string{'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'});
      if (it != token_of_.end()) byte_token_[b] = it->second;
    }
    index_special_tokens();
    bos_ = v.bos_id;
    eos_ = v.eos_id;
    add_bos_ = true;  // llama.cpp: "override 'tokenizer.ggml.add_bos_token' to 'true' for Gemma4"
    add_space_prefix_ = false;
    collect_end_of_generation({v.eos_id, v.eot_id, v.eom_id});
  }

  std::vector<int32_t> encode(const std::string& raw_text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    const std::string text = sanitize_utf8(raw_text);
    for (const Fragment& f : split_special(text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      const std::string escaped = replace_all(f.text, " ", kEscapedSpace);
      for (std::string_view word : pre_.split(escaped)) encode_word(word, out);
    }
    return out;
  }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (word.find_first_not_of('\n') == std::string_view::npos) {  // llama.cpp's Gemma 4 rule for newline runs
      const auto it = token_of_.find(word);
      if (it != token_of_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<BpeMerges::Part> parts;
    parts.reserve(word.size());
    for (size_t pos = 0; pos < word.size();) {
      const size_t len = std::min(word.size() - pos, utf8_length(static_cast<unsigned char>(word[pos])));
      parts.push_back({merges_.find_symbol(word.substr(pos, len)), static_cast<uint32_t>(pos),
                       static_cast<uint32_t>(pos + len)});
      pos += len;
    }
    merges_.merge(parts);
    for (const BpeMerges::Part& part : parts) {
      const auto it = token_of_.find(word.substr(part.begin, part.end - part.begin));
      if (it != token_of_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (uint32_t b = part.begin; b < part.end; ++b) {  // byte fallback; a missing byte token is dropped
        const int32_t id = byte_token_[static_cast<unsigned char>(word[b])];
        if (id >= 0) out.push_back(id);
      }
    }
  }

  PreTokenizer pre_;
  BpeMerges merges_;
  StringMap<int32_t> token_of_;
  int32_t byte_token_[256];
};

}  // namespace

bool uses_spm_style_bpe(const BpeVocabulary& v) {
  // llama.cpp selects these rules by the pre-tokenizer type, which model "gemma4" forces to "gemma4".
  return v.model == "gemma4" || v.pre == "gemma4" || v.pre == "granite-embed-multi-311m";
}

std::unique_ptr<Tokenizer> make_gemma4_tokenizer(const BpeVocabulary& v, const std::string& where) {
  return std::make_unique<Gemma4Tokenizer>(v, where);
}

}  // namespace swrun
