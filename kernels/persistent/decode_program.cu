// The persistent decode kernel (decode_program.cuh): one block per SM walks the program; each op spreads its work
// over the grid and a cooperative-groups grid barrier separates consecutive ops. Ops on one row (norms) run on
// block 0 while the others wait at the barrier: the row is a few KB, the barrier is the cost either way.
//
// Activations are written and read inside the one launch, so they are read with plain loads (never through the
// non-coherent path); only weights, which no op writes, use __ldg.
#include "kernels/persistent/decode_program.cuh"

#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "kernels/dequant/block_decode.cuh"
#include "kernels/elementwise/activation.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/gemv/gemv_quant_warp.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kWarp = 32;
constexpr int kNormVec = 4;  // float4 per thread: rows of up to kProgramThreads * 16 floats
constexpr int kMaxNormCols = kProgramThreads * 4 * kNormVec;
constexpr int kMaxRopeHeadDim = 512;
constexpr int kRopeQuadsPerLane = kMaxRopeHeadDim / 4 / 32;
constexpr int kMaxGroup = 8;         // query heads per KV head
constexpr int kMinKeysPerSplit = 32;  // below this a split's merge costs more than its keys

constexpr int kPrefetchRows = 4;      // row dots a warp stages ahead of the barrier before a GEMV

// Dynamic shared memory: the GEMV stages (filled ahead of the barrier, so they have their own region), then the
// larger of the attention merge slots and the RoPE rows.
constexpr size_t kStageSmem = size_t(kProgramWarps) * kPrefetchRows * gemv::kStageVecs * sizeof(uint4);
constexpr size_t kAttnSmem =
    (size_t(kProgramWarps) * (kProgramMaxGroupFloats + 2 * kMaxGroup) + kProgramMaxGroupFloats) * sizeof(float);
constexpr size_t kRopeSmem = size_t(kProgramWarps) * kMaxRopeHeadDim * sizeof(float);
constexpr int kMaxStagedX = 16384;  // a GEMV's x is copied to shared memory up to this length
constexpr size_t kWorkSmem = std::max(std::max(kAttnSmem, kRopeSmem), size_t(kMaxStagedX) * sizeof(float));
constexpr size_t kSmemBytes = kStageSmem + kWorkSmem;

__device__ __forceinline__ int warp_id() { return int(threadIdx.x) / kWarp; }
__device__ __forceinline__ int lane_id() { return int(threadIdx.x) % kWarp; }
__device__ __forceinline__ int64_t grid_thread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

// The block's sum of v, on every thread. `scratch` holds kProgramWarps floats.
__device__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  __syncthreads();  // an earlier reduction's readers are done with scratch
  if (lane_id() == 0) scratch[warp_id()] = v;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < kProgramWarps; ++w) s += scratch[w];
  return s;
}

// ---- one-row ops (block 0). Every operand is loaded before the first reduction: a load after a block barrier
// would add its memory latency to the chain.

