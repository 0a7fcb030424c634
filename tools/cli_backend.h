// Backend choice shared by the swrun subcommands (header-only: the executable itself must reference the CUDA
// backend factory so that the static CUDA library's definition is linked in).
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "runtime/backend.h"

namespace swrun {

// --backend: "cpu", "cuda", or "auto" (CUDA when a device is present, else the CPU with a note on stderr).
// With a log, the backend's set-up phases are added to it (runtime/load_log.h).
inline std::unique_ptr<Backend> make_backend(const std::string& which, int threads, LoadLog* log = nullptr) {
  if (which == "cpu") return make_cpu_backend(threads);
  if (which == "cuda") return make_cuda_backend(0, log);
  if (cuda_device_available()) return make_cuda_backend(0, log);
  std::fprintf(stderr, "swrun: no CUDA device found, using the CPU backend\n");
  return make_cpu_backend(threads);
}

// Prefill chunk when -b is not given: big enough on a GPU that one chunk's attention fills the chip (4096 queries x
// heads in 128-row tiles), small on the CPU where it only bounds the activation buffers.
inline int default_ubatch(const Backend& be) { return be.name() == "cuda" ? 4096 : 512; }

}  // namespace swrun
