// Needle in a haystack (the single-needle retrieval task of RULER's niah family) over any Model: a key-value fact
// ("The special magic number for <key> is <7 digits>.") is planted at a given depth of a filler text cut to a given
// prompt length, the prompt ends with the question, the model answers greedily and the answer is scored by exact
// match of the number. Each (length, depth) cell holds several needles with their own keys, numbers and a small
// depth jitter, so a cell is a rate; every attention spec answers the very same prompts.
//
// A prompt of `length` tokens is: BOS (when the vocabulary adds one), a one-line preface saying that magic numbers
// are hidden in the text, the filler tokens with the needle inserted between two sentences, then the question. The
// preface matters on small models: Gemma 3 270M retrieves a needle 900 tokens back with it and misses without it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace swrun {

class Model;
class Tokenizer;

// The built-in filler: an original paragraph of plain prose (repeated to length), for runs without -f.
const std::string& builtin_haystack();

// One planned trial: the same for every attention spec.
struct NeedlePlan {
  int length = 0;       // prompt tokens
  double depth = 0;     // the cell's depth (fraction of the filler tokens before the needle)
  int needle = 0;       // index within the cell
  double target = 0;    // the depth with its jitter, in [0, 1]
  std::string key, number;
};

// A built prompt: its tokens and where the needle landed.
struct NeedlePrompt {
  std::vector<int32_t> tokens;
  int needle_pos = 0;        // position of the needle's first token
  double placed_depth = 0;   // filler tokens before the needle / filler tokens
};

// Tokenizes the filler and the fixed texts once; builds each trial's prompt from them.
class NeedlePrompts {
 public:
  // Throws Error when the filler has no tokens.
  NeedlePrompts(const Tokenizer& tok, const std::string& haystack);
  // Plans needles trials per (length, depth) cell from `seed` (keys, numbers, jitter). Throws Error, naming the
  // length, when a length leaves no room for the filler next to the preface, needle and question.
  std::vector<NeedlePlan> plan(const std::vector<int>& lengths, const std::vector<double>& depths, int needles,
                               uint64_t seed) const;
  // The prompt of one planned trial: exactly plan.length tokens.
  NeedlePrompt build(const NeedlePlan& plan) const;

 private:
  std::vector<int32_t> encode(const std::string& text) const;
  int fixed_tokens(const NeedlePlan& plan) const;  // BOS, preface, needle and question
  const Tokenizer& tok_;
  std::vector<int32_t> filler_, preface_;
  // Whether a needle fits before filler token `at` (of filler_len): after a sentence end, before a word's space.
  bool sentence_gap(int at, int filler_len) const;
  std::vector<bool> ends_sentence_, starts_word_;  // per token of the filler's text
};

// One trial's outcome under one spec.
struct NeedleTrial {
  std::string attn;
  NeedlePlan plan;
  int needle_pos = 0;
  int distance = 0;  // tokens from the needle's first token to the end of the prompt: what attention must reach
  double placed_depth = 0;
  std::string answer;  // the decoded answer, up to its first newline, trimmed
  bool found = false;
  double ms = 0;       // prefill and answer
};

struct NeedleProgress {
  int done = 0, total = 0;         // trials
  double tokens_done = 0, tokens_total = 0;  // prompt tokens, the measure of the work for the ETA
  double elapsed_ms = 0;
  const NeedleTrial* last = nullptr;
};

struct NeedleOptions {
  int ubatch = 512;
  int answer_tokens = 12;  // greedy tokens at most; the answer stops at its first newline
};

// The number the answer gives: its first run of digits ("" when none). Exact match is answer_number == number.
std::string answer_number(const std::string& answer);

// Runs every planned trial under each spec (spec-major: the model's policy is set once per spec and its KV cache
// sized for the longest prompt plus the answer). The model must have been loaded with a batch of opt.ubatch.
std::vector<NeedleTrial> run_needle(Model& model, const Tokenizer& tok, const NeedlePrompts& prompts,
                                    const std::vector<NeedlePlan>& plans, const std::vector<std::string>& specs,
                                    const NeedleOptions& opt,
                                    const std::function<void(const NeedleProgress&)>& progress);

}  // namespace swrun
