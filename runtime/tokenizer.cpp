#include "runtime/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>

#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/protobuf_writer.h"

namespace swrun {
namespace {

constexpr const char* kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space
constexpr const char* kUnknownSurface = " \xE2\x81\x87 ";  // what SentencePiece prints for <unk>
constexpr const char* kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// SentencePiece piece types (sentencepiece_model.proto, ModelProto.SentencePiece.Type); GGUF uses the same numbers.
enum PieceType : int32_t { kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5,
                           kByte = 6 };

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

// Byte pieces are spelled exactly "<0xNN>" with upper-case hex, as SentencePiece itself requires.
int byte_of_piece(const std::string& piece) {
  const auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  const int high = hex(piece[3]), low = hex(piece[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

// Field numbers below are those of sentencepiece_model.proto.
std::string serialize_model_proto(const SpmVocabulary& v, const std::vector<int32_t>& types) {
  ProtobufWriter model;
  bool has_byte_pieces = false;
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    ProtobufWriter piece;
    // GGUF converters store user-defined pieces with plain spaces (pre-normalized), but SentencePiece matches
    // them against the normalized text, where every space is already U+2581.
    piece.add_string(1, types[i] == kUserDefined ? replace_all(v.pieces[i], " ", kSpaceSymbol) : v.pieces[i]);
    piece.add_float(2, v.scores[i]);
    piece.add_int32(3, types[i]);
    model.add_message(1, piece);
    has_byte_pieces |= types[i] == kByte;
  }

  auto piece_or_default = [&](int32_t id, const char* fallback) {
    return id >= 0 ? v.pieces[id] : std::string(fallback);
  };
  ProtobufWriter trainer;
  trainer.add_int32(3, 2);  // model_type = BPE
  trainer.add_int32(4, static_cast<int32_t>(v.pieces.size()));
  trainer.add_bool(35, has_byte_pieces);  // byte_fallback
  trainer.add_int32(40, v.unk_id);
  trainer.add_int32(41, v.bos_id);
  trainer.add_int32(42, v.eos_id);
  trainer.add_int32(43, v.pad_id);
  trainer.add_string(45, piece_or_default(v.unk_id, "<unk>"));
  trainer.add_string(46, piece_or_default(v.bos_id, "<s>"));
  trainer.add_string(47, piece_or_default(v.eos_id, "</s>"));
  trainer.add_string(48, piece_or_default(v.pad_id, "<pad>"));
  model.add_message(2, trainer);

  ProtobufWriter normalizer;
  normalizer.add_string(1, "identity");
  normalizer.add_bool(3, v.add_space_prefix);  // add_dummy_prefix
  // SentencePiece's default collapses whitespace runs; GGUF SentencePiece models (llama, Gemma) keep them.
  normalizer.add_bool(4, false);  // remove_extra_whitespaces
  normalizer.add_bool(5, true);   // escape_whitespaces
  model.add_message(3, normalizer);
  return model.bytes();
}

int32_t optional_id(const GgufFile& f, const std::string& key) {
  return static_cast<int32_t>(f.get_int(key, -1));
}

}  // namespace

SpmVocabulary SpmVocabulary::from_gguf(const GgufFile& f) {
  const std::string where = f.path();
  if (!f.has("tokenizer.ggml.model"))
    fail(where + ": no tokenizer in this file (metadata key tokenizer.ggml.model is missing)");
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "llama")
    fail(where + ": tokenizer model '" + model + "' is not supported (only SentencePiece 'llama' vocabularies)");

  SpmVocabulary v;
  const std::string tokens_key = "tokenizer.ggml.tokens";
  const std::string scores_key = "tokenizer.ggml.scores";
  const std::string types_key = "tokenizer.ggml.token_type";
  for (const GgufValue& item : f.get_array(tokens_key).items) v.pieces.push_back(item.as_string(tokens_key));
  for (const GgufValue& item : f.get_array(scores_key).items)
    v.scores.push_back(static_cast<float>(item.as_float(scores_key)));
  for (const GgufValue& item : f.get_array(types_key).items)
    v.types.push_back(static_cast<int32_t>(item.as_int(types_key)));
  v.bos_id = optional_id(f, "tokenizer.ggml.bos_token_id");
  v.eos_id = optional_id(f, "tokenizer.ggml.eos_token_id");
  v.unk_id = optional_id(f, "tokenizer.ggml.unknown_token_id");
  v.pad_id = optional_id(f, "tokenizer.ggml.padding_token_id");
  v.eot_id = optional_id(f, "tokenizer.ggml.eot_token_id");
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
  return v;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  return from_vocabulary(SpmVocabulary::from_gguf(file), file.path());
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_vocabulary(const SpmVocabulary& v, const std::string& where) {
  const size_t n = v.pieces.size();
  if (n == 0) fail(where + ": tokenizer.ggml.tokens is empty");
  if (v.scores.size() != n)
    fail(where + ": tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries for " +
         std::to_string(n) + " tokens");
  if (v.types.size() != n)
    fail(where + ": tokenizer.ggml.token_type has " + std::to_string(v.types.size()) + " entries for " +
         std::to_string(n) + " tokens");
  const auto check_special = [&](int32_t id, const char* key) {
    if (id < -1 || id >= static_cast<int64_t>(n))
      fail(where + ": tokenizer.ggml." + key + " = " + std::to_string(id) + " is outside the vocabulary of " +
           std::to_string(n));
  };
  check_special(v.bos_id, "bos_token_id");
  check_special(v.eos_id, "eos_token_id");
  check_special(v.unk_id, "unknown_token_id");
  check_special(v.pad_id, "padding_token_id");
  check_special(v.eot_id, "eot_token_id");

  std::vector<int32_t> types(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = v.types[i];
    if (t < kUndefined || t > kByte)
      fail(where + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] = " + std::to_string(t) +
           " is not a known token type");
    if (v.pieces[i].empty()) fail(where + ": tokenizer.ggml.tokens[" + std::to_string(i) + "] is empty");
    if (t == kByte && byte_of_piece(v.pieces[i]) < 0)
      fail(where + ": byte token " + std::to_string(i) + " '" + v.pieces[i] + "' is not of the form <0xNN>");
    types[i] = t == kUndefined ? kNormal : t;
  }
  // SentencePiece needs exactly one unknown piece. GGUF files often mark <unk> as a control token and name it
  // through unknown_token_id instead, so the id decides.
  if (v.unk_id >= 0) {
    for (int32_t& t : types)
      if (t == kUnknown) t = kControl;
    types[v.unk_id] = kUnknown;
  } else if (std::count(types.begin(), types.end(), kUnknown) != 1) {
    fail(where + ": the vocabulary needs exactly one unknown token (tokenizer.ggml.unknown_token_id is not set)");
  }

  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->processor_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = tok->processor_->LoadFromSerializedProto(serialize_model_proto(v, types));
  if (!status.ok()) fail(where + ": the SentencePiece vocabulary was rejected: " + status.ToString());

  tok->pieces_ = v.pieces;
  tok->kinds_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    switch (types[i]) {
      case kControl: tok->kinds_[i] = PieceKind::kControl; break;
      case kUnknown: tok->kinds_[i] = PieceKind::kUnknown; break;
      case kByte: tok->kinds_[i] = PieceKind::kByte; break;
      default: tok->kinds_[i] = PieceKind::kText; break;
    }
  }
  tok->bos_ = v.bos_id;
  tok->eos_ = v.eos_id;
  tok->add_bos_ = v.add_bos;
  tok->add_space_prefix_ = v.add_space_prefix;
  if (v.eos_id >= 0) tok->end_of_generation_.push_back(v.eos_id);
  if (v.eot_id >= 0) tok->end_of_generation_.push_back(v.eot_id);
  const int end_of_turn = tok->processor_->PieceToId("<end_of_turn>");
  if (end_of_turn >= 0 && v.pieces[end_of_turn] == "<end_of_turn>") tok->end_of_generation_.push_back(end_of_turn);
  return tok;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab_size()));
}

