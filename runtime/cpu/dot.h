// Fused dot products of an fp32 vector with one quantized weight row: the inner loop of the CPU matmul.
#pragma once
#include <cstdint>

#include "runtime/ggml_types.h"

namespace swrun {

// sum_i dequantize(row)[i] * x[i] over n elements (a multiple of the type's block size), without
// materializing the dequantized row. Equal to dequantize_row + an fp32 dot up to fp32 summation order.
// Throws Error for a type dequantize_row does not read or an n that does not fill whole blocks.
float dot_row(GgmlType type, const void* row, const float* x, int64_t n);

// sum_i a[i] * b[i]: for reusing a row dequantized once against several input vectors.
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace swrun
