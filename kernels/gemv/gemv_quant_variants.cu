// Variants 2-7 of the quantized GEMV (gemv_quant_variants.cuh); variant 1 lives in gemv_quant.cu. Variant 1's warps
// each have one short row (680 bytes for a Gemma 3 output row) in flight between decodes and spend several
// memory instructions per weight byte; 2 keeps more bytes in flight with the same sums, 3-5 also decode from
// registers with one activation load per 32 rows: bench/gemv_notes.md.
#include "kernels/gemv/gemv_quant_variants.cuh"

#include <algorithm>
#include <unordered_map>

#include "kernels/attention/mma_sm80.cuh"  // cp_async_16, mbarriers
#include "kernels/common/bulk_copy.cuh"
#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "kernels/common/launch.cuh"
#include "kernels/dequant/block_decode.cuh"
#include "kernels/gemv/gemv_quant_lanes.cuh"
#include "kernels/gemv/gemv_quant_warp.cuh"

namespace swrun::cuda {
namespace {

using gemv::kStageBytes;
using gemv::kStageVecs;
using gemv::kWarp;

// ---- variant 2: warp per row, pipelined

constexpr int kPipeWarps = 4;   // 4 warps x 3 stages x 2 KiB: 25 KiB of static shared memory per block
constexpr int kPipeStages = 3;  // chunks in flight per warp while it decodes one

using attn::cp_async_commit;
using attn::cp_async_wait;

// Each warp walks its rows (grid-stride) as a sequence of chunks of kStageBytes of whole blocks, the chunking of
// warp_row_dots, and copies chunk c + kPipeStages - 1 (cp.async, L2 only) while it decodes chunk c with
// warp_chunk_dots: the same items per lane in the same order as variant 1, so the same bits.
template <typename D, int kRows>
__global__ void __launch_bounds__(kWarp * kPipeWarps)
    gemv_pipelined_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int blocks_per_row, const float* x,
                          int64_t cols, int x_rows, float* out, int64_t n_out) {
  __shared__ uint4 stage[kPipeWarps][kPipeStages][kStageVecs];
  __shared__ float4 x_row[kRows == 1 ? gemv::kStagedRowMaxCols / 4 : 1];  // gemv::stage_row
  constexpr int kChunkBlocks = kStageBytes / D::kBytes;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int chunks_per_row = (blocks_per_row + kChunkBlocks - 1) / kChunkBlocks;
  const int64_t first = int64_t(blockIdx.x) * kPipeWarps + warp, stride = int64_t(gridDim.x) * kPipeWarps;
  const int64_t chunks = first < n_out ? (n_out - first + stride - 1) / stride * chunks_per_row : 0;
  // Where chunk c of this warp's sequence starts in global memory, and its block range.
  auto chunk_at = [&](int64_t c, int64_t& n, int& b0, int& nb) {
    n = first + c / chunks_per_row * stride;
    b0 = int(c % chunks_per_row) * kChunkBlocks;
    nb = min(kChunkBlocks, blocks_per_row - b0);
    return w + n * row_bytes + int64_t(b0) * D::kBytes;
  };
  auto issue = [&](int64_t c) {
    if (c < chunks) {
      int64_t n;
      int b0, nb;
      const uint8_t* src = chunk_at(c, n, b0, nb);
      const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
      const uint4* aligned = reinterpret_cast<const uint4*>(src - skew);
      const int vecs = (skew + nb * D::kBytes + 15) / 16;
      uint4* dst = stage[warp][c % kPipeStages];
      for (int v = lane; v < vecs; v += kWarp) attn::cp_async_16(dst + v, aligned + v, true);
    }
    cp_async_commit();  // empty groups past the end keep the count that cp_async_wait relies on
  };
#pragma unroll
  for (int c = 0; c < kPipeStages - 1; ++c) issue(c);
  // The first chunks are in flight: the block waits for the kernel that writes x, then copies one row of it.
  wait_for_predecessor();
  if constexpr (kRows == 1)
    if (gemv::row_stageable(x, cols)) {
      gemv::stage_row<kWarp * kPipeWarps>(x, cols, x_row);
      x = reinterpret_cast<const float*>(x_row);
    }
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
  for (int64_t c = 0; c < chunks; ++c) {
    cp_async_wait<kPipeStages - 2>();  // this lane's copies of chunk c have landed
    __syncwarp();                      // ... and every lane's; all lanes are done with chunk c - 1's stage
    issue(c + kPipeStages - 1);        // into chunk c - 1's stage
    int64_t n;
    int b0, nb;
    const uint8_t* src = chunk_at(c, n, b0, nb);
    const int skew = int(reinterpret_cast<uintptr_t>(src) & 15);
    gemv::warp_chunk_dots<D, kRows>(reinterpret_cast<const uint8_t*>(stage[warp][c % kPipeStages]) + skew, b0, nb,
                                    x, cols, x_rows, acc);
    if (b0 + nb == blocks_per_row) {
      gemv::store_row<kRows>(acc, x_rows, out, n_out, n);
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
    }
  }
  cp_async_wait<0>();  // no copy may outlive the block's shared memory
}

// ---- variants 3 and 4: lane per row

constexpr int kLaneWarps = 8;  // per block: kLaneWarps / split tiles of 32 rows at a time

// Resident blocks of kLaneWarps warps the register budget aims at: the decode case (one or two activation rows)
// is held to about 85 registers so 24 warps per SM keep their spans in flight; more rows take what they need.
template <int kRows>
constexpr int kLaneMinBlocks = kRows <= 2 ? 3 : 1;

// A tile's per-lane sums into out: straight from one warp (split 1), else added in warp order through `partial` by
// the first warp of each group (a fixed order: deterministic). Every warp of the block calls it each round: with
// split > 1 it synchronizes the block twice, the second time before `partial` is refilled.
template <int kRows, int kWarps>
__device__ __forceinline__ void store_lane_rows(const float (&acc)[kRows], float (&partial)[kWarps][kRows][kWarp],
                                                int warp, int lane, int part, int split, bool live, int x_rows,
                                                float* out, int64_t n_out, int64_t n) {
  if (split == 1) {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (live && (kRows == 1 || r < x_rows)) out[r * n_out + n] = acc[r];
    return;
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) partial[warp][r][lane] = acc[r];
  __syncthreads();
  if (part == 0) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float sum = partial[warp][r][lane];
      for (int k = 1; k < split; ++k) sum += partial[warp + k][r][lane];
      if (live && (kRows == 1 || r < x_rows)) out[r * n_out + n] = sum;
    }
  }
  __syncthreads();
}