const std::string& Tokenizer::piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

Tokenizer::PieceKind Tokenizer::kind(int32_t id) const {
  check_id(id);
  return kinds_[id];
}

std::string Tokenizer::surface(int32_t id) const {
  switch (kind(id)) {
    case PieceKind::kControl: return "";
    case PieceKind::kUnknown: return kUnknownSurface;
    case PieceKind::kByte: return std::string(1, static_cast<char>(byte_of_piece(pieces_[id])));
    case PieceKind::kText: break;
  }
  return replace_all(pieces_[id], kSpaceSymbol, " ");
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(end_of_generation_.begin(), end_of_generation_.end(), id) != end_of_generation_.end();
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  if (!status.ok()) fail("tokenizer: cannot encode the text: " + status.ToString());
  std::vector<int32_t> out;
  out.reserve(ids.size() + 1);
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) check_id(id);
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) fail("tokenizer: cannot decode the ids: " + status.ToString());
  return text;
}

// ---- streaming ----

namespace {

// Length of the UTF-8 sequence `lead` starts, or 0 when it cannot start one.
size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

// Same acceptance rule as SentencePiece's decoder: trail bytes, shortest form, no surrogates, <= U+10FFFF.
bool is_valid_utf8_sequence(const unsigned char* s, size_t len) {
  static constexpr uint32_t kMinimum[5] = {0, 0, 0x80, 0x800, 0x10000};
  static constexpr unsigned char kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t cp = s[0] & kLeadMask[len];
  for (size_t i = 1; i < len; ++i) {
    if ((s[i] & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  return cp >= kMinimum[len] && (cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF));
}

}  // namespace

DetokenizeStream::DetokenizeStream(const Tokenizer& tokenizer, bool at_text_start)
    : tokenizer_(tokenizer), strip_leading_space_(at_text_start && tokenizer.add_space_prefix()) {}

std::string DetokenizeStream::release_bytes(bool run_ended) {
  std::string out;
  size_t pos = 0;
  const auto* bytes = reinterpret_cast<const unsigned char*>(pending_bytes_.data());
  while (pos < pending_bytes_.size()) {
    const size_t want = utf8_sequence_length(bytes[pos]);
    const size_t have = pending_bytes_.size() - pos;
    if (want != 0 && have < want && !run_ended) break;  // the rest of the character may still come
    if (want != 0 && have >= want && is_valid_utf8_sequence(bytes + pos, want)) {
      out.append(pending_bytes_, pos, want);
      pos += want;
    } else {
      out += kReplacementChar;
      pos += 1;
    }
  }
  pending_bytes_.erase(0, pos);
  if (!out.empty()) text_empty_ = false;
  return out;
}

std::string DetokenizeStream::push(int32_t id) {
  const Tokenizer::PieceKind kind = tokenizer_.kind(id);
  if (kind == Tokenizer::PieceKind::kByte) {
    pending_bytes_ += tokenizer_.surface(id);
    return release_bytes(false);
  }
  std::string out = release_bytes(true);
  // Mirrors SentencePiece's decoder: only the first visible piece of a text loses its dummy-prefix space.
  if (leading_space_seen_ || !text_empty_) strip_leading_space_ = false;
  std::string surface = tokenizer_.surface(id);
  leading_space_seen_ = false;
  if (kind == Tokenizer::PieceKind::kText && strip_leading_space_ && !surface.empty() && surface[0] == ' ') {
    surface.erase(0, 1);
    leading_space_seen_ = true;
  }
  if (!surface.empty()) text_empty_ = false;
  return out + surface;
}

std::string DetokenizeStream::flush() { return release_bytes(true); }

}  // namespace swrun
