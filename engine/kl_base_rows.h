// One chunk's base rows held in memory by `swrun perplexity --attn A,B,...` (the first spec's, or a base file's),
// kept as only what llama.cpp's KL-divergence statistics read from them, so that long contexts with large
// vocabularies fit in host memory.
//
// A base row (runtime/logprob.h) is 2 * n_vocab + 8 bytes: 524,296 at Gemma 3's 262,144 tokens, 8.6 GB for the
// 16,383 scored rows of a 32K chunk. Scoring against it (score_row) reads only the entries with log p > -16 (the KL
// sum skips the others), the target's code, the highest entry and the header. A row is kept as its header and the
// (index, code) pairs of those entries and the target: 8 + 6 * kept bytes, or as its n_vocab codes when that is
// smaller (a flat distribution, where most entries count). Expanded back, every other code reads 0, i.e.
// min_log_prob, which is itself <= -16 whenever an entry was dropped: the row scores exactly as the original.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace swrun {

class CompactBaseRows {
 public:
  explicit CompactBaseRows(int n_vocab);
  // Keeps rows row0 .. row0 + n - 1 of the chunk from `rows` (n base rows, kl_row_width(n_vocab) uint16 each);
  // targets[r] is row r's target token.
  void store(int row0, int n, const uint16_t* rows, const int32_t* targets);
  // Writes rows row0 .. row0 + n - 1 (stored earlier) as base rows that score as the stored ones did.
  void expand(int row0, int n, uint16_t* out) const;
  // Bytes the rows held now take (their entries and headers; not the containers' own bookkeeping).
  size_t bytes() const;
  size_t rows() const { return rows_.size(); }

 private:
  struct Row {
    uint16_t header[4] = {};       // scale and min_log_prob, as in the base row
    std::vector<uint32_t> index;   // kept entries (empty: the row is dense)
    std::vector<uint16_t> code;    // their codes, or all n_vocab codes of a dense row
  };
  int n_vocab_, width_;
  std::vector<Row> rows_;
};

}  // namespace swrun
