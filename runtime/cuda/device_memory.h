// Memory of the CUDA backend: device and pinned-host allocations tracked for the device high-water mark, and
// buffers that grow on demand. A CUDA graph keeps the raw addresses it was captured with, so a superseded
// allocation is retired (kept alive) rather than freed while graphs may still point at it.
#pragma once
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace swrun::cuda {

class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory();

  // Throw Error naming `what`, the size and (for device memory) the free bytes when the allocation fails.
  void* device(size_t bytes, const std::string& what);
  void* pinned(size_t bytes, const std::string& what);
  void release(void* p);  // frees now
  void retire(void* p);   // frees at the next release_retired()
  void release_retired();

  size_t peak_bytes() const { return peak_; }
  void reset_peak() { peak_ = current_; }
  // Accounts for a short-lived device allocation made outside this class (e.g. the dense-naive scores).
  void note_transient(size_t bytes);

 private:
  struct Block {
    size_t bytes;
    bool on_device;
  };
  void free_block(void* p, const Block& b);
  std::unordered_map<void*, Block> blocks_;
  std::vector<void*> retired_;
  size_t current_ = 0, peak_ = 0;  // device bytes
};

// A buffer that only grows (by at least half its size, so repeated small growth stays cheap).
class GrowingBuffer {
 public:
  GrowingBuffer(bool on_device, const char* what) : on_device_(on_device), what_(what) {}
  void* ensure(DeviceMemory& mem, size_t bytes);
  void* data() const { return data_; }
  void release(DeviceMemory& mem);  // frees now; only for buffers no graph can reference

 private:
  bool on_device_;
  const char* what_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace swrun::cuda
