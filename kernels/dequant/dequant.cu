// GPU dequantization: an element-wise kernel for the plain types and one over the work items of the block decoders
// (block_decode.cuh, shared with the quantized GEMV), templated on the decoder and the output type. The decoders
// mirror runtime/dequant.cpp, so the CPU and GPU results are identical.
#include "kernels/dequant/dequant.cuh"

#include <algorithm>
#include <string>

#include <cuda_bf16.h>

#include "kernels/common/cuda_check.h"
#include "kernels/dequant/block_decode.cuh"
#include "runtime/common.h"

namespace swrun::cuda {

namespace {

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// Threads walk the work items with a grid stride, so any n fits a capped grid.
#define SWRUN_GRID_STRIDE_LOOP(i, count) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (count); i += int64_t(gridDim.x) * blockDim.x)

// ---- plain types: one element per work item (any n, not only whole 32-element blocks)

template <GgmlType kType, typename Out>
__global__ void dequant_plain(const uint8_t* src, Out* dst, int64_t n) {
  constexpr int kElemBytes = DecodePlain<kType>::kBytes / DecodePlain<kType>::kElems;
  SWRUN_GRID_STRIDE_LOOP(i, n) store(dst + i, DecodePlain<kType>::value(src + i * kElemBytes, 0));
}

// ---- quantized blocks: one decoder work item per thread (block_decode.cuh)

template <typename Decoder, typename Out>
__global__ void dequant_blocks(const uint8_t* blocks, Out* dst, int64_t n_blocks) {
  SWRUN_GRID_STRIDE_LOOP(item, n_blocks * Decoder::kItems) {
    const int64_t b = item / Decoder::kItems;
    Out* out = dst + b * Decoder::kElems;
    Decoder::item(blocks + b * Decoder::kBytes, int(item % Decoder::kItems), [&](int i, float v) { store(out + i, v); });
  }
}

constexpr unsigned kThreads = 256;
constexpr int64_t kMaxGrid = int64_t(1) << 20;

unsigned grid_for_items(int64_t items) {
  return static_cast<unsigned>(std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxGrid));
}

template <typename Out>
void launch_dequant(GgmlType type, const void* src, Out* dst, int64_t n, cudaStream_t stream) {
  const uint32_t id = static_cast<uint32_t>(type);
  const GgmlTypeInfo info = ggml_type_info(id);
  if (n < 0 || (info.name != nullptr && n % info.block_elems != 0)) {
    fail("CUDA dequantize: " + std::to_string(n) + " elements do not fill whole " + ggml_type_name(id) + " blocks");
  }
  if (n == 0) return;
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::F32:
      dequant_plain<GgmlType::F32><<<grid_for_items(n), kThreads, 0, stream>>>(bytes, dst, n);
      break;
    case GgmlType::F16:
      dequant_plain<GgmlType::F16><<<grid_for_items(n), kThreads, 0, stream>>>(bytes, dst, n);
      break;
    case GgmlType::BF16:
      dequant_plain<GgmlType::BF16><<<grid_for_items(n), kThreads, 0, stream>>>(bytes, dst, n);
      break;
    default: {
      const bool known = with_block_decoder(type, [&]<typename D>() {
        const int64_t n_blocks = n / D::kElems;
        dequant_blocks<D><<<grid_for_items(n_blocks * D::kItems), kThreads, 0, stream>>>(bytes, dst, n_blocks);
      });
      if (!known) fail("tensor type " + ggml_type_name(id) + " is not supported by the CUDA dequantizer");
    }
  }
  check_launch("dequantize");
}

}  // namespace

void dequantize_to_bf16(GgmlType type, const void* dev_src, void* dev_dst_bf16, int64_t n, cudaStream_t stream) {
  launch_dequant(type, dev_src, static_cast<__nv_bfloat16*>(dev_dst_bf16), n, stream);
}

void dequantize_to_f32(GgmlType type, const void* dev_src, void* dev_dst_f32, int64_t n, cudaStream_t stream) {
  launch_dequant(type, dev_src, static_cast<float*>(dev_dst_f32), n, stream);
}

}  // namespace swrun::cuda
