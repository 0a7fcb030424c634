// The mixture-of-experts kernels (moe.cuh): routing, the decode GEMVs over the chosen experts' rows, and the
// prefill's grouping and grouped tensor-core GEMMs. Weights are read with the shared block decoders
// (kernels/dequant/block_decode.cuh), so every expert type decodes to the values the CPU reference reads.
#include "kernels/moe/moe.cuh"

#include <algorithm>
#include <string>

#include "kernels/attention/mma_sm80.cuh"
#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "kernels/common/launch.cuh"
#include "kernels/dequant/block_decode.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/gemv/gemv_quant_warp.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

using gemv::kStageVecs;
using gemv::kWarp;

// gpt-oss's clamped SwiGLU: min(g, limit) * sigmoid(alpha * min(g, limit)) * (clamp(u, -limit, limit) + 1).
__device__ __forceinline__ float clamped_swiglu(float g, float u, float alpha, float limit) {
  g = fminf(g, limit);
  u = fminf(fmaxf(u, -limit), limit);
  return g / (1.f + expf(-alpha * g)) * (u + 1.f);
}

template <typename D>
__host__ __device__ int64_t row_bytes_of(int64_t cols) {
  return cols / D::kElems * D::kBytes;
}

// ---- routing: one block per token --------------------------------------------------------------------------

constexpr int kRouteWarps = 4;