// Each group of `split` warps of a block owns a 32-row tile at a time; its warps take the spans of those rows
// round-robin and their partial sums are added in warp order through shared memory (a fixed order:
// deterministic). All warps of a block run the same number of rounds, so the barriers match.
template <typename D, int kRows, gemv::WeightLoad kLoad>
__global__ void __launch_bounds__(kWarp * kLaneWarps, kLaneMinBlocks<kRows>)
    gemv_lane_rows_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int blocks_per_row, const float* x,
                          int64_t cols, int x_rows, float* out, int64_t n_out, int split) {
  using Span = gemv::LaneSpan<D>;
  __shared__ float partial[kLaneWarps][kRows][kWarp];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int groups = kLaneWarps / split, group = warp / split, part = warp % split;
  const int spans = (blocks_per_row + Span::kBlocks - 1) / Span::kBlocks;
  const int64_t tiles = (n_out + kWarp - 1) / kWarp;
  const uint64_t policy = kLoad == gemv::WeightLoad::EvictFirst ? gemv::l2_evict_first_policy() : 0;
  bool waited = false;
  for (int64_t round = int64_t(blockIdx.x) * groups; round < tiles; round += int64_t(gridDim.x) * groups) {
    const int64_t n = (round + group) * kWarp + lane;
    const bool live = n < n_out;
    const uint8_t* row = w + (live ? n : 0) * row_bytes;
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
    // A warp whose tile is past the end still runs its spans (on zeros, loading nothing), keeping the block's
    // warps in step; only live lanes store.
    for (int s = part; s < spans; s += split) {
      const int b0 = s * Span::kBlocks, nb = min(Span::kBlocks, blocks_per_row - b0);
      uint32_t words[Span::kWords];
      gemv::load_span<D, kLoad>(row + int64_t(b0) * D::kBytes, live ? nb : 0, policy, words);
      if (!waited) wait_for_predecessor();  // the weights do not depend on the previous kernel; x does
      waited = true;
      gemv::lane_span_dots<D, kRows>(words, nb, x + int64_t(b0) * D::kElems, cols, x_rows, acc);
    }
    store_lane_rows<kRows>(acc, partial, warp, lane, part, split, live, x_rows, out, n_out, n);
  }
}

