// What every backend shares.
#include "runtime/backend.h"

#include "runtime/common.h"

namespace swrun {

void check_row_range(const Weight& w, int64_t first, int64_t count) {
  if (w.rows <= 1 || !w.impl) fail("weight '" + w.name + "' is not an uploaded matrix");
  if (first < 0 || count < 1 || first > w.rows - count)
    fail("rows " + std::to_string(first) + ".." + std::to_string(first + count - 1) + " are outside weight '" +
         w.name + "' of " + std::to_string(w.rows) + " rows");
}

}  // namespace swrun