template <typename D>
__global__ void __launch_bounds__(kWarp * kRouteWarps)
    moe_route_kernel(const uint8_t* __restrict__ router, int64_t row_bytes, const float* __restrict__ bias,
                     const float* x, int64_t dim, int n_expert, int n_used, int32_t* ids, float* weights) {
  __shared__ float logits[kMoeMaxExperts];
  __shared__ bool taken[kMoeMaxExperts];
  __shared__ int chosen[kMoeMaxUsed];
  wait_for_predecessor();
  const int warp = int(threadIdx.x) / kWarp, lane = int(threadIdx.x) % kWarp;
  const int64_t t = blockIdx.x;
  const float* xt = x + t * dim;
  const int items = int(dim / D::kElems) * D::kItems;
  for (int e = warp; e < n_expert; e += kRouteWarps) {
    const uint8_t* row = router + int64_t(e) * row_bytes;
    float acc = 0.f;
    for (int it = lane; it < items; it += kWarp) {
      const int b = it / D::kItems;
      D::item(row + int64_t(b) * D::kBytes, it % D::kItems,
              [&](int i, float v) { acc = fmaf(v, xt[int64_t(b) * D::kElems + i], acc); });
    }
    acc = warp_sum(acc);
    if (lane == 0) {
      logits[e] = bias ? acc + bias[e] : acc;
      taken[e] = false;
    }
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  // n_used rounds of the best logit not yet taken: strictly greater replaces, so the lower index wins a tie.
  for (int k = 0; k < n_used; ++k) {
    int best = -1;
    for (int e = 0; e < n_expert; ++e)
      if (!taken[e] && (best < 0 || logits[e] > logits[best])) best = e;
    taken[best] = true;
    chosen[k] = best;
  }
  // The softmax over the chosen logits, in double as the CPU reference computes it.
  const double top = logits[chosen[0]];
  double sum = 0;
  for (int k = 0; k < n_used; ++k) sum += exp(double(logits[chosen[k]]) - top);
  for (int k = 0; k < n_used; ++k) {
    ids[t * n_used + k] = chosen[k];
    weights[t * n_used + k] = float(exp(double(logits[chosen[k]]) - top) / sum);
  }
}

// ---- decode: GEMVs over the chosen experts' rows --------------------------------------------------------------

constexpr int kGemvWarps = 8;

// Warp per (token slot p, expert row j): hidden[p, j] = act(gate_e[j] . x_t + gate_bias[e, j], up_e[j] . x_t +
// up_bias[e, j]) with e = ids[p], t = p / n_used; the two rows staged together as the gated GEMV stages them.
template <typename D>
__global__ void __launch_bounds__(kWarp * kGemvWarps)
    moe_gate_up_gemv_kernel(MoeDeviceFfn f, const float* x, int64_t pairs, const int32_t* ids, float* hidden) {
  __shared__ uint4 stage[kGemvWarps][kStageVecs];
  __shared__ uint4 stage_up[kGemvWarps][kStageVecs];
  wait_for_predecessor();
  const int warp = int(threadIdx.x) / kWarp;
  const int64_t row_bytes = row_bytes_of<D>(f.dim);
  const int blocks = int(f.dim / D::kElems);
  for (int64_t g = int64_t(blockIdx.x) * kGemvWarps + warp; g < pairs * f.ffn; g += int64_t(gridDim.x) * kGemvWarps) {
    const int64_t p = g / f.ffn, j = g % f.ffn;
    const int64_t e = ids[p];
    const int64_t row = e * f.ffn + j;
    float gate[1] = {0.f}, up[1] = {0.f};
    gemv::warp_row_pair_dots<D, 1>(f.gate + row * row_bytes, f.up + row * row_bytes, 0, blocks,
                                   x + p / f.n_used * f.dim, f.dim, 1, stage[warp], stage_up[warp], [] {}, gate, up);
    float gs = warp_sum(gate[0]), us = warp_sum(up[0]);
    if (threadIdx.x % kWarp == 0) {
      if (f.gate_bias) gs += f.gate_bias[row];
      if (f.up_bias) us += f.up_bias[row];
      hidden[p * f.ffn + j] = clamped_swiglu(gs, us, f.alpha, f.limit);
    }
  }
}

// Warp per output (t, c): out[t, c] = sum over k of weights[t, k] * (down_e[c] . hidden[t, k] + down_bias[e, c]),
// k in slot order (best first), as the CPU reference adds them.
template <typename D>
__global__ void __launch_bounds__(kWarp * kGemvWarps)
    moe_down_gemv_kernel(MoeDeviceFfn f, const float* hidden, int64_t rows, const int32_t* ids,
                         const float* weights, float* out) {
  __shared__ uint4 stage[kGemvWarps][kStageVecs];
  wait_for_predecessor();
  const int warp = int(threadIdx.x) / kWarp;
  const int64_t row_bytes = row_bytes_of<D>(f.ffn);
  const int blocks = int(f.ffn / D::kElems);
  for (int64_t g = int64_t(blockIdx.x) * kGemvWarps + warp; g < rows * f.dim; g += int64_t(gridDim.x) * kGemvWarps) {
    const int64_t t = g / f.dim, c = g % f.dim;
    float y = 0.f;
#pragma unroll 1
    for (int k = 0; k < f.n_used; ++k) {
      const int64_t p = t * f.n_used + k;
      const int64_t row = int64_t(ids[p]) * f.dim + c;
      float acc[1] = {0.f};
      gemv::warp_row_dots<D, 1>(f.down + row * row_bytes, 0, blocks, hidden + p * f.ffn, f.ffn, 1, stage[warp],
                                [] {}, acc);
      float s = warp_sum(acc[0]);
      if (f.down_bias) s += f.down_bias[row];
      y += weights[p] * s;
    }
    if (threadIdx.x % kWarp == 0) out[t * f.dim + c] = y;
  }
}

// ---- prefill: grouping, grouped GEMMs, the weighted sum -------------------------------------------------------

constexpr int kGroupThreads = 1024;

// One block: counts per expert, their prefix sums (slots and row tiles), then each slot's place in its expert's
// group. The order inside a group is whatever the atomics give: every slot's result depends on its own row only,
// and the sum back per token follows slot order, so the output does not depend on it.
__global__ void __launch_bounds__(kGroupThreads)
    moe_group_kernel(const int32_t* ids, int64_t pairs, int n_expert, int32_t* offsets, int32_t* tile_offsets,
                     int32_t* pair_of) {
  __shared__ int count[kMoeMaxExperts];
  __shared__ int cursor[kMoeMaxExperts];
  wait_for_predecessor();
  for (int e = threadIdx.x; e < n_expert; e += kGroupThreads) count[e] = 0;
  __syncthreads();
  for (int64_t p = threadIdx.x; p < pairs; p += kGroupThreads) atomicAdd(&count[ids[p]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int slots = 0, tiles = 0;
    for (int e = 0; e < n_expert; ++e) {
      offsets[e] = cursor[e] = slots;
      tile_offsets[e] = tiles;
      slots += count[e];
      tiles += (count[e] + kMoeTileRows - 1) / kMoeTileRows;
    }
    offsets[n_expert] = slots;
    tile_offsets[n_expert] = tiles;
  }
  __syncthreads();
  for (int64_t p = threadIdx.x; p < pairs; p += kGroupThreads) pair_of[atomicAdd(&cursor[ids[p]], 1)] = int32_t(p);
}

constexpr int kTileN = 64, kTileK = 32;
constexpr int kGemmWarps = 4;  // 2 x 2 warps of 32 x 32 outputs
constexpr int kGemmThreads = kWarp * kGemmWarps;
constexpr int kPitch = kTileK + 8;  // bf16 per shared row: the fragments' 32-bit loads fall on distinct banks

enum class GroupedStage { GateUp, Down };

// One 64 x 64 output tile of expert e's group: A = its slots' rows (GateUp: the tokens' x rounded to bf16; Down:
// the hidden rows), B = the expert's weight rows decoded to bf16 a 32-column block at a time, mma.sync m16n8k16
// with fp32 accumulation. Tiles of all experts are one launch: blockIdx.x walks the row tiles of every group
// (tile_offsets), blockIdx.y the output columns. Out-of-range rows and columns read a clamped valid row and are
// not stored.
template <typename D, GroupedStage kStage>
__global__ void __launch_bounds__(kGemmThreads)
    moe_grouped_gemm_kernel(MoeDeviceFfn f, const float* x, const int32_t* offsets, const int32_t* tile_offsets,
                            const int32_t* pair_of, __nv_bfloat16* hidden, float* expert_out) {
  constexpr bool kGateUp = kStage == GroupedStage::GateUp;
  constexpr int kMats = kGateUp ? 2 : 1;
  __shared__ __align__(16) __nv_bfloat16 a_tile[kMoeTileRows][kPitch];
  __shared__ __align__(16) __nv_bfloat16 b_tile[kMats][kTileN][kPitch];
  wait_for_predecessor();
  const int tile = blockIdx.x;
  if (tile >= tile_offsets[f.n_expert]) return;
  int lo = 0, hi = f.n_expert - 1;  // the expert whose tiles hold this one: last e with tile_offsets[e] <= tile
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tile_offsets[mid] <= tile) lo = mid;
    else hi = mid - 1;
  }
  const int e = lo;
  const int m0 = offsets[e] + (tile - tile_offsets[e]) * kMoeTileRows, m_end = offsets[e + 1];
  const int64_t n_cols = kGateUp ? f.ffn : f.dim;  // outputs per expert
  const int64_t k_len = kGateUp ? f.dim : f.ffn;
  const int64_t n0 = int64_t(blockIdx.y) * kTileN;
  const int64_t w_row_bytes = row_bytes_of<D>(k_len);
  const uint8_t* w0 = kGateUp ? f.gate : f.down;
  const uint8_t* w1 = f.up;
  const int warp = int(threadIdx.x) / kWarp, lane = int(threadIdx.x) % kWarp;
  const int group = lane / 4, quad = lane % 4;
  const int wm = warp / 2, wn = warp % 2;

  float acc[kMats][2][4][4] = {};
  for (int64_t k0 = 0; k0 < k_len; k0 += kTileK) {
    // A: 64 rows x 32 columns.
    if constexpr (kGateUp) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // 512 float4, 4 per thread
        const int idx = int(threadIdx.x) + i * kGemmThreads, r = idx / 8, c4 = idx % 8;
        const int pos = min(m0 + r, m_end - 1);
        const int64_t token = pair_of[pos] / f.n_used;
        const float4 v = *reinterpret_cast<const float4*>(x + token * f.dim + k0 + 4 * c4);
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(&a_tile[r][4 * c4]);
        dst[0] = __floats2bfloat162_rn(v.x, v.y);
        dst[1] = __floats2bfloat162_rn(v.z, v.w);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 2; ++i) {  // 256 uint4 of 8 bf16, 2 per thread
        const int idx = int(threadIdx.x) + i * kGemmThreads, r = idx / 4, c8 = idx % 4;
        const int pos = min(m0 + r, m_end - 1);
        *reinterpret_cast<uint4*>(&a_tile[r][8 * c8]) =
            *reinterpret_cast<const uint4*>(hidden + int64_t(pos) * f.ffn + k0 + 8 * c8);
      }
    }
    // B: 64 weight rows x one 32-element block each, decoded item by item (16 items a block, 8 per thread).
    const int64_t block_at = k0 / D::kElems * D::kBytes;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int idx = int(threadIdx.x) + i * kGemmThreads, r = idx / D::kItems, item = idx % D::kItems;
      const int64_t row = int64_t(e) * n_cols + min(n0 + r, n_cols - 1);
