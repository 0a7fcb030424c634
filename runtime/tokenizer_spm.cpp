// SentencePiece tokenizer: the GGUF vocabulary serialized into a ModelProto and run by libsentencepiece.
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

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
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

namespace {

class SpmTokenizer : public Tokenizer {
 public:
  SpmTokenizer(const SpmVocabulary& v, const std::vector<int32_t>& types, const std::string& where) {
    processor_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = processor_->LoadFromSerializedProto(serialize_model_proto(v, types));
    if (!status.ok()) fail(where + ": the SentencePiece vocabulary was rejected: " + status.ToString());

    const size_t n = v.pieces.size();
    pieces_ = v.pieces;
    types_.resize(n);
    kinds_.resize(n);
    surfaces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      types_[i] = static_cast<TokenType>(types[i]);
      switch (types[i]) {
        case kControl: kinds_[i] = PieceKind::kControl; break;
        case kUnknown:
          kinds_[i] = PieceKind::kUnknown;
          surfaces_[i] = kUnknownSurface;
          break;
        case kByte:
          kinds_[i] = PieceKind::kBytes;
          surfaces_[i] = std::string(1, static_cast<char>(byte_of_piece(v.pieces[i])));
          break;
        default:
          kinds_[i] = PieceKind::kText;
          surfaces_[i] = replace_all(v.pieces[i], kSpaceSymbol, " ");
          break;
      }
    }
    bos_ = v.bos_id;
    eos_ = v.eos_id;
    add_bos_ = v.add_bos;
    add_space_prefix_ = v.add_space_prefix;
    collect_end_of_generation({v.eos_id, v.eot_id});
    index_special_tokens();
  }

  // SentencePiece itself reads control pieces in the text as ordinary text. With parse_special they are cut out
  // first and every stretch of text between them is encoded on its own, which gives each stretch the dummy
  // prefix as llama.cpp does after a special token.
  std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    if (!parse_special) {
      append_encoded(text, out);
      return out;
    }
    for (const Fragment& f : split_special(text, true)) {
      if (f.token >= 0) out.push_back(f.token);
      else append_encoded(std::string(f.text), out);
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    for (int32_t id : ids) check_id(id);
    std::string text;
    const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok()) fail("tokenizer: cannot decode the ids: " + status.ToString());
    return text;
  }

 private:
  void append_encoded(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<int> ids;
    const auto status = processor_->Encode(text, &ids);
    if (!status.ok()) fail("tokenizer: cannot encode the text: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_vocabulary(const SpmVocabulary& v, const std::string& where) {
  const size_t n = v.pieces.size();
  if (n == 0) fail(where + ": tokenizer.ggml.tokens is empty");
  check_entry_count(where, "scores", v.scores.size(), n);
  check_entry_count(where, "token_type", v.types.size(), n);
  check_special_id(where, "bos_token_id", v.bos_id, n);
  check_special_id(where, "eos_token_id", v.eos_id, n);
  check_special_id(where, "unknown_token_id", v.unk_id, n);
  check_special_id(where, "padding_token_id", v.pad_id, n);
  check_special_id(where, "eot_token_id", v.eot_id, n);

  std::vector<int32_t> types(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = v.types[i];
    check_token_type(where, i, t);
    if (v.pieces[i].empty()) fail(where + ": tokenizer.ggml.tokens[" + std::to_string(i) + "] is empty");
    if (t == kByte && byte_of_piece(v.pieces[i]) < 0)
      fail(where + ": byte token " + std::to_string(i) + " '" + v.pieces[i] + "' is not of the form <0xNN>");
    types[i] = t == kUndefined ? kNormal : t;
    if ((t == kNormal || t == kUserDefined) && is_end_of_turn_piece(v.pieces[i])) types[i] = kControl;
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

  return std::make_unique<SpmTokenizer>(v, types, where);
}

}  // namespace swrun
