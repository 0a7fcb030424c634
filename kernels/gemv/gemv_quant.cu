// Quantized GEMV kernels: a warp per output row at a time (grid-stride over rows), or with one activation row up to
// 4 warps sharing a row (RowParts), each part computed by the warp-level core of gemv_quant_warp.cuh (variants 1 and
// 8; gemv_quant runs the variant gemv_quant_pick_variant picks, the others are in gemv_quant_variants.cu). Weights
// never change, so the first blocks of each warp's row are staged before the kernel waits for its predecessor
// (programmatic dependent launch); one row of x is copied into shared memory after it.
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
#include "kernels/gemv/gemv_wide.cuh"
#include "kernels/norm/rmsnorm.cuh"
#include "kernels/elementwise/activation.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

using gemv::kStageVecs;
using gemv::kWarp;
using gemv::store_row;
using gemv::warp_row_dots;
using gemv::warp_row_pair_dots;
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
// memory), where the block's dots read it, and the thread's float4 of the new residual in `residual`. All operands
// are loaded at once. Returns, in thread 0, the block's ticket: how many blocks had read the old residual before
// this one. The block with the last ticket writes x and xn at its end (residual_fold_finish), when every block has
// read the old x. The ticket is not waited for here: its round trip to L2 (and the fence before it) overlaps the
// block's dots instead of delaying them.
__device__ __forceinline__ int residual_fold(const GemvResidualFold& f, int cols4, float4* row,
                                             float4 (&residual)[kFoldVecs], float* partial) {
  const auto* y = reinterpret_cast<const float4*>(f.y);
  const auto* post = reinterpret_cast<const float4*>(f.w_post);
  const auto* x = reinterpret_cast<const float4*>(f.x);
  const auto* next = reinterpret_cast<const float4*>(f.w_next);
  const float inv_cols = 1.f / float(cols4 * 4);
  float4 (&v)[kFoldVecs] = residual;
  float4 r[kFoldVecs], gp[kFoldVecs], gn[kFoldVecs];
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
  // Its barrier: every thread's reads of x are done (their values are in the sums).
  const float next_scale = rms_scale(block_sum(ss, partial), inv_cols, f.eps);
  int ticket = 0;
  if (threadIdx.x == 0) {
    __threadfence();
    ticket = atomicAdd(f.arrivals, 1);
  }
#pragma unroll
  for (int i = 0; i < kFoldVecs; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < cols4) row[c] = scaled(v[i], next_scale, gn[i]);
  }
  __syncthreads();
  return ticket;
}

// The end of a folding block (every thread, after all of the block's dots): the block with the last ticket writes
// the new residual and xn, and puts the counter back to 0 for the next fold, which runs after this grid completes.
__device__ __forceinline__ void residual_fold_finish(const GemvResidualFold& f, int cols4, const float4* row,
                                                     const float4 (&residual)[kFoldVecs], int ticket, int* last) {
  if (threadIdx.x == 0) *last = ticket == int(gridDim.x) - 1;
  __syncthreads();
  if (!*last) return;
#pragma unroll
  for (int i = 0; i < kFoldVecs; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c < cols4) {
      reinterpret_cast<float4*>(f.x)[c] = residual[i];
      reinterpret_cast<float4*>(f.xn)[c] = row[c];
    }
  }
  if (threadIdx.x == 0) *f.arrivals = 0;
}

// A GEMV block's shared memory for its one row of x: the fold's xn, or x copied (gemv::stage_row). A kernel runs
// either in each warp's wait for its predecessor, before the warp first reads x; every warp waits once, also one
// without rows, since both synchronize the block.
template <bool kOneRow>
struct SharedRow {
  static_assert(kGemvFoldMaxCols == gemv::kStagedRowMaxCols, "one row buffer for both");
  static constexpr int kRowVecs = kOneRow ? int(kGemvFoldMaxCols / 4) : 1;
  float4 row[kRowVecs];  // the block's x
  float partial[kWarps];
  int last;
};

