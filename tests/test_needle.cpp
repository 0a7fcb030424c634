// Needle prompts (engine/needle.h) on a byte-level SentencePiece vocabulary, where every character is one token:
// exact lengths, the needle between two sentences near its depth, the same plan for the same seed, lengths too short
// for the fixed text refused, and the number read from an answer.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

#include "engine/needle.h"
#include "runtime/tokenizer.h"
#include "tests/error_of.h"

namespace swrun {
namespace {

std::unique_ptr<Tokenizer> byte_tokenizer() {
  SpmVocabulary v;
  auto add = [&](const std::string& piece, int32_t type) {
    v.pieces.push_back(piece);
    v.scores.push_back(0);
    v.types.push_back(type);
  };
  add("<unk>", 3);
  add("<s>", 3);
  add("</s>", 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 6);
  }
  add("\xE2\x96\x81", 1);  // SentencePiece's space, so that a space is one token and decodes as one
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = false;
  return Tokenizer::from_vocabulary(v, "bytes");
}

const char* const kFiller = "One two three. Four five six seven. Eight nine ten.";

TEST(NeedlePrompts, ExactLengthNeedleBetweenSentencesNearItsDepth) {
  auto tok = byte_tokenizer();
  const NeedlePrompts prompts(*tok, kFiller);
  const std::vector<NeedlePlan> plans = prompts.plan({300, 1000}, {0, 0.5, 1}, 3, 7);
  ASSERT_EQ(plans.size(), 2u * 3u * 3u);
  for (const NeedlePlan& plan : plans) {
    const NeedlePrompt p = prompts.build(plan);
    ASSERT_EQ(static_cast<int>(p.tokens.size()), plan.length);
    EXPECT_EQ(p.tokens[0], tok->bos());
    const std::string text = tok->decode(p.tokens);
    const std::string needle = " The special magic number for " + plan.key + " is " + plan.number + ".";
    const std::string question = "What is the special magic number for " + plan.key + "?";
    ASSERT_NE(text.find(needle), std::string::npos) << text;
    EXPECT_LT(text.find(needle), text.find(question));
    const std::string ending = "The special magic number for " + plan.key + " is";
    EXPECT_EQ(text.substr(text.size() - ending.size()), ending);
    // Between two sentences (after the preface line at depth 0; before the question at depth 1).
    const size_t at = text.find(needle);
    EXPECT_TRUE(text[at - 1] == '.' || text[at - 1] == '\n') << text.substr(at - 10, 20);
    EXPECT_TRUE(text[at + needle.size()] == ' ' || text[at + needle.size()] == '\n') << text.substr(at, needle.size() + 10);
    // At or before its target, by at most a sentence of the filler (21 characters here).
    // Filler characters: between the preface line and the question, less the needle (one token each).
    const double filler = text.find("\n\nWhat is") - (text.find('\n') + 1) - needle.size();
    EXPECT_LE(p.placed_depth, plan.target + 1e-9);
    EXPECT_LT((plan.target - p.placed_depth) * filler, 22) << plan.target << " -> " << p.placed_depth;
    EXPECT_EQ(plan.number.size(), 7u);
  }
}

TEST(NeedlePrompts, SameSeedSamePlanOwnKeysPerCell) {
  auto tok = byte_tokenizer();
  const NeedlePrompts prompts(*tok, kFiller);
  const auto a = prompts.plan({500}, {0.25, 0.75}, 4, 3), b = prompts.plan({500}, {0.25, 0.75}, 4, 3);
  ASSERT_EQ(a.size(), 8u);
  std::set<std::string> numbers;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].key, b[i].key);
    EXPECT_EQ(a[i].number, b[i].number);
    EXPECT_EQ(a[i].target, b[i].target);
    EXPECT_LE(std::abs(a[i].target - a[i].depth), 0.02 + 1e-12);
    numbers.insert(a[i].number);
  }
  EXPECT_EQ(numbers.size(), a.size());
  EXPECT_NE(prompts.plan({500}, {0.25, 0.75}, 4, 4)[0].number, a[0].number);
}

TEST(NeedlePrompts, LengthWithoutRoomForTheFillerIsRefused) {
  auto tok = byte_tokenizer();
  const NeedlePrompts prompts(*tok, kFiller);
  EXPECT_NE(testing::error_of([&] { prompts.plan({1000, 100}, {0.5}, 1, 1); }).find("length 100 leaves no room"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { NeedlePrompts(*tok, " \n"); }).find("no words"), std::string::npos);
}

TEST(NeedleAnswer, TheFirstRunOfDigits) {
  EXPECT_EQ(answer_number("4826193. Each market day"), "4826193");
  EXPECT_EQ(answer_number("it is 48 26193"), "48");
  EXPECT_EQ(answer_number("slow in summer"), "");
}

}  // namespace
}  // namespace swrun
