// The kernels behind gemv_quant, numbered so the benchmark (tools/gemv_bench.cu) and the tests can force each one
// on the same inputs; gemv_quant itself runs the one gemv_quant_pick_variant names for the shape.
// Every variant computes each output as one fixed-order fp32 sum of the same decoded values times the same
// activations (deterministic run to run), with the block decoders of kernels/dequant/block_decode.cuh.
// bench/gemv_notes.md has what each one does, why, and its measurements.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/gemv/gemv_quant.cuh"
#include "runtime/ggml_types.h"

namespace swrun::cuda {

enum class GemvVariant : int {
  Warp = 1,                // a warp per row, staged through shared memory one row at a time (gemv_quant_warp.cuh)
  WarpPipelined = 2,       // the same sums, with each warp's next rows' blocks in flight (cp.async ring)
  LaneRows = 3,            // a lane per row, blocks decoded from registers (gemv_quant_lanes.cuh)
  LaneRowsEvictFirst = 4,  // LaneRows with the weights loaded evict-first in L2
  LaneRowsStaged = 5,      // LaneRows with coalesced copies through shared memory (double-buffered cp.async)
  BulkTiles4 = 6,          // a lane per row, whole 32-row tiles by bulk copy, 4 warps sharing each tile
  BulkTiles8 = 7,          // BulkTiles4 with 8 warps per tile
  WarpSplit = 8,           // Warp with a row's blocks split between up to 4 warps (one activation row)
  Wide = 9,                // 32-weight units of 4 rows per warp, quants summed before scales (gemv_wide.cuh)
  WideStream8 = 10,        // Wide's units, 8 rows loaded into registers, equal steps per warp (Q4_K, Q6_K)
  WideStream4 = 11,        // WideStream8 with 4 rows
};
constexpr int kGemvVariantCount = 11;

const char* gemv_variant_name(GemvVariant v);

// Whether variant v is defined for these arguments: every variant is, except the wide ones (9-11), which take one
// activation row and the types their kernel decodes.
bool gemv_variant_applies(GemvVariant v, GgmlType type, int64_t cols, int x_rows);

// The variant gemv_quant runs for this shape: the one place the choice is made.
GemvVariant gemv_quant_pick_variant(GgmlType type, int64_t n_out, int64_t cols, int x_rows);

// gemv_quant (same contract and argument checks) with the variant forced.
void gemv_quant_variant(GemvVariant v, GgmlType type, const void* w, const float* x, float* out, int x_rows,
                        int64_t n_out, int64_t cols, cudaStream_t stream);

// The launchers of variants 2-7 (gemv_quant_variants.cu), for arguments gemv_quant_variant has checked.
void launch_gemv_pipelined(GgmlType type, const uint8_t* w, const float* x, float* out, int x_rows, int64_t n_out,
                           int64_t cols, cudaStream_t stream);
void launch_gemv_lane_rows(GgmlType type, bool evict_first, const uint8_t* w, const float* x, float* out,
                           int x_rows, int64_t n_out, int64_t cols, cudaStream_t stream);
void launch_gemv_lane_rows_staged(GgmlType type, const uint8_t* w, const float* x, float* out, int x_rows,
                                  int64_t n_out, int64_t cols, cudaStream_t stream);
// `warps` (4 or 8) share each tile. Built for one activation row (decode): more rows, and rows too long for two
// tiles in a block's shared memory, run variant 5.
void launch_gemv_bulk_tiles(GgmlType type, int warps, const uint8_t* w, const float* x, float* out, int x_rows,
                            int64_t n_out, int64_t cols, cudaStream_t stream);

// Calls f.template operator()<kRows>() with the kernels' activation-row bucket for x_rows (1, 2, 4 or
// kGemvQuantMaxRows): kernels are compiled for these counts and mask the rows past x_rows.
template <typename F>
void with_rows_bucket(int x_rows, F&& f) {
  if (x_rows == 1) f.template operator()<1>();
  else if (x_rows == 2) f.template operator()<2>();
  else if (x_rows <= 4) f.template operator()<4>();
  else f.template operator()<kGemvQuantMaxRows>();
}

}  // namespace swrun::cuda
