#include "runtime/attn_policy.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "runtime/common.h"

namespace swrun {

std::string describe(const AttnPolicy& p) {
  switch (p.kind) {
    case AttnKind::Dense: return "dense";
    case AttnKind::DenseNaive: return "dense-naive";
    case AttnKind::Sliding:
      if (p.right == 0) return "sliding:" + std::to_string(p.window_keys());
      return "local:" + std::to_string(p.left) + "/" + std::to_string(p.right);
  }
  return "?";
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "dense", "dense-naive", "sliding", "sliding:W" -> kind and window (0 = the model's)
void parse_policy(const std::vector<std::string>& words, size_t first, const std::string& whole,
                  AttnSpec::Range& r) {
  const size_t n = words.size() - first;
  const std::string& name = words[first];
  auto bad = [&](const std::string& why) { fail("bad --attn spec '" + whole + "': " + why); };
  if (name == "dense" || name == "dense-naive") {
    if (n != 1) bad("'" + name + "' takes no window");
    r.kind = name == "dense" ? AttnKind::Dense : AttnKind::DenseNaive;
    r.window = 0;
  } else if (name == "sliding") {
    if (n > 2) bad("too many ':' parts after 'sliding'");
    r.kind = AttnKind::Sliding;
    r.window = 0;
    if (n == 2) {
      int64_t w;
      if (!parse_int(words[first + 1], w) || w < 1 || w > (int64_t{1} << 30))
        bad("window '" + words[first + 1] + "' is not a positive integer");
      r.window = static_cast<int32_t>(w);
    }
  } else {
    bad("unknown policy '" + name + "' (expected model, dense, dense-naive, sliding[:W] or a per-layer list)");
  }
}

}  // namespace

AttnSpec AttnSpec::parse(const std::string& text) {
  AttnSpec spec;
  if (text.empty()) fail("bad --attn spec '': empty");
  if (text == "model") return spec;
  spec.use_model = false;
  auto bad = [&](const std::string& why) { fail("bad --attn spec '" + text + "': " + why); };
  const std::vector<std::string> items = split(text, ',');
  // A single policy without a layer range applies to every layer.
  const bool global = items.size() == 1 && !text.empty() && !std::isdigit(static_cast<unsigned char>(text[0]));
  if (global) {
    Range r{0, -1, AttnKind::Dense, 0};
    parse_policy(split(text, ':'), 0, text, r);
    spec.ranges.push_back(r);
    return spec;
  }
  for (const std::string& item : items) {
    std::vector<std::string> words = split(item, ':');
    if (words.size() < 2) bad("item '" + item + "' needs LAYERS:POLICY");
    Range r{0, -1, AttnKind::Dense, 0};
    const std::string& layers = words[0];
    const size_t dash = layers.find('-');
    int64_t a, b;
    if (dash == std::string::npos) {
      if (!parse_int(layers, a) || a < 0) bad("layer '" + layers + "' is not a non-negative integer");
      b = a;
    } else {
      if (!parse_int(layers.substr(0, dash), a) || a < 0) bad("range '" + layers + "' has a bad start");
      const std::string end = layers.substr(dash + 1);
      if (end.empty()) b = -1;
      else if (!parse_int(end, b) || b < a) bad("range '" + layers + "' has a bad end");
    }
    if (a > 1'000'000 || b > 1'000'000) bad("layer index too large in '" + item + "'");
    r.first = static_cast<int>(a);
    r.last = static_cast<int>(b);
    parse_policy(words, 1, text, r);
    spec.ranges.push_back(r);
  }
  return spec;
}

std::vector<AttnPolicy> AttnSpec::resolve(const std::vector<AttnPolicy>& declared, int32_t model_window) const {
  std::vector<AttnPolicy> out = declared;
  if (use_model) return out;
  const int n = static_cast<int>(declared.size());
  for (const Range& r : ranges) {
    const int last = r.last < 0 ? n - 1 : r.last;
    if (r.first >= n || last >= n)
      fail("--attn names layer " + std::to_string(std::max(r.first, last)) + " but the model has " +
           std::to_string(n) + " layers (0.." + std::to_string(n - 1) + ")");
    for (int l = r.first; l <= last; ++l) {
      if (r.kind == AttnKind::Sliding) {
        const int32_t w = r.window ? r.window : model_window;
        if (w <= 0) fail("--attn 'sliding' without a window, and the model declares none: use sliding:W");
        out[l] = AttnPolicy::sliding(w);
      } else {
        out[l] = r.kind == AttnKind::Dense ? AttnPolicy::dense() : AttnPolicy::dense_naive();
      }
    }
  }
  return out;  // layers the list does not name keep the model's own policy
}

std::vector<std::string> split_attn_specs(const std::string& text) {
  std::vector<std::string> specs;
  bool previous_is_layer_item = false;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const bool layer_item = !item.empty() && std::isdigit(static_cast<unsigned char>(item[0]));
    if (layer_item && previous_is_layer_item) specs.back() += "," + item;
    else specs.push_back(item);  // an empty item reaches AttnSpec::parse, which names it
    previous_is_layer_item = layer_item;
    start = comma + 1;
  }
  return specs;
}

double attention_useful_flops(const AttnPolicy& p, int64_t q_pos0, int64_t n_q, int64_t n_kv, int head_dim,
                              int n_head) {
  // Sum over queries of the visible key count, in closed form per query (n_q is at most a few hundred thousand).
  double keys = 0;
  for (int64_t i = q_pos0; i < q_pos0 + n_q; ++i) {
    const int64_t lo = p.left == kUnboundedWindow ? 0 : std::max<int64_t>(0, i - p.left);
    const int64_t hi = std::min<int64_t>(n_kv - 1, i + p.right);
    if (hi >= lo) keys += static_cast<double>(hi - lo + 1);
  }
  return 4.0 * head_dim * n_head * keys;
}

}  // namespace swrun
