// Backend factory for builds without the CUDA toolkit.
#include "runtime/backend.h"
#include "runtime/common.h"

namespace swrun {

std::unique_ptr<Backend> make_cuda_backend(int, LoadLog*) {
  fail("this swrun was built without CUDA (no CUDA toolkit found at build time); use --backend cpu");
}
bool cuda_device_available() { return false; }

}  // namespace swrun