// Thread t's float4 columns t + i * kProgramThreads of a row (zeros past its end) and their sum of squares.
struct RowShare {
  float4 v[kNormVec];
  __device__ void load(const float* row, int cols4) {
#pragma unroll
    for (int i = 0; i < kNormVec; ++i) {
      const int c = threadIdx.x + i * kProgramThreads;
      v[i] = c < cols4 && row ? reinterpret_cast<const float4*>(row)[c] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
  __device__ float sum_squares() const {
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < kNormVec; ++i) ss += sum_of_squares(v[i]);
    return ss;
  }
  __device__ void scale_by(float s, const RowShare& g) {
#pragma unroll
    for (int i = 0; i < kNormVec; ++i) v[i] = scaled(v[i], s, g.v[i]);
  }
  __device__ void store(float* row, int cols4) const {
#pragma unroll
    for (int i = 0; i < kNormVec; ++i) {
      const int c = threadIdx.x + i * kProgramThreads;
      if (c < cols4) reinterpret_cast<float4*>(row)[c] = v[i];
    }
  }
};

__device__ float inv_rms(const RowShare& r, int cols, float eps, float* scratch) {
  return rms_scale(block_sum(r.sum_squares(), scratch), 1.f / float(cols), eps);
}

__device__ void run_rmsnorm(const ProgramRmsNorm& a, float* scratch) {
  if (blockIdx.x != 0) return;
  const int cols4 = a.cols / 4;
  RowShare x, w;
  x.load(a.x, cols4);
  w.load(a.w, cols4);
  x.scale_by(inv_rms(x, a.cols, a.eps, scratch), w);
  x.store(a.out, cols4);
}

__device__ void run_residual_norm(const ProgramResidualNorm& a, float* scratch) {
  if (blockIdx.x != 0) return;
  const int cols4 = a.cols / 4;
  RowShare y, x, post, next;
  y.load(a.y, cols4);
  x.load(a.x, cols4);
  post.load(a.w_post, cols4);
  next.load(a.w_next, cols4);
  if (a.w_post) y.scale_by(inv_rms(y, a.cols, a.eps, scratch), post);
#pragma unroll
  for (int i = 0; i < kNormVec; ++i)
    x.v[i] = make_float4(x.v[i].x + y.v[i].x, x.v[i].y + y.v[i].y, x.v[i].z + y.v[i].z, x.v[i].w + y.v[i].w);
  x.store(a.x, cols4);
  if (!a.w_next) return;
  x.scale_by(inv_rms(x, a.cols, a.eps, scratch), next);
  x.store(a.xn, cols4);
}

// ---- grid-wide ops

__device__ void run_embed(const ProgramEmbed& a) {
  with_block_decoder(a.type, [&]<typename D>() {
    const int blocks_per_row = int(a.cols / D::kElems);
    const int64_t items = int64_t(blocks_per_row) * D::kItems;
    const uint8_t* row = a.table + int64_t(*a.token) * blocks_per_row * D::kBytes;
    for (int64_t it = grid_thread(); it < items; it += grid_threads()) {
      const int b = int(it / D::kItems);
      float* o = a.out + int64_t(b) * D::kElems;
      D::item(row + b * D::kBytes, int(it % D::kItems), [&](int i, float v) { o[i] = __fmul_rn(v, a.scale); });
    }
  });
}

// ---- GEMV: one warp per output row over the grid; the rows of up to three matrices are concatenated (or one gated
// pair: a gate row and an up row per output). A warp's first row dots are staged by cp.async before the barrier
// that precedes the GEMV (prefetch_gemv), so the weights' memory latency overlaps the barrier and the op before.

__device__ __forceinline__ void cp_async16(void* smem, const void* global) {
  const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(global) : "memory");
}

// Calls f(i, n) for matrix i's row n of every output this warp computes, in order.
template <typename F>
__device__ __forceinline__ void for_warp_rows(const ProgramGemv& a, F&& f) {
  int64_t total = a.n_out[0];
  if (!a.gated)
    for (int i = 1; i < a.count; ++i) total += a.n_out[i];
  for (int64_t g = int64_t(blockIdx.x) * kProgramWarps + warp_id(); g < total;
       g += int64_t(gridDim.x) * kProgramWarps) {
    int i = 0;
    int64_t n = g;
    while (n >= a.n_out[i]) n -= a.n_out[i++];
    f(i, n);
  }
}

// The staged rows: the first outputs of the warp whose rows fit one stage, as long as slots remain (both rows of a
// gated output). prefetch_gemv and run_gemv walk the same rows with this rule, so they agree on the slots.
struct StagePlan {
  int slot = 0;
  bool open = true;
  template <typename D>
  __device__ bool take(const ProgramGemv& a) {
    const int mats = a.gated ? 2 : 1;
    open = open && a.cols / D::kElems <= gemv::kStageBytes / D::kBytes && slot + mats <= kPrefetchRows;
    if (open) slot += mats;
    return open;
  }
};

__device__ uint4* warp_stages(uint4* stages) { return stages + warp_id() * kPrefetchRows * gemv::kStageVecs; }

