// Top-k in levels: a block of a level holds a span of up to kSpan entries in registers (kPerThread per thread) and
// leaves its k best; levels repeat until one block's span holds every candidate left (two levels for every
// vocabulary up to 262144 at k = 64). A block finds its k best without k sequential rounds: a radix select (four
// passes of an 8-bit histogram in shared memory) finds the k-th largest value's key T; every entry above T is taken,
// and of the entries equal to T the ones at the lowest positions. Positions are in id order at every level (the first
// level's ids are positions; each level writes its candidates in position order), so this is the lower-id-first
// tie rule. The last block orders its k by rank (value descending, id ascending). Greedy decoding (k = 1) takes one
// block-wide argmax per span instead.
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
constexpr int kWarps = kThreads / kWarp;
constexpr int kPerThread = 16;
constexpr int64_t kSpan = int64_t(kThreads) * kPerThread;  // entries per block of a level

// A float as an unsigned key in the same order (larger key, larger value); -0 becomes +0 so that equal values have
// equal keys. No value maps to 0 (that would be NaN bits), which marks a slot without an entry.
__device__ __forceinline__ uint32_t key_of(float v) {
  const uint32_t bits = __float_as_uint(v == 0.f ? 0.f : v);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}
__device__ __forceinline__ float value_of(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? key & 0x7FFFFFFFu : ~key);
}

// Exclusive prefix counts of flag[j] in position order (entry j of thread t sits at position t + kThreads * j):
// before[j] gets the flagged entries ahead of this one; returns the block's total.
__device__ int position_prefix(const bool (&flag)[kPerThread], int (&before)[kPerThread], int* counts) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint32_t lower = (1u << lane) - 1u;
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const uint32_t ballot = __ballot_sync(0xffffffffu, flag[j]);
    before[j] = __popc(ballot & lower);
    if (lane == 0) counts[j * kWarps + warp] = __popc(ballot);
  }
  __syncthreads();
  int running = 0;
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    int ahead = 0, all = 0;  // this warp's predecessors at entry j, and every warp
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const int c = counts[j * kWarps + w];
      ahead += w < warp ? c : 0;
      all += c;
    }
    before[j] += running + ahead;
    running += all;
  }
  __syncthreads();  // counts is reused
  return running;
}

// The k-th largest of the held keys (0: none; more than k keys are held) and how many held keys are larger, by a
// most-significant-digit-first radix select: per pass, a histogram of the next 8 bits of the keys that match the
// digits chosen so far, then the digit where the count from the top reaches the number still wanted.
struct KthKey {
  uint32_t key;
  int above;
};
__device__ KthKey kth_largest(const uint32_t (&key)[kPerThread], int k, int* hist, int* chosen) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  uint32_t prefix = 0;
  int above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    hist[threadIdx.x] = 0;  // kThreads == 256 bins
    __syncthreads();
    const uint32_t high = shift == 24 ? 0u : ~0u << (shift + 8);
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const bool in = key[j] != 0 && (key[j] & high) == prefix;
      const uint32_t digit = in ? (key[j] >> shift) & 0xFFu : 0x100u;
      // One atomic per distinct digit of the warp: ties (and the all-equal logits of an untrained model) would
      // otherwise queue a warp's lanes on one counter.
      const uint32_t peers = __match_any_sync(0xffffffffu, digit);
      if (in && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
    }
    __syncthreads();
    if (warp == 0) {
      const int wanted = k - above;
      int c[8], sum = 0;  // lane l: digits 255 - 8l down to 248 - 8l
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += c[i] = hist[255 - 8 * lane - i];
      int upto = sum;  // keys at this lane's digits and above
      for (int o = 1; o < kWarp; o *= 2) {
        const int t = __shfl_up_sync(0xffffffffu, upto, o);
        if (lane >= o) upto += t;
      }
      int acc = upto - sum;
      if (acc < wanted && wanted <= upto) {
        for (int i = 0; i < 8; ++i) {
          if (acc + c[i] >= wanted) {
            chosen[0] = 255 - 8 * lane - i;
            chosen[1] = acc;
            break;
          }
          acc += c[i];
        }
      }
    }
    __syncthreads();
    prefix |= uint32_t(chosen[0]) << shift;
    above += chosen[1];
  }
  return {prefix, above};
}

// Greedy decoding's argmax: the best entry of the block by value, then lower id (an empty id -1 ranks last).
struct Entry {
  float value;
  int32_t id;
};
__device__ __forceinline__ bool before(Entry a, Entry b) {
  if (a.id < 0) return false;
  if (b.id < 0) return true;
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}
__device__ Entry block_best(Entry e, Entry* warp_best) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const Entry other{__shfl_xor_sync(0xffffffffu, e.value, o), __shfl_xor_sync(0xffffffffu, e.id, o)};
    if (before(other, e)) e = other;
  }
  if (threadIdx.x % kWarp == 0) warp_best[threadIdx.x / kWarp] = e;
  __syncthreads();
  Entry best = warp_best[0];
  for (int w = 1; w < kWarps; ++w)
    if (before(warp_best[w], best)) best = warp_best[w];
  return best;
}

