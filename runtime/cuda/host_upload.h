// How the CUDA backend copies weights from the file's mapping (pageable host memory) to the device. Chosen by
// SWRUN_UPLOAD, so that load time can be A/B-ed on a GPU machine (`swrun -v` prints the copy's MB/s):
//   pageable (default)  cudaMemcpyAsync straight from the mapping; the driver stages it through its own pinned
//                       buffers, and the call returns once the data has left the mapping.
//   pinned              our own two pinned buffers of 8 MiB: the host copy of one chunk overlaps the DMA of the
//                       other.
//   register            each tensor's bytes page-locked where they are (cudaHostRegister, read-only) and copied by
//                       DMA with no host copy; unlocked once the uploads are done. A range the driver refuses to
//                       lock is copied as pageable.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "runtime/cuda/device_memory.h"

namespace swrun::cuda {

class HostUpload {
 public:
  explicit HostUpload(DeviceMemory& mem);  // reads SWRUN_UPLOAD; an unknown value is an Error
  HostUpload(const HostUpload&) = delete;
  HostUpload& operator=(const HostUpload&) = delete;
  ~HostUpload();  // the stream must have completed the copies

  const char* describe() const;  // "from the pageable file mapping", ...
  // Queues a copy of `bytes` from host `src` (alive until release()) to device `dst` on `stream`.
  void copy(void* dst, const void* src, size_t bytes, cudaStream_t stream);
  bool holds_resources() const { return !registered_.empty() || slots_[0].host.data(); }
  // Once the stream has completed every copy: unlocks registered ranges and frees the pinned buffers.
  void release();

 private:
  enum class Path { Pageable, Pinned, Register };
  struct Slot {
    GrowingBuffer host{false, "pinned weight staging"};
    cudaEvent_t drained = nullptr;  // the DMA out of `host` is done
    bool in_flight = false;
  };
  void copy_pinned(void* dst, const void* src, size_t bytes, cudaStream_t stream);

  DeviceMemory& mem_;
  Path path_ = Path::Pageable;
  std::vector<void*> registered_;
  Slot slots_[2];
  int next_slot_ = 0;
};

}  // namespace swrun::cuda