#pragma unroll
      for (int m = 0; m < kMats; ++m) {
        const uint8_t* block = (m == 0 ? w0 : w1) + row * w_row_bytes + block_at;
        D::item(block, item, [&](int c, float v) { b_tile[m][r][c] = __float2bfloat16_rn(v); });
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const int r = wm * 32 + mt * 16 + group;
        a[mt][0] = *reinterpret_cast<const uint32_t*>(&a_tile[r][kk + 2 * quad]);
        a[mt][1] = *reinterpret_cast<const uint32_t*>(&a_tile[r + 8][kk + 2 * quad]);
        a[mt][2] = *reinterpret_cast<const uint32_t*>(&a_tile[r][kk + 8 + 2 * quad]);
        a[mt][3] = *reinterpret_cast<const uint32_t*>(&a_tile[r + 8][kk + 8 + 2 * quad]);
      }
#pragma unroll
      for (int m = 0; m < kMats; ++m)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          const int n = wn * 32 + nt * 8 + group;
          const uint32_t b0 = *reinterpret_cast<const uint32_t*>(&b_tile[m][n][kk + 2 * quad]);
          const uint32_t b1 = *reinterpret_cast<const uint32_t*>(&b_tile[m][n][kk + 8 + 2 * quad]);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) attn::MmaOp<__nv_bfloat16>::run(acc[m][mt][nt], a[mt], b0, b1);
        }
    }
    __syncthreads();
  }
  // Accumulator element h of tile (mt, nt): row group (+8 for h >= 2), column 2 * quad + h % 2.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int h = 0; h < 4; ++h) {
        const int pos = m0 + wm * 32 + mt * 16 + group + (h >= 2 ? 8 : 0);
        const int64_t col = n0 + wn * 32 + nt * 8 + 2 * quad + h % 2;
        if (pos >= m_end || col >= n_cols) continue;
        if constexpr (kGateUp) {
          const int64_t at = int64_t(e) * f.ffn + col;
          const float g = acc[0][mt][nt][h] + (f.gate_bias ? f.gate_bias[at] : 0.f);
          const float u = acc[kMats - 1][mt][nt][h] + (f.up_bias ? f.up_bias[at] : 0.f);
          hidden[int64_t(pos) * f.ffn + col] = __float2bfloat16_rn(clamped_swiglu(g, u, f.alpha, f.limit));
        } else {
          expert_out[int64_t(pair_of[pos]) * f.dim + col] = acc[0][mt][nt][h];
        }
      }
}

