// SentencePiece tokenizer built from the vocabulary stored in a GGUF file (tokenizer.ggml.*): the pieces are
// serialized into a SentencePiece ModelProto in memory and handed to libsentencepiece, so encoding and decoding
// follow the model's own tokenizer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace swrun {

class GgufFile;

// The SentencePiece vocabulary as GGUF stores it. Token types use llama.cpp's numbering, which is SentencePiece's
// piece type numbering (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; 0 = undefined).
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

  // Throws Error for a non-SentencePiece tokenizer ("tokenizer model 'gpt2' is not supported ...") or a
  // malformed vocabulary, naming the file and the key.
  static SpmVocabulary from_gguf(const GgufFile& file);
};

class Tokenizer {
 public:
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  // `where` names the source in error messages (usually the file path).
  static std::unique_ptr<Tokenizer> from_vocabulary(const SpmVocabulary& vocab, const std::string& where);
  ~Tokenizer();

  // Text to ids; BOS first when add_bos is true and the vocabulary has one. Control pieces written in the text
  // (e.g. "<start_of_turn>") are encoded as ordinary text, as SentencePiece does.
  std::vector<int32_t> encode(const std::string& text, bool add_bos) const;
  // Ids to text the way SentencePiece decodes a whole sequence: control tokens vanish, byte pieces are joined
  // into UTF-8 (invalid bytes become U+FFFD), and the dummy-prefix space of the first piece is dropped.
  // Throws Error for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  const std::string& piece(int32_t id) const;  // raw vocabulary piece; throws Error when out of range
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  // EOS, the file's end-of-turn token, and Gemma's <end_of_turn>.
  bool is_end_of_generation(int32_t id) const;

  // Per-id facts the streaming detokenizer needs.
  enum class PieceKind : uint8_t { kText, kControl, kUnknown, kByte };
  PieceKind kind(int32_t id) const;
  // For kText: the piece with U+2581 turned back into spaces; for kUnknown: SentencePiece's " \u2047 ";
  // for kByte: the one byte; for kControl: empty.
  std::string surface(int32_t id) const;

 private:
  Tokenizer();
  void check_id(int32_t id) const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::vector<std::string> pieces_;
  std::vector<PieceKind> kinds_;
  std::vector<int32_t> end_of_generation_;
  int32_t bos_ = -1;
  int32_t eos_ = -1;
  bool add_bos_ = true;
  bool add_space_prefix_ = true;
};

// Turns generated ids into text piece by piece. Text is released as soon as it is complete UTF-8: byte-fallback
// pieces can split one character over several tokens, and those bytes are held back until the character is whole.
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

}  // namespace swrun