// Warps per tile: enough warps over all tiles to keep every SM's loads in flight (about 32 warps per SM), as a
// power of two no larger than the spans a row has (so short rows are not split into idle warps) nor than
// max_split, the warps of a block.
int lane_rows_split(int64_t tiles, int spans, int64_t sms, int max_split) {
  const int64_t want_warps = sms * 32;
  int split = 1;
  while (split < max_split && split * 2 <= spans && tiles * split < want_warps) split *= 2;
  return split;
}

template <typename D, int kRows, gemv::WeightLoad kLoad>
void launch_lane_rows(const uint8_t* w, const float* x, float* out, int x_rows, int64_t n_out, int64_t cols,
                      cudaStream_t stream) {
  auto kernel = gemv_lane_rows_kernel<D, kRows, kLoad>;
  static const int64_t max_blocks = resident_blocks(kernel, kWarp * kLaneWarps, "gemv_quant lane rows");
  const int blocks_per_row = int(cols / D::kElems);
  const int spans = (blocks_per_row + gemv::LaneSpan<D>::kBlocks - 1) / gemv::LaneSpan<D>::kBlocks;
  const int64_t tiles = (n_out + kWarp - 1) / kWarp;
  const int split = lane_rows_split(tiles, spans, sm_count(), kLaneWarps);
  const int64_t groups = kLaneWarps / split;
  const int64_t blocks = std::min(max_blocks, (tiles + groups - 1) / groups);
  launch_overlapped(kernel, unsigned(blocks), kWarp * kLaneWarps, stream, "gemv_quant lane rows", w,
                    int64_t(blocks_per_row) * D::kBytes, blocks_per_row, x, cols, x_rows, out, n_out, split);
}

// ---- variant 5: lane per row, staged

// Warps per block: as many (a power of two, at most 4) as fit their double-buffered stages and the partial sums
// in the 48 KiB of static shared memory.
template <typename D>
constexpr int staged_warps() {
  constexpr int kPerWarp = 2 * gemv::StagedSpan<D>::kStageVecs * 16;
  constexpr int kPartials = kGemvQuantMaxRows * kWarp * 4;
  int warps = 4;
  while (warps > 1 && warps * (kPerWarp + kPartials) > 48 * 1024) warps /= 2;
  return warps;
}

