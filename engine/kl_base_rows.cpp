#include "engine/kl_base_rows.h"

#include <algorithm>
#include <cstring>

#include "runtime/logprob.h"

namespace swrun {

CompactBaseRows::CompactBaseRows(int n_vocab) : n_vocab_(n_vocab), width_(kl_row_width(n_vocab)) {}

void CompactBaseRows::store(int row0, int n, const uint16_t* rows, const int32_t* targets) {
  if (rows_.size() < size_t(row0 + n)) rows_.resize(size_t(row0 + n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int r = 0; r < n; ++r) {
    const uint16_t* b = rows + size_t(r) * width_;
    const uint16_t* q = b + 4;
    float scale, min_log_prob;
    std::memcpy(&scale, b, sizeof(float));
    std::memcpy(&min_log_prob, b + 2, sizeof(float));
    // The same float expression as score_row's test, so that exactly the entries it sums are kept.
    auto counts = [&](int i) { return scale * q[i] + min_log_prob > -16.f || i == targets[r]; };
    size_t kept = 0;
    for (int i = 0; i < n_vocab_; ++i) kept += counts(i);
    Row row;
    std::memcpy(row.header, b, sizeof(row.header));
    if (6 * kept >= 2 * size_t(n_vocab_)) {
      row.code.assign(q, q + n_vocab_);
    } else {
      row.index.reserve(kept);
      row.code.reserve(kept);
      for (int i = 0; i < n_vocab_; ++i)
        if (counts(i)) {
          row.index.push_back(uint32_t(i));
          row.code.push_back(q[i]);
        }
    }
    rows_[size_t(row0 + r)] = std::move(row);  // frees what the previous chunk's row held
  }
}

void CompactBaseRows::expand(int row0, int n, uint16_t* out) const {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; ++r) {
    const Row& row = rows_[size_t(row0 + r)];
    uint16_t* b = out + size_t(r) * width_;
    std::memcpy(b, row.header, sizeof(row.header));
    uint16_t* q = b + 4;
    if (row.index.empty()) {
      std::copy(row.code.begin(), row.code.end(), q);
      std::fill(q + row.code.size(), b + width_, uint16_t(0));
      continue;
    }
    std::fill(q, b + width_, uint16_t(0));
    for (size_t k = 0; k < row.index.size(); ++k) q[row.index[k]] = row.code[k];
  }
}

size_t CompactBaseRows::bytes() const {
  size_t total = 0;
  for (const Row& row : rows_) total += sizeof(row.header) + row.index.size() * 4 + row.code.size() * 2;
  return total;
}

}  // namespace swrun
