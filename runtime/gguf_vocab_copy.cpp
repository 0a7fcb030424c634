#include "runtime/gguf_vocab_copy.h"

#include <memory>
#include <string>

#include "runtime/common.h"

namespace swrun {

namespace {

constexpr int64_t kTokenTypeUnused = 5;  // llama.cpp's LLAMA_TOKEN_TYPE_UNUSED
constexpr double kPadScore = -1000.0;    // the converter's score for padding entries

const GgufArray* find_array(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  return v ? &v->as_array(key) : nullptr;
}

// `a` resized to n items, new items `pad(id)`.
template <typename Pad>
GgufValue resized(const GgufArray& a, int64_t n, Pad pad) {
  auto out = std::make_shared<GgufArray>();
  out->elem_type = a.elem_type;
  const auto keep = static_cast<size_t>(std::min<int64_t>(n, static_cast<int64_t>(a.items.size())));
  out->items.assign(a.items.begin(), a.items.begin() + static_cast<std::ptrdiff_t>(keep));
  for (int64_t id = static_cast<int64_t>(keep); id < n; ++id) out->items.push_back(pad(id));
  return GgufValue{GgufValueType::ARRAY, std::move(out)};
}

}  // namespace

int64_t vocab_token_count(const GgufFile& vocab) {
  const GgufArray* tokens = find_array(vocab, "tokenizer.ggml.tokens");
  if (!tokens) fail(vocab.path() + ": no tokenizer.ggml.tokens (not a vocabulary GGUF)");
  return static_cast<int64_t>(tokens->items.size());
}

void copy_tokenizer(const GgufFile& vocab, GgufWriter& w, int64_t n_vocab) {
  const int64_t have = vocab_token_count(vocab);
  if (n_vocab < 0) n_vocab = have;
  if (n_vocab < have) {
    if (vocab.has("tokenizer.ggml.merges"))
      fail(vocab.path() + ": cannot cut a BPE vocabulary of " + std::to_string(have) + " tokens to " +
           std::to_string(n_vocab) + " (its merges name the tokens)");
    for (const auto& [key, value] : vocab.metadata()) {
      const bool special_id = key.rfind("tokenizer.ggml.", 0) == 0 && key.size() > 9 &&
                              key.compare(key.size() - 9, 9, "_token_id") == 0;
      if (special_id && value.as_int(key) >= n_vocab)
        fail(vocab.path() + ": " + key + " = " + std::to_string(value.as_int(key)) + " is cut by resizing the " +
             std::to_string(have) + "-token vocabulary to " + std::to_string(n_vocab));
    }
  }
  for (const auto& [key, value] : vocab.metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    if (n_vocab == have) {
      w.set_value(key, value);
    } else if (key == "tokenizer.ggml.tokens") {
      w.set_value(key, resized(value.as_array(key), n_vocab, [](int64_t id) {
                    return GgufValue{GgufValueType::STRING, "[PAD" + std::to_string(id) + "]"};
                  }));
    } else if (key == "tokenizer.ggml.scores") {
      const GgufArray& a = value.as_array(key);
      w.set_value(key, resized(a, n_vocab, [&](int64_t) { return GgufValue{a.elem_type, kPadScore}; }));
    } else if (key == "tokenizer.ggml.token_type") {
      const GgufArray& a = value.as_array(key);
      w.set_value(key, resized(a, n_vocab, [&](int64_t) { return GgufValue{a.elem_type, kTokenTypeUnused}; }));
    } else {
      w.set_value(key, value);
    }
  }
}

}  // namespace swrun