// Variant 3's tiles, splits and fixed-order reduction; each warp copies the spans of its 32 rows for its next
// span (cp.async, coalesced) while it decodes the current one.
template <typename D, int kRows>
__global__ void __launch_bounds__(kWarp * staged_warps<D>(), kLaneMinBlocks<kRows> * kLaneWarps / staged_warps<D>())
    gemv_lane_rows_staged_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int blocks_per_row,
                                 const float* x, int64_t cols, int x_rows, float* out, int64_t n_out, int split) {
  using Span = gemv::LaneSpan<D>;
  constexpr int kWarps = staged_warps<D>(), kStageVecs = gemv::StagedSpan<D>::kStageVecs;
  __shared__ uint4 stages[kWarps][2][kStageVecs];
  __shared__ float partial[kWarps][kRows][kWarp];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int groups = kWarps / split, group = warp / split, part = warp % split;
  const int spans = (blocks_per_row + Span::kBlocks - 1) / Span::kBlocks;
  const int64_t tiles = (n_out + kWarp - 1) / kWarp, round_step = int64_t(gridDim.x) * groups;
  // Copies span s of the rows of the tile at `round` + group into stage `buf` (nothing past the last tile).
  auto issue = [&](int64_t round, int s, int buf) {
    if (round < tiles) {
      const int b0 = s * Span::kBlocks;
      gemv::stage_spans<D>(w, row_bytes, (round + group) * kWarp, n_out, b0, min(Span::kBlocks, blocks_per_row - b0),
                           stages[warp][buf]);
    }
    cp_async_commit();
  };
  int buf = 0;
  issue(int64_t(blockIdx.x) * groups, part, buf);
  bool waited = false;
  for (int64_t round = int64_t(blockIdx.x) * groups; round < tiles; round += round_step) {
    const int64_t n = (round + group) * kWarp + lane;
    const bool live = n < n_out;
    const uint8_t* row = w + (live ? n : 0) * row_bytes;
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
    for (int s = part; s < spans; s += split) {
      // This warp's next span: the next one of this tile, else the first one of its next tile.
      const bool last = s + split >= spans;
      issue(last ? round + round_step : round, last ? part : s + split, buf ^ 1);
      cp_async_wait<1>();  // this lane's copies of span s have landed
      __syncwarp();        // ... and every lane's
      if (!waited) wait_for_predecessor();
      waited = true;
      const int b0 = s * Span::kBlocks, nb = min(Span::kBlocks, blocks_per_row - b0);
      uint32_t words[Span::kWords];
      gemv::read_staged_span<D>(stages[warp][buf], row + int64_t(b0) * D::kBytes, words);
      __syncwarp();  // every lane has read the stage: the next iteration refills it
      gemv::lane_span_dots<D, kRows>(words, nb, x + int64_t(b0) * D::kElems, cols, x_rows, acc);
      buf ^= 1;
    }
    store_lane_rows<kRows>(acc, partial, warp, lane, part, split, live, x_rows, out, n_out, n);
  }
  cp_async_wait<0>();  // no copy may outlive the block's shared memory
}

// ---- variants 6 and 7: lane per row, whole tiles by bulk copy

// 32 consecutive rows are one contiguous run of bytes: one thread copies a whole tile into a stage of shared
// memory with one bulk copy, so no load instruction of the kernel touches lines of 32 rows (variant 3's L1
// limit) and the block keeps several tiles in flight without a copy instruction per 16 bytes (variant 5). Every
// tile is shared by the block's kWarps warps, each taking a contiguous run of the row's blocks for all 32 rows
// (lane = row); their sums are added in warp order through shared memory (a fixed order: deterministic).
constexpr int kBulkMaxStages = 8;

// A stage holds a tile and the up to 16 bytes a lane's last span read may run past its row, 128-byte aligned.
inline int64_t bulk_stage_bytes(int64_t row_bytes) { return (kWarp * row_bytes + 16 + 127) / 128 * 128; }

template <int kWarps>
constexpr size_t bulk_fixed_bytes() {
  return kBulkMaxStages * sizeof(uint64_t) + 2 * size_t(kWarps) * kWarp * sizeof(float);
}