__device__ __noinline__ void prefetch_gemv(const ProgramGemv& a, uint4* stages) {
  uint4* mine = warp_stages(stages);
  StagePlan plan;
  for_warp_rows(a, [&](int i, int64_t n) {
    with_block_decoder(a.type[i], [&]<typename D>() {
      const int first = plan.slot;
      if (!plan.take<D>(a)) return;
      const int blocks_per_row = int(a.cols / D::kElems);
      const int64_t row_bytes = int64_t(blocks_per_row) * D::kBytes;
      for (int m = 0; m < plan.slot - first; ++m) {
        const gemv::StageSpan span = gemv::stage_span(a.w[a.gated ? m : i] + n * row_bytes, 0, blocks_per_row, D::kBytes);
        uint4* stage = mine + (first + m) * gemv::kStageVecs;
        for (int v = lane_id(); v < span.vecs; v += kWarp) cp_async16(stage + v, span.aligned + v);
      }
    });
  });
  asm volatile("cp.async.commit_group;" ::: "memory");
}

// `staged`: prefetch_gemv ran for this instruction before the barrier. x is first copied into `x_smem` by the
// whole block (one coalesced round trip instead of each lane's scattered reads of it).
__device__ __noinline__ void run_gemv(const ProgramGemv& a, uint4* stages, bool staged, float* x_smem) {
  uint4* mine = warp_stages(stages);
  const float* x = a.x;
  if (a.cols <= kMaxStagedX) {
    for (int t = threadIdx.x; t < a.cols / 4; t += kProgramThreads)
      reinterpret_cast<float4*>(x_smem)[t] = reinterpret_cast<const float4*>(a.x)[t];
    __syncthreads();
    x = x_smem;
  }
  const auto no_wait = [] {};
  StagePlan plan;
  bool waited = false;
  for_warp_rows(a, [&](int i, int64_t n) {
    with_block_decoder(a.type[i], [&]<typename D>() {
      const int blocks_per_row = int(a.cols / D::kElems);
      const int64_t row_bytes = int64_t(blocks_per_row) * D::kBytes;
      const int first = plan.slot;
      float acc[2][1] = {{0.f}, {0.f}};  // gate (or the only row), up
      if (staged && plan.take<D>(a)) {
        if (!waited) {
          asm volatile("cp.async.wait_all;" ::: "memory");
          __syncwarp();
          waited = true;
        }
#pragma unroll
        for (int m = 0; m < 2; ++m) {  // unrolled: acc[m] stays in registers
          if (m == plan.slot - first) break;
          const int skew = gemv::stage_span(a.w[a.gated ? m : i] + n * row_bytes, 0, blocks_per_row, D::kBytes).skew;
          const auto* blocks = reinterpret_cast<const uint8_t*>(mine + (first + m) * gemv::kStageVecs) + skew;
          gemv::warp_chunk_dots<D, 1>(blocks, 0, blocks_per_row, x, a.cols, 1, acc[m]);
        }
      } else {
        uint4* stage = mine;  // past the staged slots' use: this warp's slot 0 is free again
        gemv::warp_row_dots<D, 1>(a.w[i] + n * row_bytes, 0, blocks_per_row, x, a.cols, 1, stage, no_wait, acc[0]);
        if (a.gated)
          gemv::warp_row_dots<D, 1>(a.w[1] + n * row_bytes, 0, blocks_per_row, x, a.cols, 1, stage, no_wait,
                                    acc[1]);
      }
      if (a.gated) {
        const float sum = gated_activate(warp_sum(acc[0][0]), a.act) * warp_sum(acc[1][0]);
        if (lane_id() == 0) a.out[0][n] = sum;
      } else {
        gemv::store_row<1>(acc[0], 1, a.out[i], a.n_out[i], n);
      }
    });
  });
}

