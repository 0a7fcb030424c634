// Quantized GEMV kernels: one warp per output row at a time (grid-stride over rows), each row computed by the
// warp-level core of gemv_quant_warp.cuh (variant 1; gemv_quant runs the variant gemv_quant_pick_variant picks,
// the others are in gemv_quant_variants.cu). Weights never change, so the first row is staged before the kernel
// waits for its predecessor (programmatic dependent launch).
#include "kernels/gemv/gemv_quant.cuh"

#include <algorithm>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "kernels/common/launch.cuh"
#include "kernels/dequant/block_decode.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/gemv/gemv_quant_variants.cuh"
#include "kernels/gemv/gemv_quant_warp.cuh"
#include "kernels/norm/rmsnorm.cuh"
#include "kernels/elementwise/activation.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

using gemv::kStageVecs;
using gemv::kWarp;
using gemv::store_row;
using gemv::warp_row_dots;
constexpr int kWarps = 8;
constexpr int kThreads = kWarp * kWarps;

// ---- the residual step folded into a GEMV's prologue (GemvResidualFold) ----
constexpr int kFoldVecs = int(kGemvFoldMaxCols / 4 / kThreads);  // float4 of the row per thread
// Every block re-reads the row's four vectors from L2; past this many bytes in all, a launch of its own is cheaper.
constexpr int64_t kFoldMaxRereadBytes = int64_t(8) << 20;

// The block's sum of v over its threads: warp sums, then the warps' partials in warp order (the same for all).
__device__ __forceinline__ float block_sum(float v, float* partial) {
  v = warp_sum(v);
  __syncthreads();  // an earlier sum's readers are done with partial
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = v;
  __syncthreads();
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) sum += partial[i];
  return sum;
}

// The residual step of `f` on a row of cols4 float4, by every thread of the block: xn lands in `row` (shared
// memory) for the block's dots. All operands are loaded at once. The last block to have read the residual
// writes the new residual and xn, once every block has read the old one (counted in f.arrivals).
__device__ void residual_fold(const GemvResidualFold& f, int cols4, float4* row, float* partial, int* last) {
  const auto* y = reinterpret_cast<const float4*>(f.y);
  const auto* post = reinterpret_cast<const float4*>(f.w_post);
  auto* x = reinterpret_cast<float4*>(f.x);
  const auto* next = reinterpret_cast<const float4*>(f.w_next);
  const float inv_cols = 1.f / float(cols4 * 4);
  float4 v[kFoldVecs], r[kFoldVecs], gp[kFoldVecs], gn[kFoldVecs];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kFoldVecs; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < cols4) {
      v[i] = y[c];
      r[i] = x[c];
      gn[i] = next[c];
      if (post) gp[i] = post[c];
      ss += sum_of_squares(v[i]);
    }
  }
  const float post_scale = post ? rms_scale(block_sum(ss, partial), inv_cols, f.eps) : 1.f;
  ss = 0.f;
#pragma unroll
  for (int i = 0; i < kFoldVecs; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < cols4) {
      const float4 p = post ? scaled(v[i], post_scale, gp[i]) : v[i];
      v[i] = make_float4(r[i].x + p.x, r[i].y + p.y, r[i].z + p.z, r[i].w + p.w);
      ss += sum_of_squares(v[i]);
    }
  }
  const float next_scale = rms_scale(block_sum(ss, partial), inv_cols, f.eps);  // its barrier: every x read here
  if (threadIdx.x == 0) {
    __threadfence();
    *last = atomicAdd(f.arrivals, 1) == int(gridDim.x) - 1;
  }
  __syncthreads();
  const bool writes = *last;
#pragma unroll
  for (int i = 0; i < kFoldVecs; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < cols4) {
      row[c] = scaled(v[i], next_scale, gn[i]);
      if (writes) {
        x[c] = v[i];
        reinterpret_cast<float4*>(f.xn)[c] = row[c];
      }
    }
  }
  if (writes && threadIdx.x == 0) *f.arrivals = 0;  // for the next fold, which runs after this grid completes
  __syncthreads();
}