// One activation row (launch_gemv_bulk_tiles gives several rows to the staged lane kernel).
template <typename D, int kWarps>
__global__ void __launch_bounds__(kWarp * kWarps)
    gemv_bulk_tiles_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int blocks_per_row, const float* x,
                           int64_t cols, float* out, int64_t n_out, int stages, int64_t stage_bytes) {
  using Span = gemv::LaneSpan<D>;
  extern __shared__ __align__(128) uint8_t smem[];
  auto* full = reinterpret_cast<uint64_t*>(smem + stages * stage_bytes);  // one mbarrier per stage
  auto* partial = reinterpret_cast<float(*)[kWarps][kWarp]>(full + kBulkMaxStages);  // [tile parity]
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t tiles = (n_out + kWarp - 1) / kWarp;
  const int64_t mine = blockIdx.x < tiles ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;  // tiles of this block
  const uint32_t stage0 = attn::smem_addr(smem), full0 = attn::smem_addr(full);
  // Tile j of this block (tile blockIdx.x + j * gridDim.x of the matrix) goes to stage j % stages; its k-th use
  // of that stage is mbarrier phase k.
  auto issue = [&](int64_t j) {
    if (j >= mine) return;
    const int64_t t = blockIdx.x + j * gridDim.x;
    const int64_t rows = min(int64_t(kWarp), n_out - t * kWarp);
    const auto bytes = uint32_t((rows * row_bytes + 15) / 16 * 16);  // the padded allocation covers the rounding
    const int s = int(j % stages);
    mbar_arrive_expect_tx(full0 + 8 * s, bytes);
    bulk_copy_to_shared(stage0 + uint32_t(s * stage_bytes), w + t * kWarp * row_bytes, bytes, full0 + 8 * s);
  };
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) attn::mbar_init(full0 + 8 * s, 1);
    fence_mbarrier_init();
    for (int j = 0; j < stages; ++j) issue(j);  // the weights do not depend on the previous kernel
  }
  __syncthreads();
  wait_for_predecessor();  // x does
  const int b_begin = warp * blocks_per_row / kWarps, b_end = (warp + 1) * blocks_per_row / kWarps;
  for (int64_t j = 0; j < mine; ++j) {
    const int s = int(j % stages);
    attn::mbar_wait(full0 + 8 * s, uint32_t(j / stages) & 1);
    const uint8_t* row = smem + s * stage_bytes + lane * row_bytes;  // rows past n_out decode stale bytes, unstored
    float acc[1] = {0.f};
    for (int b0 = b_begin; b0 < b_end; b0 += Span::kBlocks) {
      const int nb = min(Span::kBlocks, b_end - b0);
      uint32_t words[Span::kWords];
      gemv::gather_span<D>(row + int64_t(b0) * D::kBytes, nb, [](const uint4* p) { return *p; }, words);
      gemv::lane_span_dots<D, 1>(words, nb, x + int64_t(b0) * D::kElems, cols, 1, acc);
    }
    auto& mine_partial = partial[j & 1];
    mine_partial[warp][lane] = acc[0];
    // Every warp is done with stage s, and the partials of tile j are complete. The partials of tile j + 1 go to
    // the other buffer; tile j + 2's reuse this one after the next barrier, which warp 0 reaches after its sums.
    __syncthreads();
    if (threadIdx.x == 0) issue(j + stages);
    if (warp == 0) {
      const int64_t n = (blockIdx.x + j * gridDim.x) * kWarp + lane;
      float sum = mine_partial[0][lane];
#pragma unroll
      for (int k = 1; k < kWarps; ++k) sum += mine_partial[k][lane];
      if (n < n_out) out[n] = sum;
    }
  }
}

struct BulkPlan {
  int stages = 0;  // 0: a tile does not fit twice in a block's shared memory
  int64_t blocks = 0;
  size_t smem_bytes = 0;
};

// As many resident blocks per SM as two stages each allow (more warps decoding: measured faster than deeper
// pipelines, bench/gemv_notes.md), then as many stages (up to kBulkMaxStages) as keep that many; per row length,
// as the launch sees it.
template <typename D, int kWarps>
BulkPlan plan_bulk_tiles(int64_t row_bytes) {
  static std::unordered_map<int64_t, BulkPlan> plans;
  if (auto it = plans.find(row_bytes); it != plans.end()) return it->second;
  auto kernel = gemv_bulk_tiles_kernel<D, kWarps>;
  int device = 0, optin = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "shared memory");
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin),
             "gemv_quant bulk tiles");
  BulkPlan plan;
  int most_per_sm = 0;
  for (int stages = 2; stages <= kBulkMaxStages; ++stages) {
    const size_t bytes = size_t(stages * bulk_stage_bytes(row_bytes)) + bulk_fixed_bytes<kWarps>();
    if (bytes > size_t(optin)) break;
    int per_sm = 0;
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarp * kWarps, bytes),
               "gemv_quant bulk tiles");
    if (stages == 2) most_per_sm = per_sm;
    if (per_sm == 0 || per_sm < most_per_sm) break;
    plan = {stages, int64_t(per_sm) * sm_count(), bytes};
  }
  plans[row_bytes] = plan;
  return plan;
}

