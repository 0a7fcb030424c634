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

// Adds x[r] . W_row[blocks b_begin .. b_end) to acc[r] for r < x_rows, W_row being one weight row of blocks of D
// at `row`: whole blocks are staged into this warp's `stage` with 16-byte loads and decoded item by item, lane by
// lane. `after_first_stage()` runs once the first blocks are staged and before x is read: the standalone kernels
// wait there for the kernel that writes x (the weights do not depend on it).
template <typename D, int kRows, typename AfterFirstStage>
__device__ __forceinline__ void warp_row_dots(const uint8_t* row, int b_begin, int b_end, const float* x,
                                              int64_t cols, int x_rows, uint4* stage,
                                              AfterFirstStage&& after_first_stage, float (&acc)[kRows]) {
  static_assert(D::kBytes <= kStageBytes, "a block must fit the stage");
  constexpr int kChunkBlocks = kStageBytes / D::kBytes;
  const int lane = threadIdx.x % kWarp;
  for (int b0 = b_begin; b0 < b_end; b0 += kChunkBlocks) {
    const int nb = min(kChunkBlocks, b_end - b0);
    const StageSpan span = stage_span(row, b0, nb, D::kBytes);
    for (int v = lane; v < span.vecs; v += kWarp) stage[v] = __ldg(span.aligned + v);
    __syncwarp();
    if (b0 == b_begin) after_first_stage();
    warp_chunk_dots<D, kRows>(reinterpret_cast<const uint8_t*>(stage) + span.skew, b0, nb, x, cols, x_rows, acc);
    __syncwarp();  // the stage is refilled next pass
  }
}

// warp_row_dots over two rows of the same decoder and length (a gated MLP's gate and up rows), their chunks staged
// together into two stages: the second row's first blocks are in shared memory before the wait for the
// predecessor too, where one row after the other would fetch them from memory after it. Each row's sum follows
// warp_row_dots' order (the same chunks), so the bits are its.
template <typename D, int kRows, typename AfterFirstStage>
__device__ __forceinline__ void warp_row_pair_dots(const uint8_t* row_a, const uint8_t* row_b, int b_begin, int b_end,
                                                   const float* x, int64_t cols, int x_rows, uint4* stage_a,
                                                   uint4* stage_b, AfterFirstStage&& after_first_stage,
                                                   float (&acc_a)[kRows], float (&acc_b)[kRows]) {
  static_assert(D::kBytes <= kStageBytes, "a block must fit the stage");
  constexpr int kChunkBlocks = kStageBytes / D::kBytes;
  const int lane = threadIdx.x % kWarp;
  for (int b0 = b_begin; b0 < b_end; b0 += kChunkBlocks) {
    const int nb = min(kChunkBlocks, b_end - b0);
    const StageSpan a = stage_span(row_a, b0, nb, D::kBytes), b = stage_span(row_b, b0, nb, D::kBytes);
    for (int v = lane; v < max(a.vecs, b.vecs); v += kWarp) {  // both loads in flight before either store waits
      uint4 va, vb;
      if (v < a.vecs) va = __ldg(a.aligned + v);
      if (v < b.vecs) vb = __ldg(b.aligned + v);
      if (v < a.vecs) stage_a[v] = va;
      if (v < b.vecs) stage_b[v] = vb;
    }
    __syncwarp();
    if (b0 == b_begin) after_first_stage();
    warp_chunk_dots<D, kRows>(reinterpret_cast<const uint8_t*>(stage_a) + a.skew, b0, nb, x, cols, x_rows, acc_a);
    warp_chunk_dots<D, kRows>(reinterpret_cast<const uint8_t*>(stage_b) + b.skew, b0, nb, x, cols, x_rows, acc_b);
    __syncwarp();  // the stages are refilled next pass
  }
}

// One activation row of up to kStagedRowMaxCols floats, copied into shared memory by the whole block once it may
// read it: the decoders then read x from shared memory, where reading it from global memory item by item costs an
// L2 round trip on every pass of a lane's item loop (a Q4_K row of 1024 columns is 8 passes per lane).
constexpr int kStagedRowMaxCols = 2048;
__device__ __forceinline__ bool row_stageable(const float* x, int64_t cols) {
  return cols <= kStagedRowMaxCols && cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}
// Every thread of a block of kThreads calls it; all of the thread's loads are in flight before its first store.
template <int kThreads>
__device__ __forceinline__ void stage_row(const float* x, int64_t cols, float4* row) {
  constexpr int kPerThread = (kStagedRowMaxCols / 4 + kThreads - 1) / kThreads;
  const int vecs = int(cols / 4);
  float4 v[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < vecs) v[i] = reinterpret_cast<const float4*>(x)[c];
  }
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < vecs) row[c] = v[i];
  }
  __syncthreads();
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
