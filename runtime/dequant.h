// CPU dequantization of GGUF blocks to fp32 (the reference the CUDA dequant kernels are checked against).
#pragma once
#include <cstdint>

#include "runtime/ggml_types.h"

namespace swrun {

// Dequantizes n elements (a multiple of the type's block size) starting at src. Throws Error for a type
// this runtime does not read.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// fp16/bf16 scalar conversions used across the runtime.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);  // round to nearest even

}  // namespace swrun
