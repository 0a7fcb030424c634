// GGUF reader: maps the file, parses header, metadata and tensor table, validates every count and offset
// against the file size, and exposes tensors as views into the mapping (no copy).
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "runtime/ggml_types.h"

namespace swrun {

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* gguf_value_type_name(GgufValueType t);  // "UINT32", "ARRAY", ...

struct GgufValue;
struct GgufArray {
  GgufValueType elem_type;
  std::vector<GgufValue> items;  // nested arrays allowed
};

struct GgufValue {
  GgufValueType type;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> v;

  // Typed accessors; each throws Error naming the key when the stored type does not fit.
  int64_t as_int(const std::string& key) const;
  double as_float(const std::string& key) const;
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  const GgufArray& as_array(const std::string& key) const;
};

struct GgufTensor {
  std::string name;
  uint32_t type_id;             // raw id from the file
  GgmlType type() const { return static_cast<GgmlType>(type_id); }
  std::vector<int64_t> ne;      // dims, ne[0] is the contiguous (row) dimension
  uint64_t offset;              // relative to the data section
  const void* data;             // points into the mapping
  size_t nbytes;                // 0 when the type id is unknown (its block size is not known either)
  int64_t n_elements() const;
  int64_t rows() const { return n_elements() / (ne.empty() ? 1 : ne[0]); }
};

class GgufFile {
 public:
  // Opens and validates the whole file. Throws Error("<path>: <what> (<where>)") for any problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer and tests); the buffer must outlive the object.
  static std::unique_ptr<GgufFile> parse(const void* data, size_t size, const std::string& label);
  ~GgufFile();

  uint32_t version() const { return version_; }
  size_t file_size() const { return size_; }
  size_t data_offset() const { return data_offset_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return label_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Required getters throw Error("<path>: missing metadata key <key>"); optional ones return the fallback.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  const GgufArray& get_array(const std::string& key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;
  const GgufTensor& tensor(const std::string& name) const;  // throws Error naming the missing tensor

 private:
  GgufFile() = default;
  void parse_all();
  std::string label_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when we own an mmap
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Renders metadata and the tensor table for humans (`swrun inspect`).
void print_gguf_summary(const GgufFile& f, std::FILE* out);

}  // namespace swrun