// A row's blocks split between `split` warps of a block (row_split: one row of x only): a warp alone on a row
// of 2048 columns walks 16 passes of its item loop one after another while the decode step waits for it (the down
// projections measured 5.6 us a launch on Q4_K and 8.2 on Q6_K in the graph, against 3.0 for 1024 columns). Warp w
// takes part w % split of row slot w / split; the parts' sums meet in shared memory in part order, so the sums are
// deterministic (the split depends on the shape and the device only).
struct RowParts {
  int split, part, slot, rows_per_block;
  __device__ explicit RowParts(int split_)
      : split(split_), part(int(threadIdx.x) / kWarp % split_), slot(int(threadIdx.x) / kWarp / split_),
        rows_per_block(kWarps / split_) {}
  // This warp's blocks [begin, end) of a row of nb blocks.
  __device__ int begin(int nb) const { return min(nb, part * ((nb + split - 1) / split)); }
  __device__ int end(int nb) const { return min(nb, (part + 1) * ((nb + split - 1) / split)); }
  // The row's sums from every part's (warp-summed) sums: called by every warp of the block alike (two barriers
  // when split); the total is good in the part-0 warp.
  __device__ float2 total(float2 mine, float2* parts) const {
    if (split == 1) return mine;
    const int warp = int(threadIdx.x) / kWarp;
    if (threadIdx.x % kWarp == 0) parts[warp] = mine;
    __syncthreads();
    const float2* row = parts + slot * split;
    float2 sum = row[0];
    for (int p = 1; p < split; ++p) sum = make_float2(sum.x + row[p].x, sum.y + row[p].y);
    __syncthreads();  // every warp has read parts before the next round refills it
    return sum;
  }
};

// kMats = 2 (gated): row n of w and of w2 (same shape and type) against the same x, combined as
// act(x . w_n) * (x . w2_n); each dot is computed exactly as the plain kernel computes it, the two rows staged
// together (warp_row_pair_dots). `split`: RowParts (1 unless kRows is 1).
template <typename D, int kRows, int kMats>
__global__ void __launch_bounds__(kThreads)
    gemv_quant_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ w2, int64_t row_bytes,
                      int blocks_per_row, const float* x, int64_t cols, int x_rows, float* out, int64_t n_out,
                      GatedActKind act, GemvResidualFold fold, int split) {
  __shared__ uint4 stage[kWarps][kStageVecs];
  __shared__ uint4 stage_up[kMats == 2 ? kWarps : 1][kStageVecs];  // the gated kernel's second row
  __shared__ SharedRow<kRows == 1> shared_row;
  __shared__ float2 parts[kWarps];
  const int warp = threadIdx.x / kWarp;
  constexpr bool kMayFold = kRows == 1 && kMats == 2;  // gate/up after the attention's residual step
  const bool folds = kMayFold && fold.y;
  // One row of x goes to shared memory: computed there by the fold, else copied (gemv::stage_row).
  const bool stages_x = kRows == 1 && !folds && gemv::row_stageable(x, cols);
  const float* x_global = x;
  if (folds || stages_x) x = reinterpret_cast<const float*>(shared_row.row);
  bool waited = false;
  int ticket = 0;            // thread 0's, read only at the end (residual_fold)
  float4 residual[kFoldVecs];  // the thread's part of the new residual
  auto wait_once = [&] {
    if (waited) return;
    waited = true;
    wait_for_predecessor();
    if constexpr (kRows == 1) {
      if (stages_x) gemv::stage_row<kThreads>(x_global, cols, shared_row.row);
      if constexpr (kMayFold)
        if (folds) ticket = residual_fold(fold, int(cols / 4), shared_row.row, residual, shared_row.partial);
    }
  };
  const RowParts rp(kRows == 1 ? split : 1);
  const int b_begin = rp.begin(blocks_per_row), b_end = rp.end(blocks_per_row);
  // Every warp runs every round (RowParts::total synchronizes the block); one whose row is past the end, or whose
  // part is empty, only waits.
  for (int64_t base = int64_t(blockIdx.x) * rp.rows_per_block; base < n_out;
       base += int64_t(gridDim.x) * rp.rows_per_block) {
    const int64_t n = base + rp.slot;
    const bool live = n < n_out;
    float acc[kRows], up[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = up[r] = 0.f;
    if (live && b_begin < b_end) {
      if constexpr (kMats == 2)
        warp_row_pair_dots<D, kRows>(w + n * row_bytes, w2 + n * row_bytes, b_begin, b_end, x, cols, x_rows,
                                     stage[warp], stage_up[warp], wait_once, acc, up);
      else
        warp_row_dots<D, kRows>(w + n * row_bytes, b_begin, b_end, x, cols, x_rows, stage[warp], wait_once, acc);
    } else {
      wait_once();
    }
    if constexpr (kRows == 1) {
      const float2 sum = rp.total(make_float2(warp_sum(acc[0]), kMats == 2 ? warp_sum(up[0]) : 0.f), parts);
      if (live && rp.part == 0 && threadIdx.x % kWarp == 0)
        out[n] = kMats == 2 ? gated_activate(sum.x, act) * sum.y : sum.x;
    } else if (live) {
      if constexpr (kMats == 2) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const float sum = gated_activate(warp_sum(acc[r]), act) * warp_sum(up[r]);
          if (threadIdx.x % kWarp == 0 && r < x_rows) out[r * n_out + n] = sum;
        }
      } else {
        store_row<kRows>(acc, x_rows, out, n_out, n);
      }
    }
  }
  if (stages_x) wait_once();  // the copy synchronizes the block: warps without rows take part too
  if (folds) {
    wait_once();
    residual_fold_finish(fold, int(cols / 4), shared_row.row, residual, ticket, &shared_row.last);
  }
}