// One warp per head row of q, then k: RMSNorm (optional) into the warp's staging row, rotation back into q / k,
// and for k (and its v) the bf16 cache row of this position when the attention's store was folded in.
__device__ __noinline__ void run_qk_norm_rope(const ProgramQkNormRope& a, float* rows) {
  const int lane = lane_id(), dim = a.head_dim, half = dim / 2, quads = dim / 4;
  float* h = rows + warp_id() * kMaxRopeHeadDim;
  const int64_t pos = *a.pos;
  const int64_t slot = a.k_cache ? pos % a.capacity : 0;
  for (int row = int(blockIdx.x) * kProgramWarps + warp_id(); row < a.q_heads + a.k_heads;
       row += int(gridDim.x) * kProgramWarps) {
    const bool is_q = row < a.q_heads;
    const int head_index = is_q ? row : row - a.q_heads;
    float* head = (is_q ? a.q : a.k) + int64_t(head_index) * dim;
    const float* g = is_q ? a.q_norm : a.k_norm;
    const bool store = !is_q && a.k_cache;
    const float* v = store ? a.v + int64_t(head_index) * dim : nullptr;
    // Every operand first (the head, its norm weight, the value row to store), then the reduction.
    float4 hv[kRopeQuadsPerLane], gv[kRopeQuadsPerLane], vv[kRopeQuadsPerLane];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < kRopeQuadsPerLane; ++j) {
      const int c = lane + j * kWarp;
      if (c >= quads) break;
      hv[j] = reinterpret_cast<const float4*>(head)[c];
      if (g) gv[j] = reinterpret_cast<const float4*>(g)[c];
      if (v) vv[j] = reinterpret_cast<const float4*>(v)[c];
      ss += sum_of_squares(hv[j]);
    }
    const float scale = g ? rms_scale(warp_sum(ss), 1.f / float(dim), a.eps) : 1.f;
#pragma unroll
    for (int j = 0; j < kRopeQuadsPerLane; ++j) {
      const int c = lane + j * kWarp;
      if (c >= quads) break;
      reinterpret_cast<float4*>(h)[c] = g ? scaled(hv[j], scale, gv[j]) : hv[j];
    }
    __syncwarp();
    __nv_bfloat16* k_row = store ? a.k_cache + (slot * a.k_heads + head_index) * dim : nullptr;
    for (int i = lane; i < half; i += kWarp) {
      const int x0 = a.neox ? i : 2 * i, x1 = a.neox ? i + half : 2 * i + 1;
      const float2 r = rotate(h[x0], h[x1], i, pos, a.freq);
      head[x0] = r.x;
      head[x1] = r.y;
      if (store) {
        k_row[x0] = __float2bfloat16_rn(r.x);
        k_row[x1] = __float2bfloat16_rn(r.y);
      }
    }
    if (store) {
      __nv_bfloat16* v_row = a.v_cache + (slot * a.k_heads + head_index) * dim;
#pragma unroll
      for (int j = 0; j < kRopeQuadsPerLane; ++j) {
        const int c = lane + j * kWarp;
        if (c >= quads) break;
        v_row[4 * c] = __float2bfloat16_rn(vv[j].x);
        v_row[4 * c + 1] = __float2bfloat16_rn(vv[j].y);
        v_row[4 * c + 2] = __float2bfloat16_rn(vv[j].z);
        v_row[4 * c + 3] = __float2bfloat16_rn(vv[j].w);
      }
    }
    __syncwarp();  // the staging row is refilled by the next head
  }
}

// ---- attention of one query against the cache

// The visible keys pos - visible + 1 .. pos, cut into n_split splits of `per` keys (the last may be shorter).
struct SplitPlan {
  int64_t first, end;
  int per, n_split;
};

__device__ SplitPlan plan_splits(const ProgramAttn& a) {
  const int64_t pos = *a.pos;
  const int64_t visible = min(pos + 1, int64_t(a.left) + 1);
  const int64_t wanted = min(int64_t(a.max_splits), (visible + kMinKeysPerSplit - 1) / kMinKeysPerSplit);
  const int per = int((visible + wanted - 1) / wanted);
  return {pos - visible + 1, pos + 1, per, int((visible + per - 1) / per)};
}

// E bf16 values of a cache row (E = 2, 4, 8: one 4-, 8- or 16-byte load per lane).
template <int E> struct Bf16Vec;
template <> struct Bf16Vec<2> { using T = uint32_t; };
template <> struct Bf16Vec<4> { using T = uint2; };
template <> struct Bf16Vec<8> { using T = uint4; };

