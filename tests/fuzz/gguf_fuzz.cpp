// libFuzzer target for the GGUF reader. Any input must either parse or throw swrun::Error; a parsed file must
// be safe to walk: every tensor view is touched at both ends so ASan sees a view that leaves the buffer, and
// the summary renders every value.
#include <cstdint>
#include <cstdio>

#include "runtime/common.h"
#include "runtime/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::FILE* sink = std::fopen("/dev/null", "w");
  std::unique_ptr<swrun::GgufFile> f;
  try {
    f = swrun::GgufFile::parse(data, size, "fuzz");
  } catch (const swrun::Error&) {
    return 0;
  }
  volatile uint8_t touched = 0;
  for (const swrun::GgufTensor& t : f->tensors()) {
    if (t.nbytes == 0) continue;
    const auto* p = static_cast<const uint8_t*>(t.data);
    touched = touched + p[0] + p[t.nbytes - 1];
  }
  print_gguf_summary(*f, sink);
  return 0;
}
