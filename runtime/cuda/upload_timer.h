// The CUDA backend's split of its weight upload for a load log (`swrun -v`): device allocations on the host
// clock, and per tensor CUDA events around the copy of the file's bytes and around the conversion (dequantization
// to bf16/fp32), read only after the stream has drained. Inactive (no events, no clock reads) without a log.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/load_log.h"

namespace swrun::cuda {

class UploadTimer {
 public:
  UploadTimer() = default;
  UploadTimer(const UploadTimer&) = delete;
  UploadTimer& operator=(const UploadTimer&) = delete;
  ~UploadTimer();

  void attach(LoadLog* log) { log_ = log; }
  bool active() const { return log_ != nullptr; }

  // One tensor: begin() before its first copy, copied() after its last copy (`bytes` from the host), converted()
  // after its conversion kernel ("Q4_K -> bf16"); a tensor that is only copied skips converted().
  void begin(cudaStream_t stream);
  void copied(cudaStream_t stream, size_t bytes);
  void converted(cudaStream_t stream, const std::string& what);
  void note_alloc(double ms, size_t bytes) { alloc_ms_ += ms, alloc_bytes_ += bytes, ++allocs_; }

  // After the stream has completed every recorded tensor: adds the sub-phases to the log and starts over.
  void report(const std::string& copy_path);

 private:
  struct Tensor {
    cudaEvent_t start = nullptr, copy_end = nullptr, convert_end = nullptr;
    size_t bytes = 0;
    std::string conversion;
  };
  cudaEvent_t record(cudaStream_t stream);
  void release_events();

  LoadLog* log_ = nullptr;
  std::vector<Tensor> tensors_;
  double alloc_ms_ = 0;
  size_t alloc_bytes_ = 0, allocs_ = 0;
};

}  // namespace swrun::cuda