template <int E>
__device__ __forceinline__ void unpack(const typename Bf16Vec<E>::T& raw, float (&out)[E]) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < E / 2; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// The splits of KV head kvh merged into the output of its query heads, by the calling block. The partials were
// written by other blocks in this same op: read through L2 (an earlier layer may have left the addresses in L1).
__device__ void merge_splits(const ProgramAttn& a, const SplitPlan& sp, int kvh) {
  const int D = a.head_dim, G = a.n_head / a.n_head_kv;
  const int64_t stride = int64_t(a.n_head) * (D + 2);
  for (int t = threadIdx.x; t < G * D; t += kProgramThreads) {
    const int64_t h = int64_t(kvh) * G + t / D, d = t % D;
    const float* p = a.partials + h * (D + 2);
    float mx = -INFINITY;
    for (int s = 0; s < sp.n_split; ++s) mx = fmaxf(mx, __ldcg(p + s * stride + D));
    float sum_l = 0.f, sum_acc = 0.f;
    for (int s = 0; s < sp.n_split; ++s) {
      const float f = expf(__ldcg(p + s * stride + D) - mx);
      sum_l = fmaf(__ldcg(p + s * stride + D + 1), f, sum_l);
      sum_acc = fmaf(__ldcg(p + s * stride + d), f, sum_acc);
    }
    a.out[h * D + d] = sum_acc / sum_l;
  }
}

// Work items are (KV head, split); a block's warps take its keys in turn, kU at a time with every load issued
// before any use, keep an online softmax per query head of the group (the group's queries in shared memory), and
// merge in shared memory into the split's partial: [n_head][head_dim] sums of p*v, then the running max m and sum l.
template <int E, int kG>
__device__ void attn_partial(const ProgramAttn& a, float* slots) {
  constexpr int D = kWarp * E;
  constexpr int kU = 16 / E;  // keys in flight per warp
  constexpr int kSlot = kG * (D + 2);
  using Vec = typename Bf16Vec<E>::T;
  const int G = a.n_head / a.n_head_kv, warp = warp_id(), lane = lane_id();
  const SplitPlan sp = plan_splits(a);
  const int64_t row_stride = int64_t(a.n_head_kv) * D;
  float* q = slots + kProgramWarps * kSlot;  // the group's queries, shared by the block's warps
  for (int item = blockIdx.x; item < a.n_head_kv * sp.n_split; item += gridDim.x) {
    const int kvh = item / sp.n_split, split = item % sp.n_split;
    const int64_t begin = sp.first + int64_t(split) * sp.per, end = min(begin + sp.per, sp.end);
    for (int t = threadIdx.x; t < G * D; t += kProgramThreads) q[t] = a.q[int64_t(kvh) * G * D + t];
    __syncthreads();
    float acc[kG][E], m[kG], l[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.f;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[g][e] = 0.f;
    }
    const __nv_bfloat16* k_base = a.k_cache + int64_t(kvh) * D + lane * E;
    const __nv_bfloat16* v_base = a.v_cache + int64_t(kvh) * D + lane * E;
    for (int64_t j0 = begin + int64_t(warp) * kU; j0 < end; j0 += int64_t(kProgramWarps) * kU) {
      Vec kr[kU], vr[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u)
        if (j0 + u < end) {
          const int64_t row = ((j0 + u) % a.capacity) * row_stride;
          kr[u] = *reinterpret_cast<const Vec*>(k_base + row);
          vr[u] = *reinterpret_cast<const Vec*>(v_base + row);
        }
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        if (j0 + u >= end) break;
        float kf[E], vf[E];
        unpack<E>(kr[u], kf);
        unpack<E>(vr[u], vf);
#pragma unroll
        for (int g = 0; g < kG; ++g) {
          if (g >= G) break;
          const float* qg = q + g * D + lane * E;
          float s = 0.f;
#pragma unroll
          for (int e = 0; e < E; ++e) s = fmaf(qg[e], kf[e], s);
          s = warp_sum(s) * a.scale;
          if (a.softcap > 0.f) s = a.softcap * tanhf(s / a.softcap);
          const float m_new = fmaxf(m[g], s);
          const float corr = expf(m[g] - m_new), p = expf(s - m_new);
          l[g] = l[g] * corr + p;
#pragma unroll
          for (int e = 0; e < E; ++e) acc[g][e] = fmaf(p, vf[e], acc[g][e] * corr);
          m[g] = m_new;
        }
      }
    }
    float* mine = slots + warp * kSlot;
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      if (g >= G) break;
#pragma unroll
      for (int e = 0; e < E; ++e) mine[g * D + lane * E + e] = acc[g][e];
      if (lane == 0) {
        mine[kG * D + 2 * g] = m[g];
        mine[kG * D + 2 * g + 1] = l[g];
      }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < G * D; t += kProgramThreads) {
      const int g = t / D, d = t % D;
      float mx = -INFINITY;
      for (int w = 0; w < kProgramWarps; ++w) mx = fmaxf(mx, slots[w * kSlot + kG * D + 2 * g]);
      float sum_l = 0.f, sum_acc = 0.f;
      for (int w = 0; w < kProgramWarps; ++w) {
        const float* s = slots + w * kSlot;
        const float lw = s[kG * D + 2 * g + 1];
        if (lw == 0.f) continue;  // a warp that saw no key of this split
        const float f = expf(s[kG * D + 2 * g] - mx);
        sum_l = fmaf(lw, f, sum_l);
        sum_acc = fmaf(s[g * D + d], f, sum_acc);
      }
      float* dst = a.partials + (int64_t(split) * a.n_head + int64_t(kvh) * G + g) * (D + 2);
      dst[d] = sum_acc;
      if (d == 0) {
        dst[D] = mx;
        dst[D + 1] = sum_l;
      }
    }
    // The last block to finish a split of this KV head merges them all (no barrier and op for the merge).
    __threadfence();
    __syncthreads();
    __shared__ bool last;
    if (threadIdx.x == 0) {
      last = atomicAdd(a.splits_done + kvh, 1) == sp.n_split - 1;
      if (last) {
        a.splits_done[kvh] = 0;  // for the next layer, after the barrier
        __threadfence();
      }
    }
    __syncthreads();
    if (last) merge_splits(a, sp, kvh);
    __syncthreads();  // the slots and `last` are reused by the next item
  }
}

