// The warp-level core of the quantized GEMV, shared by the standalone kernels (gemv_quant.cu) and the
// persistent decode kernel (kernels/persistent): one warp computes whole output rows. It stages whole blocks of its
// row into its own slice of shared memory with coalesced 16-byte loads (the row's start aligned down to 16 bytes,
// since GGUF rows sit at any even offset), then each lane decodes work items of those blocks with the shared block
// decoders and multiplies them into up to kRows fp32 activation rows read from L1. Consecutive lanes take
// consecutive items, so they read consecutive bytes of the staged blocks (no bank conflicts) and consecutive
// activations.
#pragma once
#include <cstdint>

#include "kernels/dequant/block_decode.cuh"
#include "kernels/elementwise/vec.cuh"

namespace swrun::cuda::gemv {

constexpr int kWarp = 32;
constexpr int kStageBytes = 2048;                 // whole blocks of one row per warp and pass
constexpr int kStageVecs = kStageBytes / 16 + 1;  // + the skew of a row start aligned down to 16 bytes

// Blocks [b0, b0 + nb) of a row as the 16-byte loads that cover them: rows sit at any even offset, so the span
// starts `skew` bytes before the first block.
struct StageSpan {
  const uint4* aligned;
  int skew, vecs;
};
__device__ __forceinline__ StageSpan stage_span(const uint8_t* row, int b0, int nb, int block_bytes) {
  const uint8_t* src = row + int64_t(b0) * block_bytes;
  const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
  return {reinterpret_cast<const uint4*>(src - skew), skew, (skew + nb * block_bytes + 15) / 16};
}

// Adds the products of `nb` staged blocks (blocks b0.. of a row, at `blocks` in shared memory) with x[r] to
// acc[r]: lane by lane over the blocks' work items, so each lane's sum follows the same order whoever staged them
// (warp_row_dots and the pipelined kernel give the same bits).
template <typename D, int kRows>
__device__ __forceinline__ void warp_chunk_dots(const uint8_t* blocks, int b0, int nb, const float* x, int64_t cols,
                                                int x_rows, float (&acc)[kRows]) {
  const int lane = threadIdx.x % kWarp;
  for (int it = lane; it < nb * D::kItems; it += kWarp) {
    const int b = it / D::kItems;
    const float* xb = x + int64_t(b0 + b) * D::kElems;
    D::item(blocks + b * D::kBytes, it % D::kItems, [&](int i, float v) {
#pragma unroll
      for (int r = 0; r < kRows; ++r)
        if (kRows == 1 || r < x_rows) acc[r] = fmaf(v, xb[r * cols + i], acc[r]);
    });
  }
}

// Adds x[r] . W_row to acc[r] for r < x_rows, W_row being one weight row of `blocks_per_row` blocks of D at
// `row`: whole blocks are staged into this warp's `stage` with 16-byte loads and decoded item by item, lane by
// lane. `after_first_stage()` runs once the first blocks are staged and before x is read: the standalone kernels
// wait there for the kernel that writes x (the weights do not depend on it).
template <typename D, int kRows, typename AfterFirstStage>
__device__ __forceinline__ void warp_row_dots(const uint8_t* row, int blocks_per_row, const float* x, int64_t cols,
                                              int x_rows, uint4* stage, AfterFirstStage&& after_first_stage,
                                              float (&acc)[kRows]) {
  static_assert(D::kBytes <= kStageBytes, "a block must fit the stage");
  constexpr int kChunkBlocks = kStageBytes / D::kBytes;
  const int lane = threadIdx.x % kWarp;
  for (int b0 = 0; b0 < blocks_per_row; b0 += kChunkBlocks) {
    const int nb = min(kChunkBlocks, blocks_per_row - b0);
    const StageSpan span = stage_span(row, b0, nb, D::kBytes);
    for (int v = lane; v < span.vecs; v += kWarp) stage[v] = __ldg(span.aligned + v);
    __syncwarp();
    if (b0 == 0) after_first_stage();
    warp_chunk_dots<D, kRows>(reinterpret_cast<const uint8_t*>(stage) + span.skew, b0, nb, x, cols, x_rows, acc);
    __syncwarp();  // the stage is refilled next pass
  }
}

// Writes the warp's sums of acc[r] (lane 0) to out[r * n_out + n].
template <int kRows>
__device__ __forceinline__ void store_row(float (&acc)[kRows], int x_rows, float* out, int64_t n_out, int64_t n) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warp_sum(acc[r]);
    if (threadIdx.x % kWarp == 0 && (kRows == 1 || r < x_rows)) out[r * n_out + n] = sum;
  }
}

}  // namespace swrun::cuda::gemv
