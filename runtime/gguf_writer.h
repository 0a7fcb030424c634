// GGUF writer (v3): builds synthetic models for tests and tools. Writes to a temp file and renames, so a
// failure never leaves a half-written file behind.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/gguf.h"

namespace swrun {

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
  void write(const std::string& path) const;  // throws Error on I/O failure

 private:
  struct Tensor { std::string name; GgmlType type; std::vector<int64_t> ne; std::vector<uint8_t> bytes; };
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

// fp32 -> block quantization for the writer (round-to-nearest; not ggml's importance-weighted search).
// Supports F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. n is a multiple of the block size.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace swrun