__device__ __noinline__ void run_attention(const ProgramAttn& a, float* slots) {
  const int G = a.n_head / a.n_head_kv;
  auto by_group = [&]<int E>() {
    if (G == 1) attn_partial<E, 1>(a, slots);
    else if (G == 2) attn_partial<E, 2>(a, slots);
    else if (G <= 4) attn_partial<E, 4>(a, slots);
    else if constexpr (E < 8) attn_partial<E, 8>(a, slots);
  };
  if (a.head_dim == 64) by_group.template operator()<2>();
  else if (a.head_dim == 128) by_group.template operator()<4>();
  else by_group.template operator()<8>();
}

__device__ void run_elementwise(ProgramOp op, const ProgramElementwise& a) {
  for (int64_t i = grid_thread(); i < a.count; i += grid_threads()) {
    if (op == ProgramOp::AddBias) a.x[i] += a.bias[i % a.cols];
    else a.x[i] = a.cap * tanhf(a.x[i] / a.cap);
  }
}

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// `trace` (optional): block 0 stamps the global timer as each instruction starts and after the last one.
__global__ void __launch_bounds__(kProgramThreads, 1)
    decode_program_kernel(const ProgramInstr* prog, int count, uint64_t* trace) {
  extern __shared__ __align__(16) unsigned char smem[];
  uint4* stages = reinterpret_cast<uint4*>(smem);
  float* work = reinterpret_cast<float*>(smem + kStageSmem);
  __shared__ ProgramInstr ins[2];  // instruction i in ins[i % 2]
  __shared__ float scratch[kProgramWarps];
  constexpr int kWords = sizeof(ProgramInstr) / sizeof(uint32_t);
  static_assert(kWords <= kProgramThreads, "one word of an instruction per thread");
  cg::grid_group grid = cg::this_grid();
  const bool stamps = trace && blockIdx.x == 0 && threadIdx.x == 0;
  const bool loader = threadIdx.x < kWords;
  // Thread t holds word t of the instruction after next, loaded while the current one runs.
  auto word_of = [&](int i) { return __ldg(reinterpret_cast<const uint32_t*>(prog + i) + threadIdx.x); };
  auto words = [](ProgramInstr& in) { return reinterpret_cast<uint32_t*>(&in); };
  if (loader) words(ins[0])[threadIdx.x] = word_of(0);
  uint32_t next = loader && count > 1 ? word_of(1) : 0u;
  __syncthreads();
  for (int i = 0; i < count; ++i) {
    const ProgramInstr& in = ins[i % 2];
    if (stamps) trace[i] = global_ns();
    switch (in.op) {
      case ProgramOp::Embed: run_embed(in.embed); break;
      case ProgramOp::RmsNorm: run_rmsnorm(in.norm, scratch); break;
      case ProgramOp::Gemv: run_gemv(in.gemv, stages, i > 0, work); break;
      case ProgramOp::QkNormRope: run_qk_norm_rope(in.rope, work); break;
      case ProgramOp::Attention: run_attention(in.attn, work); break;
      case ProgramOp::ResidualNorm: run_residual_norm(in.residual, scratch); break;
      case ProgramOp::AddBias:
      case ProgramOp::Softcap: run_elementwise(in.op, in.elementwise); break;
    }
    if (i + 1 == count) break;
    // ins[(i + 1) % 2] held instruction i - 1, done with at the last barrier; the arrival's block barrier
    // publishes it to the block.
    ProgramInstr& upcoming = ins[(i + 1) % 2];
    if (loader) words(upcoming)[threadIdx.x] = next;
    // The barrier is split so that the next GEMV's weights are requested after this block's arrival (whose
    // release would otherwise wait for them) and before the wait for the other blocks.
    cg::grid_group::arrival_token token = grid.barrier_arrive();
    if (upcoming.op == ProgramOp::Gemv) prefetch_gemv(upcoming.gemv, stages);
    if (loader && i + 2 < count) next = word_of(i + 2);
    grid.barrier_wait(std::move(token));
  }
  if (stamps) trace[count] = global_ns();
}

}  // namespace

