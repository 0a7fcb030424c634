// --prompt-len: a prompt of an exact length made by repeating a shorter text.
#pragma once
#include <cstdint>
#include <vector>

namespace swrun {

// `tokens` is the encoded -p/-f text, starting with `bos` when the tokenizer adds one (pass bos = -1 for a model
// without BOS). Returns exactly n tokens: the BOS once (when present), then the text tokens repeated as often as
// needed and cut at n. Throws Error when n < 1 or the text has no tokens besides the BOS.
std::vector<int32_t> fill_prompt(const std::vector<int32_t>& tokens, int32_t bos, int64_t n);

}  // namespace swrun