// A GEMV block's shared memory for a fold. A kernel that may fold runs it in each warp's wait for its
// predecessor, before the warp first reads x; every warp waits once, also one without rows, since the fold
// synchronizes the block.
template <bool kMayFold>
struct FoldingWait {
  static constexpr int kRowVecs = kMayFold ? int(kGemvFoldMaxCols / 4) : 1;
  float4 row[kRowVecs];
  float partial[kWarps];
  int last;
};

// kMats = 2 (gated): row n of w and of w2 (same shape and type) against the same x, combined as
// act(x . w_n) * (x . w2_n); each dot is computed exactly as the plain kernel computes it.
template <typename D, int kRows, int kMats>
__global__ void __launch_bounds__(kThreads)
    gemv_quant_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ w2, int64_t row_bytes,
                      int blocks_per_row, const float* x, int64_t cols, int x_rows, float* out, int64_t n_out,
                      GatedActKind act, GemvResidualFold fold) {
  __shared__ uint4 stage[kWarps][kStageVecs];
  __shared__ FoldingWait<kRows == 1 && kMats == 2> folding;
  const int warp = threadIdx.x / kWarp;
  constexpr bool kMayFold = kRows == 1 && kMats == 2;  // gate/up after the attention's residual step
  const bool folds = kMayFold && fold.y;
  if (folds) x = reinterpret_cast<const float*>(folding.row);
  bool waited = false;
  auto wait_once = [&] {
    if (waited) return;
    waited = true;
    wait_for_predecessor();
    if constexpr (kMayFold)
      if (folds) residual_fold(fold, int(cols / 4), folding.row, folding.partial, &folding.last);
  };
  for (int64_t n = int64_t(blockIdx.x) * kWarps + warp; n < n_out; n += int64_t(gridDim.x) * kWarps) {
    float acc[kRows], up[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = up[r] = 0.f;
    warp_row_dots<D, kRows>(w + n * row_bytes, blocks_per_row, x, cols, x_rows, stage[warp], wait_once, acc);
    if constexpr (kMats == 2) {
      warp_row_dots<D, kRows>(w2 + n * row_bytes, blocks_per_row, x, cols, x_rows, stage[warp], wait_once, up);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float sum = gated_activate(warp_sum(acc[r]), act) * warp_sum(up[r]);
        if (threadIdx.x % kWarp == 0 && (kRows == 1 || r < x_rows)) out[r * n_out + n] = sum;
      }
    } else {
      store_row<kRows>(acc, x_rows, out, n_out, n);
    }
  }
  if (folds) wait_once();
}

// Up to kGemvMultiMax matrices of any decodable types against the same x, their rows concatenated: warp-row g
// belongs to the matrix whose range holds it, whose decoder is picked per row.
template <int kRows>
__global__ void __launch_bounds__(kThreads) gemv_multi_kernel(GemvMultiArgs a, const float* x, int64_t cols,
                                                              int x_rows, GemvResidualFold fold) {
  __shared__ uint4 stage[kWarps][kStageVecs];
  __shared__ FoldingWait<kRows == 1> folding;  // q/k/v after the MLP's residual step
  const int warp = threadIdx.x / kWarp;
  const bool folds = kRows == 1 && fold.y;
  if (folds) x = reinterpret_cast<const float*>(folding.row);
  // Selects member i without indexing the parameter arrays at run time (which would copy them to local memory).
  auto pick = [](const auto (&v)[kGemvMultiMax], int i) { return i == 0 ? v[0] : i == 1 ? v[1] : v[2]; };
  static_assert(kGemvMultiMax == 3, "pick() lists every slot");
  const int64_t total = a.n_out[0] + (a.count > 1 ? a.n_out[1] : 0) + (a.count > 2 ? a.n_out[2] : 0);
  bool waited = false;
  auto wait_once = [&] {
    if (waited) return;
    waited = true;
    wait_for_predecessor();
    if constexpr (kRows == 1)
      if (folds) residual_fold(fold, int(cols / 4), folding.row, folding.partial, &folding.last);
  };
  for (int64_t g = int64_t(blockIdx.x) * kWarps + warp; g < total; g += int64_t(gridDim.x) * kWarps) {
    const int i = g < a.n_out[0] ? 0 : g < a.n_out[0] + a.n_out[1] ? 1 : 2;
    const int64_t n = g - (i > 0 ? a.n_out[0] : 0) - (i > 1 ? a.n_out[1] : 0);
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
    const uint8_t* w = pick(a.w, i);
    with_block_decoder(pick(a.type, i), [&]<typename D>() {
      const int blocks_per_row = int(cols / D::kElems);
      warp_row_dots<D, kRows>(w + n * int64_t(blocks_per_row) * D::kBytes, blocks_per_row, x, cols, x_rows,
                              stage[warp], wait_once, acc);
    });
    store_row<kRows>(acc, x_rows, pick(a.out, i), pick(a.n_out, i), n);
  }
  if (folds) wait_once();
}

