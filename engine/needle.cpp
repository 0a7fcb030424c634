#include "engine/needle.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "models/model.h"
#include "runtime/common.h"
#include "engine/generate.h"
#include "engine/prompt_fill.h"
#include "runtime/tokenizer.h"

namespace swrun {
namespace {

// Tells the model what the text hides; without it Gemma 3 270M answers a needle 900 tokens back with a newline.
const char* const kPreface = "A few special magic numbers are hidden in the text below. Remember them.\n";

// How far back from its target depth a needle may move to sit between two sentences (beyond: at the target).
constexpr int kSentenceSearch = 256;

// Depth jitter of the needles of one cell: uniform in +/- this fraction of the filler.
constexpr double kDepthJitter = 0.02;

std::string needle_text(const NeedlePlan& p) {
  return " The special magic number for " + p.key + " is " + p.number + ".";
}

std::string question_text(const NeedlePlan& p) {
  return "\n\nWhat is the special magic number for " + p.key + "? The special magic number for " + p.key + " is";
}

// Keys are "adjective-noun" pairs of words the built-in filler never uses, so that only the needle names them (one
// needle per prompt: keys may repeat between trials).
std::string random_key(std::mt19937_64& rng) {
  static const char* const kAdjectives[] = {"amber", "brisk", "cobalt", "dusty", "eager", "fuzzy", "gilded", "hollow",
                                            "icy", "jolly", "keen", "lunar", "mossy", "nimble", "opal", "plucky"};
  static const char* const kNouns[] = {"anchor", "badger", "compass", "dragon", "engine", "falcon", "garnet", "harbor",
                                       "igloo", "jackal", "kettle", "lantern", "magnet", "nectar", "otter", "pepper"};
  std::uniform_int_distribution<int> pick(0, 15);
  const std::string adjective = kAdjectives[pick(rng)];
  return adjective + "-" + kNouns[pick(rng)];
}

bool ends_sentence(const std::string& text) {
  if (text.find('\n') != std::string::npos) return true;
  const size_t last = text.find_last_not_of(' ');
  return last != std::string::npos && (text[last] == '.' || text[last] == '!' || text[last] == '?');
}

bool starts_with_space(const std::string& text) { return !text.empty() && (text[0] == ' ' || text[0] == '\n'); }

// The answer as scored and reported: up to its first newline, without the space that follows "is".
std::string trimmed(const std::string& text) {
  const std::string line = text.substr(0, text.find('\n'));
  const size_t first = line.find_first_not_of(" \t"), last = line.find_last_not_of(" \t\r");
  return first == std::string::npos ? "" : line.substr(first, last - first + 1);
}

}  // namespace

const std::string& builtin_haystack() {
  static const std::string text =
      "The river that runs past the old mill is slow in summer and loud in spring. Farmers along its banks plant "
      "barley in the low fields and apples on the slopes above, where the frost lifts early. Each market day the "
      "carts come down the hill road before sunrise, loaded with bread, cheese, wool and firewood, and the square "
      "fills with talk of prices and rain. The miller keeps a ledger of every sack he grinds, and the schoolmaster "
      "teaches the children to read from the same worn books their parents used. In the evenings the lamps are lit "
      "one by one along the bridge, and the ferryman ties his boat to the post beside the inn. Travellers who stay "
      "the night are told that the valley has changed little in a hundred years, and most of them believe it. In "
      "autumn the geese pass over the marsh in long lines, and the boys climb the church tower to count them. The "
      "blacksmith says the winters were harder when he was young, though nobody can remember one that was not.";
  return text;
}

NeedlePrompts::NeedlePrompts(const Tokenizer& tok, const std::string& haystack) : tok_(tok) {
  // Each repetition of the text starts with a space, as every sentence inside it does, so that repetitions join
  // as sentences do and a needle at the very start is followed by a word of its own.
  const size_t first = haystack.find_first_not_of(" \t\r\n"), last = haystack.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) fail("needle: the haystack text has no words");
  filler_ = encode(" " + haystack.substr(first, last - first + 1));
  preface_ = encode(kPreface);
  for (int32_t id : filler_) {
    ends_sentence_.push_back(ends_sentence(tok_.surface(id)));
    starts_word_.push_back(starts_with_space(tok_.surface(id)));
  }
}

bool NeedlePrompts::sentence_gap(int at, int filler_len) const {
  const size_t n = filler_.size();
  return (at == 0 || ends_sentence_[(at - 1) % n]) && (at == filler_len || starts_word_[at % n]);
}

std::vector<int32_t> NeedlePrompts::encode(const std::string& text) const { return tok_.encode(text, false); }

int NeedlePrompts::fixed_tokens(const NeedlePlan& plan) const {
  const int bos = tok_.add_bos() && tok_.bos() >= 0 ? 1 : 0;
  return bos + static_cast<int>(preface_.size() + encode(needle_text(plan)).size() +
                                encode(question_text(plan)).size());
}