const char* program_op_name(ProgramOp op) {
  switch (op) {
    case ProgramOp::Embed: return "embed";
    case ProgramOp::RmsNorm: return "rmsnorm";
    case ProgramOp::Gemv: return "gemv";
    case ProgramOp::QkNormRope: return "qk_norm_rope";
    case ProgramOp::Attention: return "attention";
    case ProgramOp::ResidualNorm: return "residual_norm";
    case ProgramOp::AddBias: return "add_bias";
    case ProgramOp::Softcap: return "softcap";
  }
  return "?";
}

bool program_gemv_supported(GgmlType type, int64_t cols) { return gemv_quant_supported(type, cols); }

bool program_norm_supported(int64_t cols) { return cols > 0 && cols % 4 == 0 && cols <= kMaxNormCols; }

bool program_attention_supported(int n_head, int n_head_kv, int head_dim) {
  if (n_head_kv <= 0 || n_head % n_head_kv != 0) return false;
  const int group = n_head / n_head_kv;
  return (head_dim == 64 || head_dim == 128 || head_dim == 256) && group <= kMaxGroup &&
         group * head_dim <= kProgramMaxGroupFloats;
}

bool program_rope_supported(int head_dim) { return head_dim > 0 && head_dim % 4 == 0 && head_dim <= kMaxRopeHeadDim; }

int program_attention_max_splits(int n_head_kv) { return std::max(1, sm_count() / std::max(1, n_head_kv)); }

size_t program_attention_workspace_floats(int n_head, int head_dim, int max_splits) {
  return size_t(max_splits) * size_t(n_head) * size_t(head_dim + 2);
}

cudaError_t launch_decode_program(const ProgramInstr* prog, int count, uint64_t* trace, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  static const bool configured = [] {
    check_cuda(cudaFuncSetAttribute(decode_program_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(kSmemBytes)),
               "decode program: shared memory");
    return true;
  }();
  (void)configured;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeCooperative;
  attribute.val.cooperative = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(sm_count()));
  config.blockDim = dim3(kProgramThreads);
  config.dynamicSmemBytes = kSmemBytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, decode_program_kernel, prog, count, trace);
}

}  // namespace swrun::cuda
