// GPU dequantization of GGUF blocks (the same types and arithmetic as runtime/dequant.h, bit for bit), used to
// expand quantized weights into bf16 (matrices) or fp32 (vectors) once at load. All pointers are device
// pointers; launches are asynchronous on `stream` and checked.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "runtime/ggml_types.h"

namespace swrun::cuda {

// Expands n elements (a multiple of the type's block size) of `type` blocks at dev_src into dev_dst.
// Throws swrun::Error naming the type when it is not one runtime/dequant reads, or when n does not fill whole
// blocks. The bf16 variant rounds to nearest even.
void dequantize_to_bf16(GgmlType type, const void* dev_src, void* dev_dst_bf16, int64_t n, cudaStream_t stream);
void dequantize_to_f32(GgmlType type, const void* dev_src, void* dev_dst_f32, int64_t n, cudaStream_t stream);

}  // namespace swrun::cuda
