// Pre-tokenizer regexes per tokenizer.ggml.pre, run by PCRE2 (UTF + Unicode properties, JIT-compiled).
//
// The regex strings are llama.cpp's (src/llama-vocab.cpp). llama.cpp runs them with its own machinery
// (src/unicode.cpp), and these adaptations make PCRE2 split exactly as it does:
// - \s is llama.cpp's whitespace set (Unicode White_Space), spelled out: PCRE2 10.42's \s under UCP also takes
//   U+180E. See with_llama_whitespace().
// - Contractions are spelled '[sS] instead of (?i:'s): llama.cpp lower-cases only the letter after the quote,
//   while PCRE2's caseless matching under UCP would also take e.g. the long s (U+017F) for 's'.
// - Patterns without \p{..} run in llama.cpp on text whose non-ASCII whitespace was replaced by a vertical tab,
//   so a literal character range there never matches non-ASCII whitespace: U+3000 is left out of deepseek-llm's
//   punctuation range, and the CJK ranges (which span U+1680..U+3000) exclude whitespace by a lookahead.
// - A pattern's $ is the end of the piece being split (no newline before it), as in ECMAScript.
// - Text no pattern matches becomes a word of its own, so GPT-2's pattern ends with llama.cpp's implicit \s+.
#include "runtime/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime/common.h"

namespace swrun {
namespace {

constexpr const char* kContractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
constexpr const char* kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kCjk = "(?:(?!\\s)[一-龥ࠀ-一가-퟿])+";

std::string llama3_like(const char* digits) {
  return std::string(kContractions) + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" + digits +
         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
}

struct PreTokenizerKind {
  std::vector<std::string> names;
  std::vector<std::string> patterns;
  bool ignore_merges = false;
  bool adds_bos_by_default = false;
};

const std::vector<PreTokenizerKind>& kinds() {
  static const std::vector<PreTokenizerKind> table = {
      {{"default"}, {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {llama3_like("\\p{N}{1,3}")}, /*ignore_merges=*/true, /*adds_bos_by_default=*/true},
      {{"dbrx", "smaug-bpe"}, {llama3_like("\\p{N}{1,3}")}},
      {{"deepseek-llm"},
       {"[\\r\\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟、-。]+", "\\s+$", kCjk, "\\p{N}+"}},
      {{"deepseek-coder"}, {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"}},
      {{"falcon"}, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}, {"\\p{N}", kGpt2}},
      {{"gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4"}, {kGpt2}},
      {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"}, {llama3_like("\\p{N}")}},
      // SentencePiece-style BPE (tokenizer_gemma4.cpp): spaces are already U+2581, only newlines split.
      {{"gemma4", "granite-embed-multi-311m"},
       {"[^\\n]+|[\\n]+"}, /*ignore_merges=*/false, /*adds_bos_by_default=*/true},
      // GPT-4o's split (gpt-oss): a word is letters other than a-z then letters other than A-Z (or the reverse
      // order's first run alone), so "camelCase" parts as "camel" + "Case" and "helloWORLD" as "hello" + "WORLD";
      // contractions attach to the word; digits go in threes. llama.cpp's lookahead spelling of the regex.
      {{"gpt-4o", "llama4", "kanana2", "talkie"},
       {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" + std::string(kContractions) +
            "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" + std::string(kContractions) +
            "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
      {{"qwen35"},
       {std::string(kContractions) + "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"
                                     "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
  };
  return table;
}

// llama.cpp's whitespace (unicode_set_whitespace in its src/unicode-data.cpp), as the body of a character class.
constexpr const char* kWhitespace =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// Rewrites \s and \S (outside or inside a character class) to llama.cpp's whitespace set.
std::string with_llama_whitespace(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') out += in_class ? std::string(kWhitespace) : "[" + std::string(kWhitespace) + "]";
      else if (next == 'S' && !in_class) out += "[^" + std::string(kWhitespace) + "]";
      else out += std::string{c, next};
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

class PreTokenizer::Regex {
 public:
  Regex(const std::string& pattern, const std::string& where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    const std::string expanded = with_llama_whitespace(pattern);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.data()), expanded.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail(where + ": pre-tokenizer regex does not compile at offset " + std::to_string(offset) + ": " +
           reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // without JIT (unsupported CPU) pcre2_match interprets
  }
  ~Regex() { pcre2_code_free(code_); }

  // Appends to `out` the matches of the regex in `piece` and the text between them, in order.
  void split(std::string_view piece, pcre2_match_data* match, std::vector<std::string_view>& out) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    size_t gap_start = 0, pos = 0;
    while (pos < piece.size()) {
      const int rc = pcre2_match(code_, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, match, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail("pre-tokenizer: regex match failed (PCRE2 error " + std::to_string(rc) + ")");
      const PCRE2_SIZE* range = pcre2_get_ovector_pointer(match);
      if (range[0] > gap_start) out.push_back(piece.substr(gap_start, range[0] - gap_start));
      if (range[1] > range[0]) {
        out.push_back(piece.substr(range[0], range[1] - range[0]));
        pos = range[1];
      } else {  // an empty match only splits; step over one character
        pos = range[0] + 1;
        while (pos < piece.size() && (static_cast<unsigned char>(piece[pos]) & 0xC0) == 0x80) ++pos;
      }
      gap_start = range[0] == range[1] ? range[0] : range[1];
    }
    if (gap_start < piece.size()) out.push_back(piece.substr(gap_start));
  }

 private:
  pcre2_code* code_ = nullptr;
};

PreTokenizer::PreTokenizer(const std::string& pre, const std::string& where) {
  for (const PreTokenizerKind& kind : kinds()) {
    for (const std::string& name : kind.names) {
      if (name != pre) continue;
      for (const std::string& pattern : kind.patterns) regexes_.push_back(std::make_unique<Regex>(pattern, where));
      ignore_merges_ = kind.ignore_merges;
      adds_bos_by_default_ = kind.adds_bos_by_default;
      return;
    }
  }
  std::string known;
  for (const PreTokenizerKind& kind : kinds())
    for (const std::string& name : kind.names) known += (known.empty() ? "" : ", ") + name;
  fail(where + ": tokenizer.ggml.pre '" + pre + "' is not a supported pre-tokenizer (supported: " + known + ")");
}

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (!text.empty()) pieces.push_back(text);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
  if (!match) fail("pre-tokenizer: out of memory");
  std::vector<std::string_view> next;
  for (const auto& regex : regexes_) {
    next.clear();
    for (std::string_view piece : pieces) regex->split(piece, match.get(), next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace swrun
