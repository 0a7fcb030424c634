// Tokenizers built from the vocabulary stored in a GGUF file (tokenizer.ggml.*), chosen by tokenizer.ggml.model:
// - "llama": SentencePiece. The pieces are serialized into a SentencePiece ModelProto in memory and handed to
//   libsentencepiece, so encoding and decoding follow the model's own tokenizer (tokenizer_spm.cpp).
// - "gpt2": byte-level BPE. The text is split by the pre-tokenizer regexes named by tokenizer.ggml.pre (run by
//   PCRE2, pretokenizer.cpp), each word's bytes are mapped to GPT-2's printable byte alphabet, and the ranked
//   merges of tokenizer.ggml.merges join them (tokenizer_bpe.cpp).
// - "gemma4": BPE over SentencePiece-style text (Gemma 4). Spaces are written as U+2581, the text is split only at
//   newlines, the same ranked merges join UTF-8 characters (not bytes), and a piece that is no token falls back to
//   "<0xNN>" byte tokens (tokenizer_gemma4.cpp; bpe_merges.h holds what both BPE kinds share).
// All give the same interface, so generation, the CLI and the tests do not care which one they hold.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace swrun {

class GgufFile;

// Token types use llama.cpp's numbering, which is SentencePiece's piece type numbering (1 normal, 2 unknown,
// 3 control, 4 user-defined, 5 unused, 6 byte; 0 = undefined).
enum TokenType : int32_t { kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5,
                           kByte = 6 };

// The SentencePiece vocabulary as GGUF stores it.
struct SpmVocabulary {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t eot_id = -1;  // end of turn, when the file names one
  bool add_bos = true;
  bool add_space_prefix = true;

  // Throws Error for a malformed vocabulary, naming the file and the key.
  static SpmVocabulary from_gguf(const GgufFile& file);
};

// The BPE vocabulary as GGUF stores it. For "gpt2" tokens are spelled in GPT-2's byte alphabet (a space is "Ġ"),
// for "gemma4" in UTF-8 with U+2581 for a space; merges are "left right" strings, earlier ones merge first.
struct BpeVocabulary {
  std::string model = "gpt2";  // tokenizer.ggml.model: "gpt2" or "gemma4"
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // empty: every token is normal
  std::vector<std::string> merges;
  std::string pre = "default";  // tokenizer.ggml.pre: which pre-tokenizer splits the text into words (gpt2 only)
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  int32_t eom_id = -1;
  int32_t add_bos = -1;  // tokenizer.ggml.add_bos_token: 1/0, or -1 when absent (the pre-tokenizer's default)

  static BpeVocabulary from_gguf(const GgufFile& file);
};

class Tokenizer {
 public:
  // Throws Error naming the file for a missing or unsupported tokenizer.ggml.model or tokenizer.ggml.pre.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  // `where` names the source in error messages (usually the file path).
  static std::unique_ptr<Tokenizer> from_vocabulary(const SpmVocabulary& vocab, const std::string& where);
  static std::unique_ptr<Tokenizer> from_vocabulary(const BpeVocabulary& vocab, const std::string& where);
  virtual ~Tokenizer();

  // Text to ids; BOS first when add_bos is true and the vocabulary has one. With parse_special, control,
  // unknown and user-defined tokens written in the text (e.g. "<|im_start|>") become their ids, as llama.cpp's
  // tokenizer does; without it they are ordinary text (byte-level BPE still splits out user-defined tokens, as
  // llama.cpp and Hugging Face tokenizers do). Invalid UTF-8 in the text is encoded as U+FFFD.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special = false) const = 0;
  // Ids to text: control tokens vanish, bytes are joined into UTF-8 (invalid bytes become U+FFFD); for
  // SentencePiece the dummy-prefix space of the first piece is dropped. Throws Error for an id outside the
  // vocabulary.
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  const std::string& piece(int32_t id) const;  // raw vocabulary piece; throws Error when out of range
  TokenType type(int32_t id) const;
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  // EOS, the file's end-of-turn/end-of-message tokens, and the end-of-turn pieces (is_end_of_turn_piece).
  bool is_end_of_generation(int32_t id) const;

