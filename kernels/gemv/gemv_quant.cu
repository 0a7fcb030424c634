// Quantized GEMV: one warp per output row at a time (grid-stride over rows). The warp stages whole blocks of its
// row into its own slice of shared memory with coalesced 16-byte loads (the row's start aligned down to 16
// bytes, since GGUF rows sit at any even offset), then each lane decodes work items of those blocks with the
// shared block decoders and multiplies them into up to kRows fp32 activation rows read from L1. Consecutive
// lanes take consecutive items, so they read consecutive bytes of the staged blocks (no bank conflicts) and
// consecutive activations. Weights never change, so the first row is staged before the kernel waits for its
// predecessor (programmatic dependent launch).
#include "kernels/gemv/gemv_quant.cuh"

#include <algorithm>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "kernels/dequant/block_decode.cuh"
#include "kernels/elementwise/activation.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarps = 8;
constexpr int kThreads = kWarp * kWarps;
constexpr int kStageBytes = 2048;                 // whole blocks of one row per warp and pass
constexpr int kStageVecs = kStageBytes / 16 + 1;  // + the skew of a row start aligned down to 16 bytes

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// kMats = 2 (gated): row n of w and of w2 (same shape and type) against the same x, combined as
// act(x . w_n) * (x . w2_n); each dot is computed exactly as the plain kernel computes it.
template <typename D, int kRows, int kMats>
__global__ void __launch_bounds__(kThreads)
    gemv_quant_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ w2, int64_t row_bytes,
                      int blocks_per_row, const float* x, int64_t cols, int x_rows, float* out, int64_t n_out,
                      GatedActKind act) {
  static_assert(D::kBytes <= kStageBytes, "a block must fit the stage");
  constexpr int kChunkBlocks = kStageBytes / D::kBytes;
  __shared__ uint4 stage[kWarps][kStageVecs];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint8_t* staged = reinterpret_cast<const uint8_t*>(stage[warp]);
  bool waited = false;
  for (int64_t n = int64_t(blockIdx.x) * kWarps + warp; n < n_out; n += int64_t(gridDim.x) * kWarps) {
    float dots[kMats][kRows];
#pragma unroll
    for (int m = 0; m < kMats; ++m) {
      float* acc = dots[m];
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
      for (int b0 = 0; b0 < blocks_per_row; b0 += kChunkBlocks) {
        const int nb = min(kChunkBlocks, blocks_per_row - b0);
        const uint8_t* src = (m == 0 ? w : w2) + n * row_bytes + int64_t(b0) * D::kBytes;
        const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
        const uint4* aligned = reinterpret_cast<const uint4*>(src - skew);
        const int vecs = (skew + nb * D::kBytes + 15) / 16;
        for (int v = lane; v < vecs; v += kWarp) stage[warp][v] = __ldg(aligned + v);
        __syncwarp();
        if (!waited) {  // x is the previous kernel's output
          wait_for_predecessor();
          waited = true;
        }
        const uint8_t* blocks = staged + skew;
        for (int it = lane; it < nb * D::kItems; it += kWarp) {
          const int b = it / D::kItems;
          const float* xb = x + int64_t(b0 + b) * D::kElems;
          D::item(blocks + b * D::kBytes, it % D::kItems, [&](int i, float v) {
#pragma unroll
            for (int r = 0; r < kRows; ++r)
              if (kRows == 1 || r < x_rows) acc[r] = fmaf(v, xb[r * cols + i], acc[r]);
          });
        }
        __syncwarp();  // the stage is refilled next pass
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float sum = warp_sum(dots[0][r]);
      if constexpr (kMats == 2) sum = gated_activate(sum, act) * warp_sum(dots[1][r]);
      if (lane == 0 && (kRows == 1 || r < x_rows)) out[r * n_out + n] = sum;
    }
  }
}

template <typename D, int kRows, int kMats>
void launch_gemv(const uint8_t* w, const uint8_t* w2, const float* x, float* out, int x_rows, int64_t n_out,
                 int64_t cols, GatedActKind act, cudaStream_t stream) {
  // Enough blocks to fill every SM; more rows than warps are strided over.
  static const int64_t max_blocks = [] {
    int device = 0, sms = 0, per_sm = 0;
    check_cuda(cudaGetDevice(&device), "gemv_quant: cudaGetDevice");
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "gemv_quant: SM count");
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_quant_kernel<D, kRows, kMats>, kThreads,
                                                             0),
               "gemv_quant: occupancy");
    return int64_t(sms) * std::max(per_sm, 1);
  }();
  const int blocks_per_row = int(cols / D::kElems);
  const int64_t row_bytes = int64_t(blocks_per_row) * D::kBytes;
  const int64_t blocks = std::min(max_blocks, (n_out + kWarps - 1) / kWarps);
  launch_overlapped(gemv_quant_kernel<D, kRows, kMats>, unsigned(blocks), kThreads, stream, "gemv_quant", w, w2,
                    row_bytes, blocks_per_row, x, cols, x_rows, out, n_out, act);
}