// Up to kGemvMultiMax matrices of any decodable types against the same x, their rows concatenated: row slot g
// belongs to the matrix whose range holds it, whose decoder is picked per row. `split` as gemv_quant_kernel's.
template <int kRows>
__global__ void __launch_bounds__(kThreads) gemv_multi_kernel(GemvMultiArgs a, const float* x, int64_t cols,
                                                              int x_rows, GemvResidualFold fold, int split) {
  __shared__ uint4 stage[kWarps][kStageVecs];
  __shared__ SharedRow<kRows == 1> shared_row;  // q/k/v after the MLP's residual step
  __shared__ float2 parts[kWarps];
  const int warp = threadIdx.x / kWarp;
  const bool folds = kRows == 1 && fold.y;
  const bool stages_x = kRows == 1 && !folds && gemv::row_stageable(x, cols);  // as gemv_quant_kernel
  const float* x_global = x;
  if (folds || stages_x) x = reinterpret_cast<const float*>(shared_row.row);
  // Selects member i without indexing the parameter arrays at run time (which would copy them to local memory).
  auto pick = [](const auto (&v)[kGemvMultiMax], int i) { return i == 0 ? v[0] : i == 1 ? v[1] : v[2]; };
  static_assert(kGemvMultiMax == 3, "pick() lists every slot");
  const int64_t total = a.n_out[0] + (a.count > 1 ? a.n_out[1] : 0) + (a.count > 2 ? a.n_out[2] : 0);
  bool waited = false;
  int ticket = 0;            // thread 0's, read only at the end (residual_fold)
  float4 residual[kFoldVecs];  // the thread's part of the new residual
  auto wait_once = [&] {
    if (waited) return;
    waited = true;
    wait_for_predecessor();
    if constexpr (kRows == 1) {
      if (stages_x) gemv::stage_row<kThreads>(x_global, cols, shared_row.row);
      if (folds) ticket = residual_fold(fold, int(cols / 4), shared_row.row, residual, shared_row.partial);
    }
  };
  const RowParts rp(kRows == 1 ? split : 1);
  for (int64_t base = int64_t(blockIdx.x) * rp.rows_per_block; base < total;
       base += int64_t(gridDim.x) * rp.rows_per_block) {
    const int64_t g = base + rp.slot;
    const bool live = g < total;
    const int i = g < a.n_out[0] ? 0 : g < a.n_out[0] + a.n_out[1] ? 1 : 2;
    const int64_t n = g - (i > 0 ? a.n_out[0] : 0) - (i > 1 ? a.n_out[1] : 0);
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
    bool dotted = false;
    if (live) {
      const uint8_t* w = pick(a.w, i);
      with_block_decoder(pick(a.type, i), [&]<typename D>() {
        const int blocks_per_row = int(cols / D::kElems), b_begin = rp.begin(blocks_per_row);
        const int b_end = rp.end(blocks_per_row);
        if (b_begin == b_end) return;
        warp_row_dots<D, kRows>(w + n * int64_t(blocks_per_row) * D::kBytes, b_begin, b_end, x, cols, x_rows,
                                stage[warp], wait_once, acc);
        dotted = true;
      });
    }
    if (!dotted) wait_once();
    if constexpr (kRows == 1) {
      const float sum = rp.total(make_float2(warp_sum(acc[0]), 0.f), parts).x;
      if (live && rp.part == 0 && threadIdx.x % kWarp == 0) pick(a.out, i)[n] = sum;
    } else if (live) {
      store_row<kRows>(acc, x_rows, pick(a.out, i), pick(a.n_out, i), n);
    }
  }
  if (stages_x) wait_once();
  if (folds) {
    wait_once();
    residual_fold_finish(fold, int(cols / 4), shared_row.row, residual, ticket, &shared_row.last);
  }
}