// out[t, c] = sum over k (slot order) of weights[t, k] * (expert_out[t * n_used + k, c] + down_bias[e, c]).
__global__ void moe_combine_kernel(MoeDeviceFfn f, const float* expert_out, int64_t rows, const int32_t* ids,
                                   const float* weights, float* out) {
  wait_for_predecessor();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * f.dim) return;
  const int64_t t = i / f.dim, c = i % f.dim;
  float y = 0.f;
  for (int k = 0; k < f.n_used; ++k) {
    const int64_t p = t * f.n_used + k;
    float s = expert_out[p * f.dim + c];
    if (f.down_bias) s += f.down_bias[int64_t(ids[p]) * f.dim + c];
    y += weights[p] * s;
  }
  out[i] = y;
}

bool decodable(GgmlType type, int64_t cols) {
  const int elems = block_decoder_elems(type);
  return elems > 0 && cols > 0 && cols % elems == 0;
}

template <typename F>
void with_grouped_decoder(GgmlType type, F&& f) {
  bool ran = false;
  with_block_decoder(type, [&]<typename D>() {
    if constexpr (D::kElems == kTileK && D::kItems * kTileN == 8 * kGemmThreads) {
      f.template operator()<D>();
      ran = true;
    }
  });
  if (!ran) fail("moe: no grouped GEMM for " + ggml_type_name(uint32_t(type)));
}

}  // namespace