// What a launch of `blocks` blocks folds: `fold` when their re-reads of the row stay small, else nothing, and the
// residual step is launched on its own first.
GemvResidualFold fold_or_launch(const GemvResidualFold* fold, int64_t blocks, int64_t cols, cudaStream_t stream) {
  if (!fold) return {};
  if (blocks * cols * int64_t(4 * sizeof(float)) <= kFoldMaxRereadBytes) return *fold;
  gemv_residual_step(*fold, cols, stream);
  return {};
}

template <typename D, int kRows, int kMats>
void launch_gemv(const uint8_t* w, const uint8_t* w2, const float* x, float* out, int x_rows, int64_t n_out,
                 int64_t cols, GatedActKind act, cudaStream_t stream, const GemvResidualFold* fold) {
  // Enough blocks to fill every SM; more rows than warps are strided over.
  static const int64_t max_blocks =
      resident_blocks(gemv_quant_kernel<D, kRows, kMats>, kThreads, "gemv_quant: occupancy");
  const int blocks_per_row = int(cols / D::kElems);
  const int64_t row_bytes = int64_t(blocks_per_row) * D::kBytes;
  const int64_t blocks = std::min(max_blocks, (n_out + kWarps - 1) / kWarps);
  launch_overlapped(gemv_quant_kernel<D, kRows, kMats>, unsigned(blocks), kThreads, stream, "gemv_quant", w, w2,
                    row_bytes, blocks_per_row, x, cols, x_rows, out, n_out, act,
                    fold_or_launch(fold, blocks, cols, stream));
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


template <int kRows>
void launch_multi(const GemvMultiArgs& a, const float* x, int x_rows, int64_t cols, cudaStream_t stream,
                  const GemvResidualFold* fold) {
  static const int64_t max_blocks =
      resident_blocks(gemv_multi_kernel<kRows>, kThreads, "gemv_quant_multi: occupancy");
  int64_t total = 0;
  for (int i = 0; i < a.count; ++i) total += a.n_out[i];
  const int64_t blocks = std::min(max_blocks, (total + kWarps - 1) / kWarps);
  launch_overlapped(gemv_multi_kernel<kRows>, unsigned(blocks), kThreads, stream, "gemv_quant_multi", a, x, cols,
                    x_rows, fold_or_launch(fold, blocks, cols, stream));
}

void check_gemv_args(const char* what, GgmlType type, const void* w, const void* w2, int x_rows, int64_t cols) {
  if (!gemv_quant_supported(type, cols))
    fail(std::string(what) + ": rows of " + std::to_string(cols) + " elements of " + ggml_type_name(uint32_t(type)) +
         " are not supported");
  if (x_rows < 1 || x_rows > kGemvQuantMaxRows)
    fail(std::string(what) + ": " + std::to_string(x_rows) + " activation rows (1.." +
         std::to_string(kGemvQuantMaxRows) + ")");
  if (reinterpret_cast<uintptr_t>(w) % 16 != 0 || reinterpret_cast<uintptr_t>(w2) % 16 != 0)
    fail(std::string(what) + ": weights are not 16-byte aligned");
}

// A fold reads one row of cols floats that is the GEMV's x.
void check_fold(const char* what, const GemvResidualFold* fold, const float* x, int x_rows, int64_t cols) {
  if (!fold) return;
  if (x_rows != 1 || x != fold->xn || !gemv_fold_supported(cols) || !fold->y || !fold->x || !fold->w_next ||
      !fold->arrivals)
    fail(std::string(what) + ": a residual step folded into a GEMV takes one row of up to " +
         std::to_string(kGemvFoldMaxCols) + " floats (a multiple of 4) whose xn is the GEMV's input");
  for (const void* p : {static_cast<const void*>(fold->y), static_cast<const void*>(fold->w_post),
                        static_cast<const void*>(fold->x), static_cast<const void*>(fold->w_next),
                        static_cast<const void*>(fold->xn)})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail(std::string(what) + ": folded rows must be 16-byte aligned");
}

template <int kMats>
void dispatch_gemv(GgmlType type, const void* w, const void* w2, const float* x, float* out, int x_rows,
                   int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream,
                   const GemvResidualFold* fold) {
  const auto* a = static_cast<const uint8_t*>(w);
  const auto* b = static_cast<const uint8_t*>(w2);
  with_block_decoder(type, [&]<typename D>() {
    with_rows_bucket(x_rows, [&]<int kRows>() {
      launch_gemv<D, kRows, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream, fold);
    });
  });
}

}  // namespace

