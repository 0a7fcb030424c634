// GGUF writer (v3): builds synthetic models for tests and tools. Writes to a temp file and renames, so a
// failure never leaves a half-written file behind. Tensors are either bytes held in memory or produced on
// demand while the file is written (add_tensor_fill), so a file larger than memory can be written; write() can
// spread the data over several threads, each filling and writing (pwrite) its own chunks.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/gguf.h"

namespace swrun {

// Produces `n` bytes of a tensor's data starting at byte `offset` of that tensor into `dst`. The writer calls it
// for disjoint ranges, from several threads at once when it writes with several threads.
using TensorFill = std::function<void(uint64_t offset, uint8_t* dst, size_t n)>;

struct GgufWriteOptions {
  int threads = 1;                    // writer threads (1: the calling thread alone)
  size_t chunk_bytes = size_t{8} << 20;  // bytes one thread fills and writes at a time
  // Called after every chunk with the data bytes written so far and the file size (calls never overlap).
  std::function<void(uint64_t written, uint64_t total)> progress;
  // When set and true, the write stops at the next chunk and fails ("interrupted"), removing the temp file.
  const std::atomic<bool>* cancel = nullptr;
};

class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32) : alignment_(alignment) {}
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_array_string(const std::string& key, const std::vector<std::string>& v);
  void set_array_f32(const std::string& key, const std::vector<float>& v);
  void set_array_i32(const std::string& key, const std::vector<int32_t>& v);
  void set_value(const std::string& key, const GgufValue& v);  // any type, nested arrays included
  // Raw tensor bytes already in `type`'s block layout; ne[0] is the row length.
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne, const void* data,
                  size_t nbytes);
  // Convenience: quantizes fp32 values into `type` (F32, F16, BF16, Q8_0, Q4_0 ... the types quantize_row supports).
  void add_tensor_f32(const std::string& name, GgmlType type, const std::vector<int64_t>& ne, const float* values);
  // A tensor whose bytes `fill` produces while the file is written (nothing is held in memory).
  void add_tensor_fill(const std::string& name, GgmlType type, const std::vector<int64_t>& ne, TensorFill fill);
  void write(const std::string& path) const { write(path, GgufWriteOptions{}); }  // throws Error on I/O failure
  void write(const std::string& path, const GgufWriteOptions& options) const;
  uint64_t file_size() const;  // the size write() will give the file

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> bytes;  // in-memory data, or empty with `fill` set
    TensorFill fill;
    uint64_t size;
  };
  struct Layout;  // header bytes and tensor offsets, as write() lays them out
  Layout layout() const;
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

// fp32 -> block quantization for the writer (round-to-nearest; not ggml's importance-weighted search).
// Supports F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, MXFP4. n is a multiple of the block size.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace swrun