const char* moe_unsupported(const MoeDeviceFfn& f, bool grouped) {
  if (f.n_expert < 1 || f.n_expert > kMoeMaxExperts || f.n_used < 1 || f.n_used > kMoeMaxUsed ||
      f.n_used > f.n_expert)
    return "expert counts outside 1 <= n_used <= n_expert <= 256, n_used <= 32";
  if (!decodable(f.router_type, f.dim)) return "the router's type or row length has no block decoder";
  if (!decodable(f.gate_type, f.dim) || !decodable(f.down_type, f.ffn))
    return "the experts' types or row lengths have no block decoder";
  if (grouped && (block_decoder_elems(f.gate_type) != kTileK || block_decoder_elems(f.down_type) != kTileK))
    return "the grouped expert GEMMs read 32-element block types only (F32, F16, BF16, Q4_0 .. Q8_0, MXFP4)";
  if (f.dim % 4 != 0 || f.ffn % 8 != 0) return "dim must be a multiple of 4 and ffn of 8";
  return "";
}

void moe_route(const MoeDeviceFfn& f, const float* x, int64_t rows, int32_t* ids, float* weights,
               cudaStream_t stream) {
  if (rows <= 0) return;
  with_block_decoder(f.router_type, [&]<typename D>() {
    launch_overlapped(moe_route_kernel<D>, unsigned(rows), kWarp * kRouteWarps, stream, "moe route", f.router,
                      row_bytes_of<D>(f.dim), f.router_bias, x, f.dim, f.n_expert, f.n_used, ids, weights);
  });
}

void moe_decode(const MoeDeviceFfn& f, const float* x, int64_t rows, const int32_t* ids, const float* weights,
                float* hidden, float* out, cudaStream_t stream) {
  if (rows <= 0) return;
  const int64_t pairs = rows * f.n_used;
  with_block_decoder(f.gate_type, [&]<typename D>() {
    auto kernel = moe_gate_up_gemv_kernel<D>;
    static const int64_t max_blocks = resident_blocks(kernel, kWarp * kGemvWarps, "moe gate/up: occupancy");
    const int64_t blocks = std::min(max_blocks, (pairs * f.ffn + kGemvWarps - 1) / kGemvWarps);
    launch_overlapped(kernel, unsigned(blocks), kWarp * kGemvWarps, stream, "moe gate/up", f, x, pairs, ids, hidden);
  });
  with_block_decoder(f.down_type, [&]<typename D>() {
    auto kernel = moe_down_gemv_kernel<D>;
    static const int64_t max_blocks = resident_blocks(kernel, kWarp * kGemvWarps, "moe down: occupancy");
    const int64_t blocks = std::min(max_blocks, (rows * f.dim + kGemvWarps - 1) / kGemvWarps);
    launch_overlapped(kernel, unsigned(blocks), kWarp * kGemvWarps, stream, "moe down", f, hidden, rows, ids, weights,
                      out);
  });
}

void moe_prefill(const MoeDeviceFfn& f, const float* x, int64_t rows, const int32_t* ids, const float* weights,
                 const MoeGroupScratch& s, float* out, cudaStream_t stream) {
  if (rows <= 0) return;
  const int64_t pairs = rows * f.n_used;
  launch_overlapped(moe_group_kernel, 1, kGroupThreads, stream, "moe grouping", ids, pairs, f.n_expert, s.offsets,
                    s.tile_offsets, s.pair_of);
  // Every expert's group is at most ceil(count / 64) tiles: in all at most pairs / 64 + n_expert.
  const unsigned max_tiles = unsigned(pairs / kMoeTileRows + f.n_expert);
  with_grouped_decoder(f.gate_type, [&]<typename D>() {
    const dim3 grid(max_tiles, unsigned((f.ffn + kTileN - 1) / kTileN));
    launch_overlapped(moe_grouped_gemm_kernel<D, GroupedStage::GateUp>, grid, kGemmThreads, stream, "moe gate/up GEMM",
                      f, x, s.offsets, s.tile_offsets, s.pair_of, s.hidden, s.expert_out);
  });
  with_grouped_decoder(f.down_type, [&]<typename D>() {
    const dim3 grid(max_tiles, unsigned((f.dim + kTileN - 1) / kTileN));
    launch_overlapped(moe_grouped_gemm_kernel<D, GroupedStage::Down>, grid, kGemmThreads, stream, "moe down GEMM", f,
                      x, s.offsets, s.tile_offsets, s.pair_of, s.hidden, s.expert_out);
  });
  constexpr unsigned kCombineThreads = 256;
  launch_overlapped(moe_combine_kernel, grid_for(size_t(rows * f.dim), kCombineThreads), kCombineThreads, stream,
                    "moe combine", f, s.expert_out, rows, ids, weights, out);
}

}  // namespace swrun::cuda