void gemv_residual_step(const GemvResidualFold& f, int64_t cols, cudaStream_t stream) {
  residual_norm_f32(f.y, f.w_post, f.x, f.w_next, f.xn, 1, cols, f.eps, stream);
}

bool gemv_fold_supported(int64_t cols) { return cols > 0 && cols % 4 == 0 && cols <= kGemvFoldMaxCols; }

bool gemv_quant_supported(GgmlType type, int64_t cols) {
  const int elems = block_decoder_elems(type);
  return elems > 0 && cols > 0 && cols % elems == 0 && cols / elems <= INT32_MAX;
}

const char* gemv_variant_name(GemvVariant v) {
  switch (v) {
    case GemvVariant::Warp: return "warp";
    case GemvVariant::WarpPipelined: return "warp-pipelined";
    case GemvVariant::LaneRows: return "lane-rows";
    case GemvVariant::LaneRowsEvictFirst: return "lane-rows-evict-first";
    case GemvVariant::LaneRowsStaged: return "lane-rows-staged";
    case GemvVariant::BulkTiles4: return "bulk-tiles-4";
    case GemvVariant::BulkTiles8: return "bulk-tiles-8";
  }
  return "unknown";
}

// Measured on an H200 with tools/gemv_bench, one activation row (bench/gemv_notes.md): a lane per row wins from a
// few thousand rows up, whole tiles by bulk copy on the output projections (262144x640 Q8_0: 63.5 us bulk-tiles-4,
// 78 staged, 82 lane-rows, 147 warp; 128256x4096 Q6_K: 281 bulk-tiles-8, 315 lane-rows, 626 warp; 4096x4096 Q4_K:
// 14.3 lane-rows vs 22.2), a warp per row below (1024-2048 rows of 640: 5.5 us vs 9-13), except Q6_K rows,
// where the pipelined warp was faster (640x2048: 8.3 vs 11.2 us). Several activation rows keep the warp per row:
// the lane-per-row variants are built for one.
GemvVariant gemv_quant_pick_variant(GgmlType type, int64_t n_out, int64_t, int x_rows) {
  if (x_rows != 1) return GemvVariant::Warp;
  if (n_out >= 65536 && type == GgmlType::Q8_0) return GemvVariant::BulkTiles4;  // the measured output projections
  if (n_out >= 65536 && type == GgmlType::Q6_K) return GemvVariant::BulkTiles8;
  if (n_out >= 4096) return GemvVariant::LaneRows;
  return type == GgmlType::Q6_K ? GemvVariant::WarpPipelined : GemvVariant::Warp;
}

