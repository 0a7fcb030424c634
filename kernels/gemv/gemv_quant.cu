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
#include "kernels/gemv/gemv_quant_variants.cuh"
#include "kernels/gemv/gemv_quant_warp.cuh"
#include "kernels/elementwise/activation.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

using gemv::kStageVecs;
using gemv::kWarp;
using gemv::store_row;
using gemv::warp_row_dots;
using gemv::warp_sum;
constexpr int kWarps = 8;
constexpr int kThreads = kWarp * kWarps;

// kMats = 2 (gated): row n of w and of w2 (same shape and type) against the same x, combined as
// act(x . w_n) * (x . w2_n); each dot is computed exactly as the plain kernel computes it.
template <typename D, int kRows, int kMats>
__global__ void __launch_bounds__(kThreads)
    gemv_quant_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ w2, int64_t row_bytes,
                      int blocks_per_row, const float* x, int64_t cols, int x_rows, float* out, int64_t n_out,
                      GatedActKind act) {
  __shared__ uint4 stage[kWarps][kStageVecs];
  const int warp = threadIdx.x / kWarp;
  bool waited = false;
  auto wait_once = [&] {
    if (!waited) wait_for_predecessor();
    waited = true;
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
}

// Up to kGemvMultiMax matrices of any decodable types against the same x, their rows concatenated: warp-row g
// belongs to the matrix whose range holds it, whose decoder is picked per row.
template <int kRows>
__global__ void __launch_bounds__(kThreads) gemv_multi_kernel(GemvMultiArgs a, const float* x, int64_t cols,
                                                              int x_rows) {
  __shared__ uint4 stage[kWarps][kStageVecs];
  const int warp = threadIdx.x / kWarp;
  // Selects member i without indexing the parameter arrays at run time (which would copy them to local memory).
  auto pick = [](const auto (&v)[kGemvMultiMax], int i) { return i == 0 ? v[0] : i == 1 ? v[1] : v[2]; };
  static_assert(kGemvMultiMax == 3, "pick() lists every slot");
  const int64_t total = a.n_out[0] + (a.count > 1 ? a.n_out[1] : 0) + (a.count > 2 ? a.n_out[2] : 0);
  bool waited = false;
  auto wait_once = [&] {
    if (!waited) wait_for_predecessor();
    waited = true;
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
}

template <typename D, int kRows, int kMats>
void launch_gemv(const uint8_t* w, const uint8_t* w2, const float* x, float* out, int x_rows, int64_t n_out,
                 int64_t cols, GatedActKind act, cudaStream_t stream) {
  // Enough blocks to fill every SM; more rows than warps are strided over.
  static const int64_t max_blocks =
      resident_blocks(gemv_quant_kernel<D, kRows, kMats>, kThreads, "gemv_quant: occupancy");
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


template <int kRows>
void launch_multi(const GemvMultiArgs& a, const float* x, int x_rows, int64_t cols, cudaStream_t stream) {
  static const int64_t max_blocks =
      resident_blocks(gemv_multi_kernel<kRows>, kThreads, "gemv_quant_multi: occupancy");
  int64_t total = 0;
  for (int i = 0; i < a.count; ++i) total += a.n_out[i];
  const int64_t blocks = std::min(max_blocks, (total + kWarps - 1) / kWarps);
  launch_overlapped(gemv_multi_kernel<kRows>, unsigned(blocks), kThreads, stream, "gemv_quant_multi", a, x, cols,
                    x_rows);
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

template <int kMats>
void dispatch_gemv(GgmlType type, const void* w, const void* w2, const float* x, float* out, int x_rows,
                   int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream) {
  const auto* a = static_cast<const uint8_t*>(w);
  const auto* b = static_cast<const uint8_t*>(w2);
  with_block_decoder(type, [&]<typename D>() {
    with_rows_bucket(x_rows, [&]<int kRows>() {
      launch_gemv<D, kRows, kMats>(a, b, x, out, x_rows, n_out, cols, act, stream);
    });
  });
}

}  // namespace

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
  }
  return "unknown";
}

// Measured on an H200 with tools/gemv_bench, one activation row (bench/gemv_notes.md): a lane per row wins from a
// few thousand rows up (262144x640 Q8_0: 82 us staged, 88 lane-rows, 147 warp; 128256x4096 Q6_K: 316 vs 626;
// 4096x4096 Q4_K: 14.3 vs 22.2), a warp per row below (1024-2048 rows of 640: 5.5 us vs 9-13), except Q6_K rows,
// where the pipelined warp was faster (640x2048: 8.3 vs 11.2 us). Several activation rows keep the warp per row:
// the lane-per-row variants are built for one.
GemvVariant gemv_quant_pick_variant(GgmlType type, int64_t n_out, int64_t, int x_rows) {
  if (x_rows != 1) return GemvVariant::Warp;
  if (n_out >= 4096)
    return type == GgmlType::Q8_0 && n_out >= 65536 ? GemvVariant::LaneRowsStaged : GemvVariant::LaneRows;
  return type == GgmlType::Q6_K ? GemvVariant::WarpPipelined : GemvVariant::Warp;
}

void gemv_quant_variant(GemvVariant v, GgmlType type, const void* w, const float* x, float* out, int x_rows,
                        int64_t n_out, int64_t cols, cudaStream_t stream) {
  check_gemv_args("gemv_quant", type, w, w, x_rows, cols);
  if (n_out <= 0) return;
  const auto* weights = static_cast<const uint8_t*>(w);
  switch (v) {
    case GemvVariant::Warp:
      return dispatch_gemv<1>(type, w, w, x, out, x_rows, n_out, cols, GatedActKind::Silu, stream);
    case GemvVariant::WarpPipelined:
      return launch_gemv_pipelined(type, weights, x, out, x_rows, n_out, cols, stream);
    case GemvVariant::LaneRows:
    case GemvVariant::LaneRowsEvictFirst:
      return launch_gemv_lane_rows(type, v == GemvVariant::LaneRowsEvictFirst, weights, x, out, x_rows, n_out, cols,
                                   stream);
    case GemvVariant::LaneRowsStaged:
      return launch_gemv_lane_rows_staged(type, weights, x, out, x_rows, n_out, cols, stream);
  }
  fail("gemv_quant: no variant " + std::to_string(int(v)));
}

void gemv_quant(GgmlType type, const void* w, const float* x, float* out, int x_rows, int64_t n_out, int64_t cols,
                cudaStream_t stream) {
  gemv_quant_variant(gemv_quant_pick_variant(type, n_out, cols, x_rows), type, w, x, out, x_rows, n_out, cols,
                     stream);
}

void gemv_quant_gated(GgmlType type, const void* w_gate, const void* w_up, const float* x, float* out, int x_rows,
                      int64_t n_out, int64_t cols, GatedActKind act, cudaStream_t stream) {
  check_gemv_args("gemv_quant", type, w_gate, w_up, x_rows, cols);
  if (n_out <= 0) return;
  dispatch_gemv<2>(type, w_gate, w_up, x, out, x_rows, n_out, cols, act, stream);
}

void gemv_quant_multi(const GemvMultiArgs& a, const float* x, int x_rows, int64_t cols, cudaStream_t stream) {
  if (a.count < 1 || a.count > kGemvMultiMax) fail("gemv_quant_multi: " + std::to_string(a.count) + " matrices");
  if (x_rows < 1 || x_rows > kGemvQuantMaxRows)
    fail("gemv_quant_multi: " + std::to_string(x_rows) + " activation rows");
  for (int i = 0; i < a.count; ++i) {
    if (!gemv_quant_supported(a.type[i], cols) || a.n_out[i] <= 0 || reinterpret_cast<uintptr_t>(a.w[i]) % 16 != 0)
      fail("gemv_quant_multi: matrix " + std::to_string(i) + " (" + ggml_type_name(uint32_t(a.type[i])) + ", " +
           std::to_string(a.n_out[i]) + " rows of " + std::to_string(cols) + ") is not supported");
  }
  with_rows_bucket(x_rows, [&]<int kRows>() { launch_multi<kRows>(a, x, x_rows, cols, stream); });
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
