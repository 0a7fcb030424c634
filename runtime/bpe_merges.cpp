// The ranked BPE merges and the merge loop both BPE tokenizers run inside a word (see bpe_merges.h).
#include "runtime/bpe_merges.h"

#include <queue>

#include "runtime/common.h"

namespace swrun {

BpeMerges::BpeMerges(const std::vector<std::string>& merges, const std::string& where) {
  merges_.reserve(merges.size());
  symbol_of_.reserve(merges.size() + 512);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    const size_t space = merge.find(' ', 1);  // from 1: the left part may itself be a space
    if (space == std::string::npos || space + 1 == merge.size())
      fail(where + ": tokenizer.ggml.merges[" + std::to_string(rank) + "] = '" + merge +
           "' is not two parts separated by a space");
    const std::string_view left_text = std::string_view(merge).substr(0, space);
    const std::string_view right_text = std::string_view(merge).substr(space + 1);
    const int32_t left = add_symbol(left_text), right = add_symbol(right_text);
    const int32_t joined = add_symbol(std::string(left_text) + std::string(right_text));
    merges_.emplace(pair_key(left, right), Merge{static_cast<int32_t>(rank), joined});  // first one wins
  }
}

int32_t BpeMerges::add_symbol(std::string_view text) {
  const auto it = symbol_of_.find(text);
  if (it != symbol_of_.end()) return it->second;
  symbol_text_.emplace_back(text);
  return symbol_of_[symbol_text_.back()] = static_cast<int32_t>(symbol_text_.size()) - 1;
}

int32_t BpeMerges::find_symbol(std::string_view text) const {
  const auto it = symbol_of_.find(text);
  return it == symbol_of_.end() ? -1 : it->second;
}

void BpeMerges::merge(std::vector<Part>& parts) const {
  // The parts linked left to right; merging folds the right part into the left one.
  const int32_t n = static_cast<int32_t>(parts.size());
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank, left, right, left_symbol, right_symbol, joined;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest: lowest rank, then leftmost
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate> queue;
  const auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || parts[left].symbol < 0 || parts[right].symbol < 0) return;
    const auto it = merges_.find(pair_key(parts[left].symbol, parts[right].symbol));
    if (it != merges_.end())
      queue.push({it->second.rank, left, right, parts[left].symbol, parts[right].symbol, it->second.joined});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Part& left = parts[c.left];
    Part& right = parts[c.right];
    // Stale when either side has merged since: the right part folded away or a symbol changed.
    if (next[c.left] != c.right || left.symbol != c.left_symbol || right.symbol != c.right_symbol) continue;
    left.symbol = c.joined;
    left.end = right.end;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    right.symbol = -2;  // folded away: matches no candidate's symbol
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  size_t kept = 0;
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = next[i]) parts[kept++] = parts[i];
  parts.resize(kept);
}

}  // namespace swrun
