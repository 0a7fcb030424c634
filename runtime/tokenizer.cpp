// What all tokenizer kinds share: picking one by tokenizer.ggml.model, per-id facts, end-of-generation ids, and
// the streaming detokenizer that holds partial UTF-8 characters back.
#include "runtime/tokenizer.h"

#include <algorithm>
#include <iterator>

#include "runtime/common.h"
#include "runtime/gguf.h"

namespace swrun {
namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

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

// Moves the complete characters at the front of `bytes` to the result; invalid bytes become U+FFFD. A character
// cut short at the end stays in `bytes` unless `run_ended`, when it becomes U+FFFD per byte.
std::string take_utf8(std::string& bytes, bool run_ended) {
  std::string out;
  size_t pos = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  while (pos < bytes.size()) {
    const size_t want = utf8_sequence_length(b[pos]);
    const size_t have = bytes.size() - pos;
    if (want != 0 && have < want && !run_ended) {
      // Only wait when what is there so far can still become a valid character.
      bool can_complete = true;
      for (size_t i = 1; i < have; ++i) can_complete &= (b[pos + i] & 0xC0) == 0x80;
      if (can_complete) break;
    }
    if (want != 0 && have >= want && is_valid_utf8_sequence(b + pos, want)) {
      out.append(bytes, pos, want);
      pos += want;
    } else {
      out += kReplacementChar;
      pos += 1;
    }
  }
  bytes.erase(0, pos);
  return out;
}

}  // namespace

bool is_end_of_turn_piece(const std::string& piece) {
  // llama.cpp's list (src/llama-vocab.cpp, special_eog_ids), which it also forces to control type.
  static const char* const kPieces[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
      "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
      "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
      "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~["};
  return std::find(std::begin(kPieces), std::end(kPieces), piece) != std::end(kPieces);
}

int byte_of_piece(const std::string& piece) {
  const auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  const int high = hex(piece[3]), low = hex(piece[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

std::string sanitize_utf8(const std::string& text) {
  std::string bytes = text;
  return take_utf8(bytes, true);
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  const std::string& where = file.path();
  if (!file.has("tokenizer.ggml.model"))
    fail(where + ": no tokenizer in this file (metadata key tokenizer.ggml.model is missing)");
  const std::string model = file.get_string("tokenizer.ggml.model");
  if (model == "llama") return from_vocabulary(SpmVocabulary::from_gguf(file), where);
  if (model == "gpt2" || model == "gemma4") return from_vocabulary(BpeVocabulary::from_gguf(file), where);
  fail(where + ": tokenizer model '" + model +
       "' is not supported (SentencePiece 'llama', byte-level BPE 'gpt2' and Gemma 4's 'gemma4' vocabularies are)");
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab_size()));
}

void Tokenizer::check_entry_count(const std::string& where, const char* key, size_t count, size_t n_tokens) {
  if (count != n_tokens)
    fail(where + ": tokenizer.ggml." + key + " has " + std::to_string(count) + " entries for " +
         std::to_string(n_tokens) + " tokens");
}

void Tokenizer::check_token_type(const std::string& where, size_t i, int32_t type) {
  if (type < kUndefined || type > kByte)
    fail(where + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] = " + std::to_string(type) +
         " is not a known token type");
}

void Tokenizer::check_special_id(const std::string& where, const char* key, int32_t id, size_t n_tokens) {
  if (id < -1 || id >= static_cast<int64_t>(n_tokens))
    fail(where + ": tokenizer.ggml." + key + " = " + std::to_string(id) + " is outside the vocabulary of " +
         std::to_string(n_tokens));
}

const std::string& Tokenizer::piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

TokenType Tokenizer::type(int32_t id) const {
  check_id(id);
  return types_[id];
}

Tokenizer::PieceKind Tokenizer::kind(int32_t id) const {
  check_id(id);
  return kinds_[id];
}

const std::string& Tokenizer::surface(int32_t id) const {
  check_id(id);
  return surfaces_[id];
}

void Tokenizer::collect_end_of_generation(const std::vector<int32_t>& ids) {
  for (int32_t id : ids)
    if (id >= 0) end_of_generation_.push_back(id);
  for (int32_t id = 0; id < vocab_size(); ++id)
    if (types_[id] == kControl && is_end_of_turn_piece(pieces_[id])) end_of_generation_.push_back(id);
}

void Tokenizer::index_special_tokens() {
  for (int32_t id = 0; id < vocab_size(); ++id)
    if ((types_[id] == kControl || types_[id] == kUnknown || types_[id] == kUserDefined) && !pieces_[id].empty())
      special_by_length_.push_back(id);
  std::stable_sort(special_by_length_.begin(), special_by_length_.end(),
                   [&](int32_t a, int32_t b) { return pieces_[a].size() > pieces_[b].size(); });
}

std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text, bool all_special) const {
  std::vector<Fragment> fragments, next;
  if (!text.empty()) fragments.push_back({text});
  for (int32_t id : special_by_length_) {
    if (!all_special && types_[id] != kUserDefined) continue;
    const std::string& token = pieces_[id];
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t start = 0;
      for (size_t hit = f.text.find(token); hit != std::string_view::npos; hit = f.text.find(token, start)) {
        if (hit > start) next.push_back({f.text.substr(start, hit - start)});
        next.push_back({{}, id});
        start = hit + token.size();
      }
      if (start < f.text.size()) next.push_back({f.text.substr(start)});
    }
    fragments.swap(next);
  }
  return fragments;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(end_of_generation_.begin(), end_of_generation_.end(), id) != end_of_generation_.end();
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) check_id(id);
  DetokenizeStream stream(*this, /*at_text_start=*/true);
  std::string text;
  for (int32_t id : ids) text += stream.push(id);
  return text + stream.flush();
}

// ---- streaming ----

DetokenizeStream::DetokenizeStream(const Tokenizer& tokenizer, bool at_text_start)
    : tokenizer_(tokenizer), strip_leading_space_(at_text_start && tokenizer.add_space_prefix()) {}

std::string DetokenizeStream::release_bytes(bool run_ended) {
  std::string out = take_utf8(pending_bytes_, run_ended);
  if (!out.empty()) text_empty_ = false;
  return out;
}

std::string DetokenizeStream::push(int32_t id) {
  const Tokenizer::PieceKind kind = tokenizer_.kind(id);
  if (kind == Tokenizer::PieceKind::kBytes) {
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