std::vector<NeedlePlan> NeedlePrompts::plan(const std::vector<int>& lengths, const std::vector<double>& depths,
                                            int needles, uint64_t seed) const {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> number(1000000, 9999999);
  std::uniform_real_distribution<double> jitter(-kDepthJitter, kDepthJitter);
  std::vector<NeedlePlan> plans;
  for (int length : lengths)
    for (double depth : depths)
      for (int n = 0; n < needles; ++n) {
        NeedlePlan p;
        p.length = length;
        p.depth = depth;
        p.needle = n;
        p.target = std::clamp(depth + jitter(rng), 0.0, 1.0);
        p.key = random_key(rng);
        p.number = std::to_string(number(rng));
        const int fixed = fixed_tokens(p);
        if (length <= fixed)
          fail("needle: length " + std::to_string(length) + " leaves no room for the haystack: the preface, needle "
               "and question take " + std::to_string(fixed) + " of its tokens");
        plans.push_back(p);
      }
  return plans;
}

NeedlePrompt NeedlePrompts::build(const NeedlePlan& plan) const {
  const std::vector<int32_t> needle = encode(needle_text(plan)), question = encode(question_text(plan));
  const int filler_len = plan.length - fixed_tokens(plan);
  const std::vector<int32_t> filler = fill_prompt(filler_, -1, filler_len);
  // The needle goes between two sentences: the nearest gap at or before its target.
  const int target = static_cast<int>(std::lround(plan.target * filler_len));
  int at = target;
  while (at > 0 && target - at < kSentenceSearch && !sentence_gap(at, filler_len)) --at;
  if (!sentence_gap(at, filler_len)) at = target;

  NeedlePrompt p;
  if (tok_.add_bos() && tok_.bos() >= 0) p.tokens.push_back(tok_.bos());
  p.tokens.insert(p.tokens.end(), preface_.begin(), preface_.end());
  p.tokens.insert(p.tokens.end(), filler.begin(), filler.begin() + at);
  p.needle_pos = static_cast<int>(p.tokens.size());
  p.tokens.insert(p.tokens.end(), needle.begin(), needle.end());
  p.tokens.insert(p.tokens.end(), filler.begin() + at, filler.end());
  p.tokens.insert(p.tokens.end(), question.begin(), question.end());
  p.placed_depth = filler_len > 0 ? double(at) / filler_len : 0.0;
  return p;
}

std::string answer_number(const std::string& answer) {
  const size_t first = answer.find_first_of("0123456789");
  if (first == std::string::npos) return "";
  const size_t end = answer.find_first_not_of("0123456789", first);
  return answer.substr(first, end == std::string::npos ? std::string::npos : end - first);
}

std::vector<NeedleTrial> run_needle(Model& model, const Tokenizer& tok, const NeedlePrompts& prompts,
                                    const std::vector<NeedlePlan>& plans, const std::vector<std::string>& specs,
                                    const NeedleOptions& opt,
                                    const std::function<void(const NeedleProgress&)>& progress) {
  int longest = 1;
  double tokens_per_spec = 0;
  for (const NeedlePlan& p : plans) {
    longest = std::max(longest, p.length);
    tokens_per_spec += p.length;
  }
  const int ctx = longest + opt.answer_tokens;
  GenerateOptions go;
  go.n_predict = opt.answer_tokens;
  go.ubatch = opt.ubatch;
  go.sampler.temperature = 0;  // greedy
  go.stop_after = [&tok](int32_t id) { return tok.decode({id}).find('\n') != std::string::npos; };

  NeedleProgress pr;
  pr.total = static_cast<int>(plans.size() * specs.size());
  pr.tokens_total = tokens_per_spec * specs.size();
  const double t_start = now_ms();
  std::vector<NeedleTrial> trials;
  for (const std::string& spec : specs) {
    model.set_attention(AttnSpec::parse(spec));
    model.init_kv(ctx, opt.ubatch);
    for (const NeedlePlan& plan : plans) {
      const double t0 = now_ms();
      const NeedlePrompt prompt = prompts.build(plan);
      std::vector<int32_t> ids;
      generate(model, tok, prompt.tokens, ctx, go, [&](int32_t id) { ids.push_back(id); });
      NeedleTrial t;
      t.attn = spec;
      t.plan = plan;
      t.needle_pos = prompt.needle_pos;
      t.distance = plan.length - prompt.needle_pos;
      t.placed_depth = prompt.placed_depth;
      t.answer = trimmed(tok.decode(ids));
      t.found = answer_number(t.answer) == plan.number;
      t.ms = now_ms() - t0;
      trials.push_back(std::move(t));
      ++pr.done;
      pr.tokens_done += plan.length;
      pr.elapsed_ms = now_ms() - t_start;
      pr.last = &trials.back();
      if (progress) progress(pr);
    }
  }
  return trials;
}

}  // namespace swrun