// What a launch of `blocks` blocks folds: `fold` when their re-reads of the row stay small, else nothing, and the
// residual step is launched on its own first.
GemvResidualFold fold_or_launch(const GemvResidualFold* fold, int64_t blocks, int64_t cols, cudaStream_t stream) {
  if (!fold) return {};
  if (blocks * cols * int64_t(4 * sizeof(float)) <= kFoldMaxRereadBytes) return *fold;
  gemv_residual_step(*fold, cols, stream);
  return {};
}

// Warps per row (RowParts) for one row of x of `cols`: a part of at most 256 columns a warp (two passes of a K-quant
// block's 64 items per lane), up to 4 parts, as long as the launch's `rows` still fit one wave of `max_blocks`
// blocks: rows of a second round are not staged before the wait, and that cost more than the split gained (the
// gate/up and q/k/v GEMVs of a Gemma 3 270M step, 2048 and 1536 rows of 640 at two blocks an SM: 5.5 -> 11.3 and
// 3.7 -> 6.9 us in the graph at 4 parts).
int row_split(int64_t cols, int x_rows, int64_t rows, int64_t max_blocks) {
  if (x_rows != 1) return 1;
  int split = 1;
  while (split < 4 && int64_t(split) * 256 < cols && (rows * 2 * split + kWarps - 1) / kWarps <= max_blocks)
    split *= 2;
  return split;
}

