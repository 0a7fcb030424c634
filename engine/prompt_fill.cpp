#include "engine/prompt_fill.h"

#include <string>

#include "runtime/common.h"

namespace swrun {

std::vector<int32_t> fill_prompt(const std::vector<int32_t>& tokens, int32_t bos, int64_t n) {
  if (n < 1) fail("--prompt-len " + std::to_string(n) + " must be at least 1");
  const bool has_bos = bos >= 0 && !tokens.empty() && tokens.front() == bos;
  const size_t text_begin = has_bos ? 1 : 0;
  if (tokens.size() <= text_begin) fail("--prompt-len needs a prompt (-p or -f) with at least one token of text");
  const size_t period = tokens.size() - text_begin;
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n));
  if (has_bos) out.push_back(bos);
  for (size_t i = 0; out.size() < static_cast<size_t>(n); ++i) out.push_back(tokens[text_begin + i % period]);
  return out;
}

}  // namespace swrun
