#include "runtime/cuda/device_memory.h"

#include <algorithm>

#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "runtime/common.h"

namespace swrun::cuda {

DeviceMemory::~DeviceMemory() {
  for (const auto& [p, b] : blocks_) b.on_device ? cudaFree(p) : cudaFreeHost(p);
}

void* DeviceMemory::device(size_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    fail("out of GPU memory: " + what + " needs " + human_bytes(double(bytes)) + ", " +
         human_bytes(double(free_bytes)) + " free (" + cudaGetErrorString(status) + ")");
  }
  blocks_[p] = {bytes, true};
  current_ += bytes;
  peak_ = std::max(peak_, current_);
  return p;
}

void* DeviceMemory::pinned(size_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t status = cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  if (status != cudaSuccess) {
    cudaGetLastError();
    fail("pinned host allocation of " + human_bytes(double(bytes)) + " for " + what + " failed: " +
         cudaGetErrorString(status));
  }
  blocks_[p] = {bytes, false};
  return p;
}

void DeviceMemory::free_block(void* p, const Block& b) {
  check_cuda(b.on_device ? cudaFree(p) : cudaFreeHost(p), b.on_device ? "cudaFree" : "cudaFreeHost");
  if (b.on_device) current_ -= b.bytes;
}

void DeviceMemory::release(void* p) {
  if (!p) return;
  auto it = blocks_.find(p);
  if (it == blocks_.end()) fail("internal: release of memory this backend did not allocate");
  const Block b = it->second;
  blocks_.erase(it);
  free_block(p, b);
}

void DeviceMemory::retire(void* p) {
  if (p) retired_.push_back(p);
}

void DeviceMemory::release_retired() {
  std::vector<void*> list;
  list.swap(retired_);
  for (void* p : list) release(p);
}

void DeviceMemory::note_transient(size_t bytes) { peak_ = std::max(peak_, current_ + bytes); }

void* GrowingBuffer::ensure(DeviceMemory& mem, size_t bytes) {
  if (bytes <= bytes_ && data_) return data_;
  const size_t grown = std::max(bytes, bytes_ + bytes_ / 2);
  void* fresh = on_device_ ? mem.device(grown, what_) : mem.pinned(grown, what_);
  mem.retire(data_);
  data_ = fresh;
  bytes_ = grown;
  return data_;
}

void GrowingBuffer::release(DeviceMemory& mem) {
  mem.release(data_);
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace swrun::cuda