// Threads over (token, block, item) of the looked-up rows.
template <typename D>
__global__ void embed_quant_kernel(const uint8_t* table, int64_t row_bytes, int blocks_per_row,
                                   const int32_t* tokens, int64_t items, int64_t cols, float scale, float* out) {
  wait_for_predecessor();
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= items) return;
  const int64_t per_row = int64_t(blocks_per_row) * D::kItems;
  const int64_t t = item / per_row;
  const int b = int(item % per_row / D::kItems);
  float* o = out + t * cols + int64_t(b) * D::kElems;
  D::item(table + int64_t(tokens[t]) * row_bytes + int64_t(b) * D::kBytes, int(item % D::kItems),
          [&](int i, float v) { o[i] = __fmul_rn(v, scale); });
}


template <int kMats>
void dispatch_gemv(GgmlType type, const void* w, const void* w2, const float* x, float* out, int x_rows,
                   int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream) {
  if (!gemv_quant_supported(type, cols))
    fail("gemv_quant: rows of " + std::to_string(cols) + " elements of " + ggml_type_name(uint32_t(type)) +
         " are not supported");
  if (x_rows < 1 || x_rows > kGemvQuantMaxRows)
    fail("gemv_quant: " + std::to_string(x_rows) + " activation rows (1.." + std::to_string(kGemvQuantMaxRows) + ")");
  if (reinterpret_cast<uintptr_t>(w) % 16 != 0 || reinterpret_cast<uintptr_t>(w2) % 16 != 0)
    fail("gemv_quant: weights are not 16-byte aligned");
  if (n_out <= 0) return;
  const auto* a = static_cast<const uint8_t*>(w);
  const auto* b = static_cast<const uint8_t*>(w2);
  with_block_decoder(type, [&]<typename D>() {
    if (x_rows == 1) launch_gemv<D, 1, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream);
    else if (x_rows == 2) launch_gemv<D, 2, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream);
    else if (x_rows <= 4) launch_gemv<D, 4, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream);
    else launch_gemv<D, kGemvQuantMaxRows, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream);
  });
}

}  // namespace

bool gemv_quant_supported(GgmlType type, int64_t cols) {
  const int elems = block_decoder_elems(type);
  return elems > 0 && cols > 0 && cols % elems == 0 && cols / elems <= INT32_MAX;
}

void gemv_quant(GgmlType type, const void* w, const float* x, float* out, int x_rows, int64_t n_out, int64_t cols,
                cudaStream_t stream) {
  dispatch_gemv<1>(type, w, w, x, out, x_rows, n_out, cols, GatedActKind::Silu, stream);
}

void gemv_quant_gated(GgmlType type, const void* w_gate, const void* w_up, const float* x, float* out, int x_rows,
                      int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream) {
  dispatch_gemv<2>(type, w_gate, w_up, x, out, x_rows, n_out, cols, act, stream);
}

void embed_rows_quant(GgmlType type, const void* table, const int32_t* tokens, int n, int64_t cols, float scale,
                      float* out, cudaStream_t stream) {
  if (!gemv_quant_supported(type, cols))
    fail("embed_rows_quant: rows of " + std::to_string(cols) + " elements of " + ggml_type_name(uint32_t(type)) +
         " are not supported");
  if (n <= 0) return;
  with_block_decoder(type, [&]<typename D>() {
    const int blocks_per_row = int(cols / D::kElems);
    const int64_t items = int64_t(n) * blocks_per_row * D::kItems;
    constexpr unsigned kEmbedThreads = 256;
    launch_overlapped(embed_quant_kernel<D>, grid_for(size_t(items), kEmbedThreads), kEmbedThreads, stream,
                      "embed_rows_quant", static_cast<const uint8_t*>(table), int64_t(blocks_per_row) * D::kBytes,
                      blocks_per_row, tokens, items, cols, scale, out);
  });
}

}  // namespace swrun::cuda