  // Per-id facts the streaming detokenizer needs.
  //   kText: complete UTF-8 text; it ends a run of bytes (SentencePiece's normal pieces).
  //   kBytes: bytes that may split a character across tokens (SentencePiece byte pieces, every byte-level BPE
  //           token that is not control).
  //   kControl: shows nothing and ends a run of bytes.
  //   kUnknown: SentencePiece's unknown piece.
  enum class PieceKind : uint8_t { kText, kControl, kUnknown, kBytes };
  PieceKind kind(int32_t id) const;
  // For kText: the text (SentencePiece's U+2581 turned back into spaces); for kUnknown: SentencePiece's
  // " \u2047 "; for kBytes: the bytes; for kControl: empty.
  const std::string& surface(int32_t id) const;

 protected:
  Tokenizer() = default;
  void check_id(int32_t id) const;

  // Checks both from_vocabulary() make of a GGUF vocabulary of n_tokens tokens; each fails naming `where` and
  // the key. A per-token array (tokenizer.ggml.<key>) must have one entry per token:
  static void check_entry_count(const std::string& where, const char* key, size_t count, size_t n_tokens);
  // Token type i must be one of TokenType's values:
  static void check_token_type(const std::string& where, size_t i, int32_t type);
  // A special token id (tokenizer.ggml.<key>) must be in the vocabulary, or -1 for none:
  static void check_special_id(const std::string& where, const char* key, int32_t id, size_t n_tokens);

  // A stretch of text, or a special token cut out of it.
  struct Fragment {
    std::string_view text;
    int32_t token = -1;
  };
  // Cuts the control, unknown and user-defined tokens written in `text` out of it (only user-defined ones when
  // !all_special), as llama.cpp does: the longest token first over every remaining stretch, then the next.
  std::vector<Fragment> split_special(std::string_view text, bool all_special) const;
  // Indexes the special tokens for split_special(); call once pieces_ and types_ are set.
  void index_special_tokens();
  // Fills end_of_generation_ from the given ids (negative ones ignored) and the well-known end-of-turn pieces.
  void collect_end_of_generation(const std::vector<int32_t>& ids);

  std::vector<std::string> pieces_;
  std::vector<TokenType> types_;
  std::vector<PieceKind> kinds_;
  std::vector<std::string> surfaces_;
  std::vector<int32_t> end_of_generation_;
  std::vector<int32_t> special_by_length_;  // control, unknown and user-defined ids, longest first
  int32_t bos_ = -1;
  int32_t eos_ = -1;
  bool add_bos_ = true;
  bool add_space_prefix_ = false;
};

// Turns generated ids into text piece by piece. Text is released as soon as it is complete UTF-8: byte pieces
// can split one character over several tokens, and those bytes are held back until the character is whole.
// The concatenation of all push() results and flush() equals Tokenizer::decode() of the same ids (when
// at_text_start is true).
class DetokenizeStream {
 public:
  // at_text_start: the ids begin a text, so the first piece's dummy-prefix space is dropped as decode() does.
  // Pass false when the ids continue text already shown (generated tokens after the prompt).
  DetokenizeStream(const Tokenizer& tokenizer, bool at_text_start);
  std::string push(int32_t id);
  std::string flush();  // releases held bytes; an incomplete character becomes U+FFFD per byte

 private:
  std::string release_bytes(bool run_ended);

  const Tokenizer& tokenizer_;
  bool strip_leading_space_;
  bool leading_space_seen_ = false;
  bool text_empty_ = true;
  std::string pending_bytes_;
};

// Whether a piece is one of the end-of-turn markers chat models use (<|im_end|>, <|eot_id|>, <end_of_turn>,
// </s>, ...). Both tokenizers treat these as control tokens whatever type the file gives them, as llama.cpp does:
// they end generation, vanish from decoded text, and are read from the text only with parse_special.
bool is_end_of_turn_piece(const std::string& piece);

// The byte of a byte piece spelled exactly "<0xNN>" with upper-case hex (as SentencePiece requires), else -1.
int byte_of_piece(const std::string& piece);

// `text` with every invalid UTF-8 sequence replaced by U+FFFD, one per byte that cannot start a valid sequence.
std::string sanitize_utf8(const std::string& text);

}  // namespace swrun
