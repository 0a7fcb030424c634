// --prompt-len filling: exact length, BOS once, the text repeated periodically.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/common.h"
#include "engine/prompt_fill.h"

namespace swrun {
namespace {

constexpr int32_t kBos = 2;

TEST(PromptFill, ExactLengthBosOnceTextPeriodic) {
  const std::vector<int32_t> prompt{kBos, 10, 11, 12};
  for (int64_t n : {1, 2, 3, 4, 5, 7, 100, 32768}) {
    const std::vector<int32_t> out = fill_prompt(prompt, kBos, n);
    ASSERT_EQ(static_cast<int64_t>(out.size()), n);
    EXPECT_EQ(out[0], kBos);
    for (int64_t i = 1; i < n; ++i) {
      EXPECT_NE(out[i], kBos) << i;
      ASSERT_EQ(out[i], prompt[1 + (i - 1) % 3]) << "n " << n << " at " << i;
    }
  }
}

TEST(PromptFill, ShorterLengthCutsThePrompt) {
  EXPECT_EQ(fill_prompt({kBos, 10, 11, 12, 13}, kBos, 3), (std::vector<int32_t>{kBos, 10, 11}));
}

TEST(PromptFill, ModelWithoutBosRepeatsEverything) {
  EXPECT_EQ(fill_prompt({5, 6}, -1, 5), (std::vector<int32_t>{5, 6, 5, 6, 5}));
  // A prompt that does not start with the BOS id has no BOS to keep at the front.
  EXPECT_EQ(fill_prompt({5, 6}, kBos, 5), (std::vector<int32_t>{5, 6, 5, 6, 5}));
}

TEST(PromptFill, ABosInsideTheTextIsRepeatedWithIt) {
  EXPECT_EQ(fill_prompt({kBos, 7, kBos}, kBos, 6), (std::vector<int32_t>{kBos, 7, kBos, 7, kBos, 7}));
}

TEST(PromptFill, NoTextTokensOrNoLengthIsAnError) {
  EXPECT_THROW(fill_prompt({}, kBos, 10), Error);
  EXPECT_THROW(fill_prompt({}, -1, 10), Error);
  try {
    fill_prompt({kBos}, kBos, 10);
    FAIL() << "a BOS-only prompt was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--prompt-len"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fill_prompt({kBos, 10}, kBos, 0), Error);
  EXPECT_THROW(fill_prompt({kBos, 10}, kBos, -5), Error);
}

}  // namespace
}  // namespace swrun
