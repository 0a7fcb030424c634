// Top-k by repeated block-wide selection: in round r every thread finds its best entry ranked after the
// round's previous winner, and a block reduction (warp shuffles, then one value per warp) picks the round's
// winner. Ranking is a strict total order (value descending, index ascending), so "ranked after the previous
// winner" excludes exactly the winners so far without marking anything. Pass 1 runs one block per chunk of the
// row and leaves k candidates per chunk; pass 2 runs one block over all chunk candidates. k rounds of a
// 256-thread reduction cost little next to the read of the row itself for the k <= 64 this serves.
#include "kernels/sample/top_k.cuh"

#include <cmath>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"
#include "runtime/backend.h"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int64_t kChunk = 2048;  // entries per pass-1 block

struct Entry {
  float value;
  int32_t index;  // -1: none
};

// Whether a ranks before b. An empty entry ranks after everything.
__device__ __forceinline__ bool before(Entry a, Entry b) {
  if (a.index < 0) return false;
  if (b.index < 0) return true;
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

__device__ Entry block_best(Entry e, Entry* warp_best) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const Entry other{__shfl_xor_sync(0xffffffffu, e.value, o), __shfl_xor_sync(0xffffffffu, e.index, o)};
    if (before(other, e)) e = other;
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  __syncthreads();  // the previous round's readers are done with warp_best
  if (lane == 0) warp_best[warp] = e;
  __syncthreads();
  Entry best = warp_best[0];
  for (int w = 1; w < kThreads / kWarp; ++w)
    if (before(warp_best[w], best)) best = warp_best[w];
  return best;
}

// kFromCandidates: the entries are (values[i], ids[i]) left by pass 1; otherwise (x[i], i) of the row.
template <bool kFromCandidates>
__global__ void __launch_bounds__(kThreads)
    top_k_kernel(const float* x, const int32_t* in_ids, int64_t n, int64_t chunk, int k, float* out_values,
                 int32_t* out_ids) {
  __shared__ Entry warp_best[kThreads / kWarp];
  wait_for_predecessor();
  const int64_t begin = int64_t(blockIdx.x) * chunk, end = min(n, begin + chunk);
  Entry last{0.f, -1};  // the previous round's winner; none yet
  for (int r = 0; r < k; ++r) {
    Entry mine{NAN, -1};
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
      const Entry e{x[i], kFromCandidates ? in_ids[i] : int32_t(i)};
      if (e.index < 0 || isnan(e.value)) continue;
      if ((last.index < 0 || before(last, e)) && before(e, mine)) mine = e;
    }
    const Entry best = block_best(mine, warp_best);
    if (threadIdx.x == 0) {
      out_values[int64_t(blockIdx.x) * k + r] = best.index < 0 ? NAN : best.value;
      out_ids[int64_t(blockIdx.x) * k + r] = best.index;
    }
    if (best.index < 0) {  // nothing left: the remaining slots stay empty
      if (threadIdx.x == 0)
        for (int s = r + 1; s < k; ++s) {
          out_values[int64_t(blockIdx.x) * k + s] = NAN;
          out_ids[int64_t(blockIdx.x) * k + s] = -1;
        }
      return;
    }
    last = best;
  }
}

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

}  // namespace

size_t top_k_workspace_bytes(int64_t n, int k) {
  return size_t(chunks_of(n)) * size_t(k) * (sizeof(float) + sizeof(int32_t));
}

void top_k_f32(const float* x, int64_t n, int k, void* workspace, int32_t* ids, float* values,
               cudaStream_t stream) {
  if (k < 1 || k > kMaxDeviceTopK || n < k || n > INT32_MAX)
    fail("top_k: k = " + std::to_string(k) + " of " + std::to_string(n) + " entries");
  const int64_t chunks = chunks_of(n);
  auto* cand_values = static_cast<float*>(workspace);
  auto* cand_ids = reinterpret_cast<int32_t*>(cand_values + chunks * k);
  launch_overlapped(top_k_kernel<false>, unsigned(chunks), kThreads, stream, "top_k pass 1", x,
                    static_cast<const int32_t*>(nullptr), n, kChunk, k, cand_values, cand_ids);
  launch_overlapped(top_k_kernel<true>, 1u, kThreads, stream, "top_k pass 2", static_cast<const float*>(cand_values),
                    static_cast<const int32_t*>(cand_ids), chunks * k, chunks * k, k, values, ids);
}

}  // namespace swrun::cuda