void gemv_quant_variant(GemvVariant v, GgmlType type, const void* w, const float* x, float* out, int x_rows,
                        int64_t n_out, int64_t cols, cudaStream_t stream) {
  check_gemv_args("gemv_quant", type, w, w, x_rows, cols);
  if (n_out <= 0) return;
  const auto* weights = static_cast<const uint8_t*>(w);
  switch (v) {
    case GemvVariant::Warp:
      return dispatch_gemv<1>(type, w, w, x, out, x_rows, n_out, cols, GatedActKind::Silu, stream, nullptr);
    case GemvVariant::WarpPipelined:
      return launch_gemv_pipelined(type, weights, x, out, x_rows, n_out, cols, stream);
    case GemvVariant::LaneRows:
    case GemvVariant::LaneRowsEvictFirst:
      return launch_gemv_lane_rows(type, v == GemvVariant::LaneRowsEvictFirst, weights, x, out, x_rows, n_out, cols,
                                   stream);
    case GemvVariant::LaneRowsStaged:
      return launch_gemv_lane_rows_staged(type, weights, x, out, x_rows, n_out, cols, stream);
    case GemvVariant::BulkTiles4:
    case GemvVariant::BulkTiles8:
      return launch_gemv_bulk_tiles(type, v == GemvVariant::BulkTiles8 ? 8 : 4, weights, x, out, x_rows, n_out, cols,
                                    stream);
  }
  fail("gemv_quant: no variant " + std::to_string(int(v)));
}

void gemv_quant(GgmlType type, const void* w, const float* x, float* out, int x_rows, int64_t n_out, int64_t cols,
                cudaStream_t stream) {
  gemv_quant_variant(gemv_quant_pick_variant(type, n_out, cols, x_rows), type, w, x, out, x_rows, n_out, cols,
                     stream);
}

void gemv_quant_gated(GgmlType type, const void* w_gate, const void* w_up, const float* x, float* out, int x_rows,
                      int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream,
                      const GemvResidualFold* fold) {
  check_gemv_args("gemv_quant", type, w_gate, w_up, x_rows, cols);
  check_fold("gemv_quant_gated", fold, x, x_rows, cols);
  if (n_out <= 0) {
    if (fold) gemv_residual_step(*fold, cols, stream);
    return;
  }
  dispatch_gemv<2>(type, w_gate, w_up, x, out, x_rows, n_out, cols, act, stream, fold);
}

void gemv_quant_multi(const GemvMultiArgs& a, const float* x, int x_rows, int64_t cols, cudaStream_t stream,
                      const GemvResidualFold* fold) {
  if (a.count < 1 || a.count > kGemvMultiMax) fail("gemv_quant_multi: " + std::to_string(a.count) + " matrices");
  if (x_rows < 1 || x_rows > kGemvQuantMaxRows)
    fail("gemv_quant_multi: " + std::to_string(x_rows) + " activation rows");
  for (int i = 0; i < a.count; ++i) {
    if (!gemv_quant_supported(a.type[i], cols) || a.n_out[i] <= 0 || reinterpret_cast<uintptr_t>(a.w[i]) % 16 != 0)
      fail("gemv_quant_multi: matrix " + std::to_string(i) + " (" + ggml_type_name(uint32_t(a.type[i])) + ", " +
           std::to_string(a.n_out[i]) + " rows of " + std::to_string(cols) + ") is not supported");
  }
  check_fold("gemv_quant_multi", fold, x, x_rows, cols);
  with_rows_bucket(x_rows, [&]<int kRows>() { launch_multi<kRows>(a, x, x_rows, cols, stream, fold); });
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