template <typename D, int kWarps>
void launch_bulk_tiles(GgmlType type, const uint8_t* w, const float* x, float* out, int64_t n_out, int64_t cols,
                       cudaStream_t stream) {
  const int blocks_per_row = int(cols / D::kElems);
  const int64_t row_bytes = int64_t(blocks_per_row) * D::kBytes;
  const BulkPlan plan = plan_bulk_tiles<D, kWarps>(row_bytes);
  if (plan.stages == 0)  // rows too long for two tiles in shared memory
    return launch_gemv_lane_rows_staged(type, w, x, out, 1, n_out, cols, stream);
  const int64_t tiles = (n_out + kWarp - 1) / kWarp;
  launch_overlapped_smem(gemv_bulk_tiles_kernel<D, kWarps>, unsigned(std::min(plan.blocks, tiles)), kWarp * kWarps,
                         plan.smem_bytes, stream, "gemv_quant bulk tiles", w, row_bytes, blocks_per_row, x, cols, out,
                         n_out, plan.stages, bulk_stage_bytes(row_bytes));
}

}  // namespace

void launch_gemv_pipelined(GgmlType type, const uint8_t* w, const float* x, float* out, int x_rows, int64_t n_out,
                           int64_t cols, cudaStream_t stream) {
  with_block_decoder(type, [&]<typename D>() {
    with_rows_bucket(x_rows, [&]<int kRows>() {
      auto kernel = gemv_pipelined_kernel<D, kRows>;
      static const int64_t max_blocks = resident_blocks(kernel, kWarp * kPipeWarps, "gemv_quant pipelined");
      const int blocks_per_row = int(cols / D::kElems);
      const int64_t blocks = std::min(max_blocks, (n_out + kPipeWarps - 1) / kPipeWarps);
      launch_overlapped(kernel, unsigned(blocks), kWarp * kPipeWarps, stream, "gemv_quant pipelined", w,
                        int64_t(blocks_per_row) * D::kBytes, blocks_per_row, x, cols, x_rows, out, n_out);
    });
  });
}

void launch_gemv_lane_rows(GgmlType type, bool evict_first, const uint8_t* w, const float* x, float* out,
                           int x_rows, int64_t n_out, int64_t cols, cudaStream_t stream) {
  with_block_decoder(type, [&]<typename D>() {
    with_rows_bucket(x_rows, [&]<int kRows>() {
      if (evict_first)
        launch_lane_rows<D, kRows, gemv::WeightLoad::EvictFirst>(w, x, out, x_rows, n_out, cols, stream);
      else
        launch_lane_rows<D, kRows, gemv::WeightLoad::Cached>(w, x, out, x_rows, n_out, cols, stream);
    });
  });
}

void launch_gemv_lane_rows_staged(GgmlType type, const uint8_t* w, const float* x, float* out, int x_rows,
                                  int64_t n_out, int64_t cols, cudaStream_t stream) {
  with_block_decoder(type, [&]<typename D>() {
    with_rows_bucket(x_rows, [&]<int kRows>() {
      constexpr int kWarps = staged_warps<D>();
      auto kernel = gemv_lane_rows_staged_kernel<D, kRows>;
      static const int64_t max_blocks = resident_blocks(kernel, kWarp * kWarps, "gemv_quant lane rows staged");
      const int blocks_per_row = int(cols / D::kElems);
      const int spans = (blocks_per_row + gemv::LaneSpan<D>::kBlocks - 1) / gemv::LaneSpan<D>::kBlocks;
      const int64_t tiles = (n_out + kWarp - 1) / kWarp;
      const int split = lane_rows_split(tiles, spans, sm_count(), kWarps);
      const int64_t groups = kWarps / split;
      const int64_t blocks = std::min(max_blocks, (tiles + groups - 1) / groups);
      launch_overlapped(kernel, unsigned(blocks), kWarp * kWarps, stream, "gemv_quant lane rows staged", w,
                        int64_t(blocks_per_row) * D::kBytes, blocks_per_row, x, cols, x_rows, out, n_out, split);
    });
  });
}

void launch_gemv_bulk_tiles(GgmlType type, int warps, const uint8_t* w, const float* x, float* out, int x_rows,
                            int64_t n_out, int64_t cols, cudaStream_t stream) {
  if (x_rows != 1) return launch_gemv_lane_rows_staged(type, w, x, out, x_rows, n_out, cols, stream);
  with_block_decoder(type, [&]<typename D>() {
    if (warps == 8) launch_bulk_tiles<D, 8>(type, w, x, out, n_out, cols, stream);
    else launch_bulk_tiles<D, 4>(type, w, x, out, n_out, cols, stream);
  });
}

}  // namespace swrun::cuda