// One block per span of `span` (<= kSpan) of the n entries: (x[i], i) of the row, or with kFromCandidates the
// (x[i], in_ids[i]) the level before left. It writes its span's k best to out_values / out_ids + blockIdx.x * k,
// in position order, or with kLast (one block) in rank order; missing entries as id -1, value NaN.
template <bool kFromCandidates, bool kLast>
__global__ void __launch_bounds__(kThreads)
    top_k_kernel(const float* x, const int32_t* in_ids, int64_t n, int64_t span, int k, float* out_values,
                 int32_t* out_ids) {
  __shared__ int hist[256];
  __shared__ int counts[kPerThread * kWarps];
  __shared__ int chosen[2];
  __shared__ uint32_t best_key[kMaxDeviceTopK];
  __shared__ int32_t best_id[kMaxDeviceTopK];
  static_assert(kThreads == 256, "one histogram bin per thread");
  wait_for_predecessor();
  const int64_t begin = int64_t(blockIdx.x) * span, end = min(n, begin + span);
  uint32_t key[kPerThread];
  int32_t id[kPerThread];
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int64_t i = begin + threadIdx.x + int64_t(j) * kThreads;
    key[j] = 0;
    id[j] = -1;
    if (i < end) {
      const float v = x[i];
      const int32_t at = kFromCandidates ? in_ids[i] : int32_t(i);
      if (at >= 0 && !isnan(v)) key[j] = key_of(v), id[j] = at;
    }
  }
  float* values = out_values + (kLast ? 0 : int64_t(blockIdx.x) * k);
  int32_t* ids = out_ids + (kLast ? 0 : int64_t(blockIdx.x) * k);
  int taken;
  if (k == 1) {
    Entry mine{0.f, -1};
#pragma unroll
    for (int j = 0; j < kPerThread; ++j)
      if (before(Entry{value_of(key[j]), id[j]}, mine)) mine = Entry{value_of(key[j]), id[j]};
    const Entry best = block_best(mine, reinterpret_cast<Entry*>(hist));
    if (threadIdx.x == 0) {
      values[0] = best.id < 0 ? NAN : best.value;
      ids[0] = best.id;
    }
    return;
  }
  bool take[kPerThread];
  int slot[kPerThread];
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) take[j] = key[j] != 0;
  if (position_prefix(take, slot, counts) > k) {
    const KthKey kth = kth_largest(key, k, hist, chosen);
    bool tie[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) tie[j] = key[j] == kth.key;
    position_prefix(tie, slot, counts);  // the ties at lower positions (lower ids) go first
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) take[j] = key[j] > kth.key || (tie[j] && slot[j] < k - kth.above);
  }
  taken = position_prefix(take, slot, counts);
  if constexpr (!kLast) {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j)
      if (take[j]) values[slot[j]] = value_of(key[j]), ids[slot[j]] = id[j];
  } else {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j)
      if (take[j]) best_key[slot[j]] = key[j], best_id[slot[j]] = id[j];
    __syncthreads();
    if (int(threadIdx.x) < taken) {
      const uint32_t mine = best_key[threadIdx.x];
      const int32_t mine_id = best_id[threadIdx.x];
      int rank = 0;
      for (int s = 0; s < taken; ++s)
        rank += best_key[s] > mine || (best_key[s] == mine && best_id[s] < mine_id);
      values[rank] = value_of(mine);
      ids[rank] = mine_id;
    }
  }
  for (int s = taken + int(threadIdx.x); s < k; s += kThreads) {
    values[s] = NAN;
    ids[s] = -1;
  }
}

// Greedy decoding's spans are half as long: a level of one round gains more from twice the blocks.
int64_t span_for(int k) { return k == 1 ? kSpan / 2 : kSpan; }
int64_t spans_of(int64_t n, int k) { return (n + span_for(k) - 1) / span_for(k); }

}  // namespace

size_t top_k_workspace_bytes(int64_t n, int k) {
  size_t entries = 0;
  for (int64_t m = n; m > span_for(k); m = spans_of(m, k) * k) entries += size_t(spans_of(m, k)) * size_t(k);
  return entries * (sizeof(float) + sizeof(int32_t));
}

void top_k_f32(const float* x, int64_t n, int k, void* workspace, int32_t* ids, float* values,
               cudaStream_t stream) {
  if (k < 1 || k > kMaxDeviceTopK || n < k || n > INT32_MAX)
    fail("top_k: k = " + std::to_string(k) + " of " + std::to_string(n) + " entries");
  static_assert(kSpan >= 2 * kMaxDeviceTopK, "every level must shrink the candidates");
  // Levels write their candidates one after another into the workspace: values, then ids, per level.
  auto* next = static_cast<char*>(workspace);
  const float* level_values = x;
  const int32_t* level_ids = nullptr;
  int64_t m = n;
  bool first = true;
  while (m > span_for(k)) {
    const int64_t spans = spans_of(m, k);
    auto* cand_values = reinterpret_cast<float*>(next);
    auto* cand_ids = reinterpret_cast<int32_t*>(cand_values + spans * k);
    next = reinterpret_cast<char*>(cand_ids + spans * k);
    launch_overlapped(first ? top_k_kernel<false, false> : top_k_kernel<true, false>, unsigned(spans), kThreads,
                      stream, "top_k level", level_values, level_ids, m, span_for(k), k, cand_values, cand_ids);
    level_values = cand_values;
    level_ids = cand_ids;
    m = spans * k;
    first = false;
  }
  launch_overlapped(first ? top_k_kernel<false, true> : top_k_kernel<true, true>, 1u, kThreads, stream,
                    "top_k last level", level_values, level_ids, m, m, k, values, ids);
}

}  // namespace swrun::cuda
