// GGML tensor types as stored in GGUF files: ids, names and block geometry (facts of the format).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace swrun {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeInfo {
  const char* name;      // "Q4_K", or nullptr when the id is not a known type
  uint32_t block_elems;  // elements per block (1 for plain types)
  uint32_t block_bytes;  // bytes per block
  bool supported;        // this runtime can dequantize it
};

// Info for a raw type id read from a file; unknown ids give name == nullptr (block_elems 1, block_bytes 0).
GgmlTypeInfo ggml_type_info(uint32_t type_id);
std::string ggml_type_name(uint32_t type_id);  // "Q4_K" or "type#123"

// Bytes taken by a row of n elements; n must be a multiple of the block size (checked by the caller).
inline size_t ggml_row_bytes(const GgmlTypeInfo& ti, int64_t n) {
  return static_cast<size_t>(n / ti.block_elems) * ti.block_bytes;
}

}  // namespace swrun