template <typename D, int kRows, int kMats>
void launch_gemv(const uint8_t* w, const uint8_t* w2, const float* x, float* out, int x_rows, int64_t n_out,
                 int64_t cols, GatedActKind act, cudaStream_t stream, const GemvResidualFold* fold, bool split_rows) {
  // Enough blocks to fill every SM; more rows than a round of blocks takes are strided over.
  static const int64_t max_blocks =
      resident_blocks(gemv_quant_kernel<D, kRows, kMats>, kThreads, "gemv_quant: occupancy");
  const int split = split_rows ? row_split(cols, x_rows, n_out, max_blocks) : 1;
  const int blocks_per_row = int(cols / D::kElems);
  const int64_t row_bytes = int64_t(blocks_per_row) * D::kBytes;
  const int64_t rows_per_block = kWarps / split;
  const int64_t blocks = std::min(max_blocks, (n_out + rows_per_block - 1) / rows_per_block);
  launch_overlapped(gemv_quant_kernel<D, kRows, kMats>, unsigned(blocks), kThreads, stream, "gemv_quant", w, w2,
                    row_bytes, blocks_per_row, x, cols, x_rows, out, n_out, act,
                    fold_or_launch(fold, blocks, cols, stream), split);
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
  const int split = row_split(cols, x_rows, total, max_blocks);
  const int64_t rows_per_block = kWarps / split;
  const int64_t blocks = std::min(max_blocks, (total + rows_per_block - 1) / rows_per_block);
  launch_overlapped(gemv_multi_kernel<kRows>, unsigned(blocks), kThreads, stream, "gemv_quant_multi", a, x, cols,
                    x_rows, fold_or_launch(fold, blocks, cols, stream), split);
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
                   const GemvResidualFold* fold, bool split_rows) {
  const auto* a = static_cast<const uint8_t*>(w);
  const auto* b = static_cast<const uint8_t*>(w2);
  with_block_decoder(type, [&]<typename D>() {
    with_rows_bucket(x_rows, [&]<int kRows>() {
      launch_gemv<D, kRows, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream, fold, split_rows);
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
    case GemvVariant::WarpSplit: return "warp-split";
    case GemvVariant::Wide: return "wide";
    case GemvVariant::WideStream8: return "wide-stream-8";
    case GemvVariant::WideStream4: return "wide-stream-4";
  }
  return "unknown";
}

// Measured on an H200 with tools/gemv_bench, one activation row (bench/gemv_notes.md): a lane per row wins from a
// few thousand rows up, whole tiles by bulk copy on the output projections (262144x640 Q8_0: 63.5 us bulk-tiles-4,
// 78 staged, 82 lane-rows, 147 warp; 128256x4096 Q6_K: 281 bulk-tiles-8, 315 lane-rows, 626 warp; 4096x4096 Q4_K:
// 14.3 lane-rows vs 22.2), warps per row below (1024-2048 rows of 640: 5.5 us vs 9-13), their rows split between
// warps (WarpSplit, bench/gemv_notes.md #8: in a decode step's graph the down projections of 640 x 2048 took 5.6
// us as one warp per row on Q4_K and 8.2 us pipelined on Q6_K). Several activation rows keep the warp per row:
// the lane-per-row variants are built for one.
// Rows wider than the activation row the warp variants stage in shared memory (every layer matrix of a 7B+ model)
// take the wide variant where it decodes the type.
static bool takes_wide(GgmlType type, int64_t cols, int x_rows) {
  return x_rows == 1 && cols > gemv::kStagedRowMaxCols && gemv_wide_supported(type, cols);
}

// The gemv_wide kernel behind a wide variant.
static GemvWideKernel wide_kernel(GemvVariant v) {
  if (v == GemvVariant::WideStream8) return GemvWideKernel::Stream8;
  if (v == GemvVariant::WideStream4) return GemvWideKernel::Stream4;
  return GemvWideKernel::Staged;
}

static bool is_wide(GemvVariant v) {
  return v == GemvVariant::Wide || v == GemvVariant::WideStream8 || v == GemvVariant::WideStream4;
}

bool gemv_variant_applies(GemvVariant v, GgmlType type, int64_t cols, int x_rows) {
  return !is_wide(v) || (x_rows == 1 && gemv_wide_supported(type, cols, wide_kernel(v)));
}

GemvVariant gemv_quant_pick_variant(GgmlType type, int64_t n_out, int64_t cols, int x_rows) {
  if (takes_wide(type, cols, x_rows)) {
    switch (gemv_wide_pick(type)) {
      case GemvWideKernel::Stream8: return GemvVariant::WideStream8;
      case GemvWideKernel::Stream4: return GemvVariant::WideStream4;
      default: return GemvVariant::Wide;
    }
  }
  if (x_rows != 1) return GemvVariant::Warp;
  if (n_out >= 65536 && type == GgmlType::Q8_0) return GemvVariant::BulkTiles4;  // the measured output projections
  if (n_out >= 65536 && type == GgmlType::Q6_K) return GemvVariant::BulkTiles8;
  if (n_out >= 4096) return GemvVariant::LaneRows;
  return GemvVariant::WarpSplit;
}

void gemv_quant_variant(GemvVariant v, GgmlType type, const void* w, const float* x, float* out, int x_rows,
                        int64_t n_out, int64_t cols, cudaStream_t stream) {
  check_gemv_args("gemv_quant", type, w, w, x_rows, cols);
  if (n_out <= 0) return;
  const auto* weights = static_cast<const uint8_t*>(w);
  switch (v) {
    case GemvVariant::Warp:
      return dispatch_gemv<1>(type, w, w, x, out, x_rows, n_out, cols, GatedActKind::Silu, stream, nullptr, false);
    case GemvVariant::WarpSplit:
      return dispatch_gemv<1>(type, w, w, x, out, x_rows, n_out, cols, GatedActKind::Silu, stream, nullptr, true);
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
    case GemvVariant::Wide:
    case GemvVariant::WideStream8:
    case GemvVariant::WideStream4: {
      if (x_rows != 1) fail("gemv_quant: the wide variants take one activation row, not " + std::to_string(x_rows));
      const GemvWideSeg seg{weights, out, n_out};
      return gemv_wide(type, &seg, 1, x, cols, stream, wide_kernel(v));
    }
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
  if (!fold && takes_wide(type, cols, x_rows))
    return gemv_wide_gated(type, static_cast<const uint8_t*>(w_gate), static_cast<const uint8_t*>(w_up), x, out, n_out,
                           cols, act, stream);
  dispatch_gemv<2>(type, w_gate, w_up, x, out, x_rows, n_out, cols, act, stream, fold, true);
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
  static_assert(kGemvWideMaxSegs >= kGemvMultiMax, "a wide launch takes every matrix of one type");
  bool wide = !fold;
  for (int i = 0; wide && i < a.count; ++i) wide = takes_wide(a.type[i], cols, x_rows);
  if (wide) {  // one launch per type among the matrices (Q4_K_M files keep some v projections in Q6_K)
    for (int i = 0; i < a.count; ++i) {
      bool first_of_type = true;
      for (int j = 0; j < i; ++j) first_of_type = first_of_type && a.type[j] != a.type[i];
      if (!first_of_type) continue;
      GemvWideSeg segs[kGemvMultiMax];
      int n = 0;
      for (int j = i; j < a.count; ++j)
        if (a.type[j] == a.type[i]) segs[n++] = {a.w[j], a.out[j], a.n_out[j]};
      gemv_wide(a.type[i], segs, n, x, cols, stream);
    }
    return;
  }
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
