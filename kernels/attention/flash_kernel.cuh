// The flash attention kernel family: one block = a tile of query rows against the key tiles its window
// touches, K/V streamed through shared-memory stages with cp.async and mbarriers, online softmax in registers,
// the two products on wgmma (sm_90a) or mma.sync (sm_80+ fallback). The pieces are separate on purpose (block
// bounds, tile loads, scores, mask, softmax, PV, epilogue): the warp-specialized head_dim 128 kernel
// (flash_kernel_ws.cuh) replaces the loop schedule and keeps the rest.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/attention/flash_fresh_rows.cuh"
#include "kernels/attention/mma_sm80.cuh"
#include "kernels/attention/wgmma_sm90.cuh"
#include "kernels/common/launch.cuh"

namespace swrun::cuda::attn {

// The products run on wgmma where the sm_90a machine code is built, on mma.sync elsewhere (the compute_90 PTX
// that newer GPUs JIT, or -DSWRUN_ATTN_MMA_SYNC_ONLY to compare the two on one Hopper).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(SWRUN_ATTN_MMA_SYNC_ONLY)
constexpr bool kWgmmaPath = true;
#else
constexpr bool kWgmmaPath = false;
#endif

// Tile shape per head_dim, measured on an H100 (bench/attention_notes.md): 16 query rows per warp, a warpgroup
// owns 64. Two warpgroups share each K/V tile at d 128 and 256 (half the L2 traffic per FLOP); at d 64 one
// warpgroup per block leaves room for several blocks per SM. K/V tiles stream through kStages shared-memory
// stages, each guarded by a "full" and an "empty" mbarrier, so no block-wide barrier ties the warpgroups
// together and one's softmax can run under the other's MMAs.
template <int D> struct FlashTile;
template <> struct FlashTile<64> { static constexpr int kWarps = 4, kBlockN = 64, kStages = 2; };
template <> struct FlashTile<128> { static constexpr int kWarps = 8, kBlockN = 128, kStages = 3; };
template <> struct FlashTile<256> { static constexpr int kWarps = 8, kBlockN = 64, kStages = 2; };

template <int D> struct FlashConfig {
  static constexpr int kWarps = FlashTile<D>::kWarps;
  static constexpr int kBlockM = 16 * kWarps;
  static constexpr int kBlockN = FlashTile<D>::kBlockN;
  static constexpr int kThreads = 32 * kWarps;
  // mma.sync only: at 256 the Q fragments would cost 64 registers, so they are re-read from shared memory.
  static constexpr bool kQInRegisters = !kWgmmaPath && D <= 128;
  static constexpr int kStages = FlashTile<D>::kStages;
  // Q, the K and V stages, the mbarriers (full and empty per stage, Q's own), a decode's cos/sin table
  // (FreshRows), and slack to align the tiles to 1024 bytes.
  static constexpr int kSmemBytes =
      (kBlockM + 2 * kStages * kBlockN) * D * 2 + (2 * kStages + 1) * 8 + D / 2 * 8 + 1024;
  static_assert(kWarps % 4 == 0, "whole warpgroups");
};

// Everything a launch needs, resolved on the host. A block's rows pack `heads_per_block` query heads of one
// KV head: row r is query (tile start + r / heads_per_block), head (group start + r % heads_per_block).
struct FlashParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* partial_acc;   // split-K only: [n_split][n_q][n_head][D] unnormalized sums
  float2* partial_ml;   // split-K only: [n_split][n_q][n_head] (max in log2 units, sum of exponentials)
  int64_t q_stride, kv_stride, o_stride;
  int n_q, n_head, group, heads_per_block, queries_per_block, n_split;
  int q_pos0;
  const int32_t* q_pos0_dev;
  int capacity, left, right;
  // Softmax scale * log2(e), so exp() becomes one ex2. With softcapping the scores are already capped and in
  // log2 units when the softmax sees them (cap_scores), so it is 1.
  float scale_log2;
  // Softcapping (kernels instantiated with kSoftcap only): score s becomes log2(e) * cap * tanh(scale * s / cap)
  // (tanh needs the scaled score in natural units, so the scale cannot be folded into the exponent as without
  // capping), computed as cap_log2 * (1 - 2 / (2^(s * cap_exp2) + 1)) with cap_log2 = log2(e) * cap and
  // cap_exp2 = 2 * log2(e) * scale / cap.
  float cap_exp2, cap_log2;
  // gpt-oss's attention sinks (kernels instantiated with kSinks only): n_head logits in natural units, each row's
  // softmax gets one more term exp(sinks[head]) in its denominator and none in its weighted sum (AttnParams::sinks).
  // Added once per row at the final normalization (write_rows), or with split-K by the combine.
  const float* sinks;
  bool o_fp32;
  __nv_bfloat16* o16;  // with an fp32 o: its bf16 rounding too (FlashAttnArgs::o16), or null
  // Warp-specialized kernel only (FlashAttnArgs::persistent, variant 16): the grid is a block per SM, and block b
  // takes the work items b, b + gridDim.x, ... (a work item is what one block of the plain grid does).
  bool persistent;
  // Warp-specialized prefill (variants 18, 19): the producer loads Q and the interior K/V tiles with the TMA
  // through the kernel's tensor maps (flash_attention_ws_kernel's WsMaps); false: everything with cp.async.
  bool tma;
  FreshRows fresh;     // decode from the projection's fp32 rows (FlashAttnArgs::fresh); fresh.q null: off
  // Decode (flash_attention_decode): the kernel launched before this one writes no cache row older than the first
  // query position, so the plain kernel loads key tiles wholly before it ahead of its wait for that kernel
  // (BlockBounds::tile_settled), under that kernel's tail; Q, which that kernel writes, after. (The warp-specialized
  // kernel measured 1% slower so: Mistral's shape at 131K keys, bench/attention_notes.md.)
  bool settled_rows;
};

// Which queries and which key tiles one block covers. Key tiles are aligned to absolute positions so a tile
// either lies wholly inside every row's window (no mask) or is a boundary tile (element mask).
template <int BN> struct BlockBounds {
  int q_first, q_last;  // local query indices of this block's rows (q_last < n_q)
  int pos_first, pos_last, kv_len, left, right;
  int key_lo, key_hi;    // union of the rows' windows, clipped to the keys present
  int tile_lo, tile_hi;  // this block's key tiles; empty when tile_hi < tile_lo (split-K leftovers)

  __device__ void init(const FlashParams& p) {
    init(p, gridDim.y - 1 - blockIdx.y, blockIdx.z);  // the heaviest causal tiles start first
  }
  // The block of query tile q_tile and split `split` (the grid's coordinates, or a persistent block's work item).
  __device__ void init(const FlashParams& p, int q_tile, int split) {
    const int q_pos0 = p.q_pos0_dev ? *p.q_pos0_dev : p.q_pos0;
    kv_len = q_pos0 + p.n_q;
    left = min(p.left, kv_len);  // clipping keeps pos - left and pos + right inside int32
    right = min(p.right, kv_len);
    q_first = q_tile * p.queries_per_block;
    q_last = min(p.n_q, q_first + p.queries_per_block) - 1;
    pos_first = q_pos0 + q_first;
    pos_last = q_pos0 + q_last;
    key_lo = max(0, pos_first - left);
    key_hi = min(kv_len - 1, pos_last + right);
    tile_lo = key_lo / BN;
    tile_hi = key_hi / BN;
    if (p.n_split > 1) {
      const int per_split = (tile_hi - tile_lo + p.n_split) / p.n_split;
      tile_lo += split * per_split;
      tile_hi = min(tile_hi, tile_lo + per_split - 1);
    }
  }
  __device__ bool tile_needs_mask(int tile) const {
    const int k0 = tile * BN, k1 = k0 + BN - 1;
    return !(k0 >= pos_last - left && k1 <= pos_first + right && k1 < kv_len);
  }
  __device__ bool visible(int key, int pos) const {
    return key >= pos - left && key <= pos + right && key < kv_len;
  }
  // Decode with fresh rows (n_q 1): whether this block's last key tile holds the new position, whose cache rows
  // it writes.
  __device__ bool owns_new_position() const { return tile_lo <= tile_hi && tile_hi == (kv_len - 1) / BN; }
  // Decode (FlashParams::settled_rows): whether a key tile lies wholly before the block's first query position,
  // so that no kernel of this step writes its rows and it can be loaded before the kernel waits for its
  // predecessor.
  __device__ bool tile_settled(int tile) const { return (tile + 1) * BN <= pos_first; }
};

// The fresh rows of a decode block, once its cos/sin table is formed: its query rows into sQ, and the new
// position's k and v into the cache if its keys end there (flash_fresh_rows.cuh). Then the block synchronizes: the
// rows are read by the tile loads and the products that follow.
template <typename T, int D, int BM, int BN>
__device__ __forceinline__ void stage_fresh_block(const FlashParams& p, const BlockBounds<BN>& b, T* sQ,
                                                  int head_first, const float2* cos_sin) {
  __syncthreads();  // the table is complete
  const int kv_head = head_first / p.group;
  const int64_t cache_off = int64_t((b.kv_len - 1) % p.capacity) * p.kv_stride + int64_t(kv_head) * D;
  stage_fresh_rows<T, D, BM>(p.fresh, p.heads_per_block, head_first, kv_head, b.owns_new_position(), cache_off, sQ,
                             cos_sin);
  fence_proxy_async();  // written through the generic proxy, read by wgmma through the async one
  __syncthreads();
}

// K or V rows of key tile `tile` into shared memory. Row r holds position tile*BN + r from ring slot
// pos % capacity (rows of one tile may wrap); positions outside [key_lo, key_hi] are zero-filled so stale
// ring rows never reach the products.
template <typename T, int D, int BN, int NT>
__device__ __forceinline__ void load_kv_tile(T* smem, const T* head_base, int64_t row_stride, int tile,
                                             const BlockBounds<BN>& b, int capacity) {
  // A row's 16-byte chunks are spread over kThreadsPerRow threads, kChunkSteps each (more than one only when
  // the threads are too few for a pass of 8 rows: the d 256 warp-specialized producer, 128 threads).
  constexpr int kChunks = D / 8, kThreadsPerRow = kChunks < NT / 8 ? kChunks : NT / 8;
  constexpr int kChunkSteps = kChunks / kThreadsPerRow, kRowsPerPass = NT / kThreadsPerRow;
  static_assert(kChunks % kThreadsPerRow == 0 && NT % kThreadsPerRow == 0 && BN % kRowsPerPass == 0,
                "tile load must split evenly");
  static_assert(kRowsPerPass % 8 == 0 && kThreadsPerRow % 8 == 0, "each pass and step keeps the swizzle phase");
  const int tid = threadIdx.x;
  const int row0 = tid / kThreadsPerRow, chunk0 = tid % kThreadsPerRow;
  const int pos0 = tile * BN + row0;
  // Chunk step c is chunk0 + c * kThreadsPerRow: the same swizzle phase, kThreadsPerRow / 8 column blocks on.
  constexpr int kStepSmem = kThreadsPerRow / 8 * BN * 64, kStepGlobal = kThreadsPerRow * 8;
  // Almost every tile lies wholly inside [key_lo, key_hi] in consecutive ring slots: then each pass only
  // steps both addresses by a constant, where the general path below spends about a dozen instructions per
  // 16-byte copy on the issuing warps' critical path (bench/attention_notes.md, #13).
  const int slot_first = tile * BN % capacity;
  if (tile * BN >= b.key_lo && tile * BN + BN - 1 <= b.key_hi && slot_first + BN <= capacity) {
    const T* src = head_base + (slot_first + row0) * row_stride + chunk0 * 8;
    T* dst = smem + tile_offset<BN>(row0, chunk0);
#pragma unroll
    for (int i = 0; i < BN / kRowsPerPass; ++i)
#pragma unroll
      for (int c = 0; c < kChunkSteps; ++c)
        cp_async_16(dst + i * kRowsPerPass * 64 + c * kStepSmem, src + i * kRowsPerPass * row_stride + c * kStepGlobal,
                    true);
    return;
  }
  int slot = pos0 % capacity;
#pragma unroll
  for (int i = 0; i < BN / kRowsPerPass; ++i) {
    const int row = row0 + i * kRowsPerPass;
    const int pos = pos0 + i * kRowsPerPass;
    const bool present = pos >= b.key_lo && pos <= b.key_hi;
#pragma unroll
    for (int c = 0; c < kChunkSteps; ++c)
      cp_async_16(smem + tile_offset<BN>(row, chunk0) + c * kStepSmem,
                  head_base + (present ? slot * row_stride + chunk0 * 8 + c * kStepGlobal : 0), present);
    slot += kRowsPerPass;
    while (slot >= capacity) slot -= capacity;
  }
}

template <typename T, int D, int BM, int NT>
__device__ __forceinline__ void load_q_tile(T* smem, const FlashParams& p, int q_first, int q_last,
                                            int head_first) {
  constexpr int kChunks = D / 8;
  const T* q = static_cast<const T*>(p.q);
  for (int idx = threadIdx.x; idx < BM * kChunks; idx += NT) {
    const int row = idx / kChunks, chunk = idx % kChunks;
    const int qi = q_first + row / p.heads_per_block;
    const int head = head_first + row % p.heads_per_block;
    const bool present = qi <= q_last;
    cp_async_16(smem + tile_offset<BM>(row, chunk), q + (present ? qi * p.q_stride + head * D + chunk * 8 : 0),
                present);
  }
}

// S[16 x BN] = Q[warp rows] . K_tile^T for one warp (mma.sync).
template <typename T, int D, int BM, int BN, bool kQInRegs>
__device__ __forceinline__ void warp_scores(float (&s)[BN / 8][4], const uint32_t (&qf)[kQInRegs ? D / 16 : 1][4],
                                            const T* sQ, const T* sK, int warp_row0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
    if constexpr (kQInRegs) {
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = qf[kk][i];
    } else {
      ldmatrix_x4(a, sQ + tile_offset<BM>(warp_row0 + (lane & 15), kk * 2 + (lane >> 4)));
    }
#pragma unroll
    for (int nn = 0; nn < BN / 16; ++nn) {
      uint32_t b[4];
      ldmatrix_x4(b, sK + tile_offset<BN>(nn * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1)));
      MmaOp<T>::run(s[2 * nn], a, b[0], b[1]);
      MmaOp<T>::run(s[2 * nn + 1], a, b[2], b[3]);
    }
  }
}

template <int BN>
__device__ __forceinline__ void mask_scores(float (&s)[BN / 8][4], const BlockBounds<BN>& b, int tile,
                                            const int (&row_pos)[2]) {
  const int key0 = tile * BN + 2 * (threadIdx.x & 3);
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (!b.visible(key0 + j * 8 + (e & 1), row_pos[e >> 1])) s[j][e] = -INFINITY;
}

// rcp.approx: one MUFU op, 1 ulp; rcp(+inf) = +0.
__device__ __forceinline__ float fast_rcp(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

constexpr float kLog2e = 1.4426950408889634f;

// A block's sinks (kSinks only) for its thread's two rows, in log2 units; zeros where a split-K partial is written
// (the combine adds the sink) or without sinks. Sinks are weights, never written by a kernel of the step: they load
// before the wait for the kernel launched before.
template <bool kSinks>
__device__ __forceinline__ void load_sinks(float (&sink_log2)[2], const FlashParams& p, const int (&row_head)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) sink_log2[r] = 0.f;
  if constexpr (kSinks) {
    if (p.n_split == 1) {
#pragma unroll
      for (int r = 0; r < 2; ++r) sink_log2[r] = __ldg(p.sinks + row_head[r]) * kLog2e;
    }
  }
}

// The sink's term of a row's denominator: exp(sink) against the row's reference point (its max in log2 units, 0 for
// a row with no visible key, as online_softmax takes it), added to the row's full sum l once at the final
// normalization. The sink does not join the max: one far above every score overflows 2^x to inf, so 1/l is 0 and
// the row 0, which is its value to fp32 precision (below 2^-126 of the values'); one far below adds 0.
__device__ __forceinline__ float sink_term(float sink_log2, float m, float scale_log2) {
  return fast_exp2(sink_log2 - (m == -INFINITY ? 0.f : m * scale_log2));
}

// Gemma 2 softcapping on the score registers, before the mask: masked scores are set to -inf afterwards, so
// tanh(-inf) = -1 never unmasks them. The result is in log2 units (FlashParams::cap_log2). tanh as
// 1 - 2 / (e^2x + 1) costs two MUFU ops (ex2, rcp) and three FP32 ops per score, with an absolute error of about
// 1e-6 (5e-5 nats at cap 50). tanh.approx.f32 (one MUFU op, FlashAttention's choice) is bounded only by a
// relative error of 2^-11, up to 0.02 nats at cap 50: the size of the tests' tolerance, so not taken without a
// measurement; tanhf is ~20 instructions per score (bench/attention_notes.md, softcapping).
template <int BN>
__device__ __forceinline__ void cap_scores(float (&s)[BN / 8][4], float cap_exp2, float cap_log2) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)  // 2^(s * cap_exp2) overflows to inf for large s: rcp gives 0, tanh 1
      s[j][e] = fmaf(-2.f * cap_log2, fast_rcp(fast_exp2(s[j][e] * cap_exp2) + 1.f), cap_log2);
}

// Online softmax over one tile: running max m (score units as the softmax gets them: raw, or capped in log2
// units, so the max is taken over capped scores) and running sum l per row; `alpha` is the
// factor the accumulator must be rescaled by (rescale_rows) before this tile's P.V is added. A row with no
// visible key so far keeps m = -inf and contributes zeros (the reference point 0 avoids inf - inf).
template <int BN>
__device__ __forceinline__ void online_softmax(float (&s)[BN / 8][4], float (&m)[2], float (&l)[2],
                                               float (&alpha)[2], float scale_log2) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = m[r];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float ref = mx == -INFINITY ? 0.f : mx * scale_log2;
    alpha[r] = fast_exp2(m[r] * scale_log2 - ref);
    m[r] = mx;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      s[j][2 * r] = fast_exp2(fmaf(s[j][2 * r], scale_log2, -ref));
      s[j][2 * r + 1] = fast_exp2(fmaf(s[j][2 * r + 1], scale_log2, -ref));
      sum += s[j][2 * r] + s[j][2 * r + 1];
    }
    l[r] = l[r] * alpha[r] + sum;
  }
}

template <int D>
__device__ __forceinline__ void rescale_rows(float (&acc)[D / 8][4], const float (&alpha)[2]) {
#pragma unroll
  for (int d = 0; d < D / 8; ++d) {
    acc[d][0] *= alpha[0];
    acc[d][1] *= alpha[0];
    acc[d][2] *= alpha[1];
    acc[d][3] *= alpha[1];
  }
}

// P of one tile as mma A fragments (rows of this warp, 16 keys per fragment); the register layout of the score
// accumulators is already the A layout, so this is only a conversion to 16 bits.
template <typename T, int BN>
__device__ __forceinline__ void pack_probs(uint32_t (&a)[BN / 16][4], const float (&s)[BN / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    a[kk][0] = MmaOp<T>::pack(s[2 * kk][0], s[2 * kk][1]);
    a[kk][1] = MmaOp<T>::pack(s[2 * kk][2], s[2 * kk][3]);
    a[kk][2] = MmaOp<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[kk][3] = MmaOp<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

// Issues S[64 x BN] = Q[warpgroup rows] . K_tile^T (wgmma, both operands in shared memory). The caller fences,
// commits and waits, so other products can be in flight with it.
template <typename T, int D, int BM, int BN>
__device__ __forceinline__ void issue_scores_wgmma(float (&s)[BN / 8][4], const T* sQ, const T* sK, int group_row0) {
  static_assert(BN == 64 || BN == 128, "one m64nBNk16 per k step");
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    // k step kk: column block kk / 4, 32-byte offset (kk % 4) inside the swizzled 128-byte rows.
    const T* a = sQ + (kk >> 2) * (BM * 64) + group_row0 * 64 + (kk & 3) * 16;
    const T* b = sK + (kk >> 2) * (BN * 64) + (kk & 3) * 16;
    wgmma_ss<T, BN>(s, wgmma_desc(a, 16, 1024), wgmma_desc(b, 16, 1024), kk > 0);
  }
}

// Issues acc[64 x D] += P[64 x BN] . V_tile (wgmma, P from registers, V MN-major in shared memory).
template <typename T, int D, int BN>
__device__ __forceinline__ void issue_pv_wgmma(float (&acc)[D / 8][4], const uint32_t (&a)[BN / 16][4], const T* sV) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk)  // 16 keys = two 8-row groups (1024 bytes each) of every column block
    wgmma_rs<T, D>(acc, a[kk], wgmma_desc(sV + kk * 16 * 64, BN * 128, 1024));
}

template <int N>
__device__ __forceinline__ void pin_fragments(uint32_t (&a)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[j][e])::"memory");
}

// acc[16 x D] += P[16 x BN] . V_tile for one warp (mma.sync).
template <typename T, int D, int BN>
__device__ __forceinline__ void warp_pv(float (&acc)[D / 8][4], const uint32_t (&probs)[BN / 16][4], const T* sV) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    const uint32_t(&a)[4] = probs[kk];
#pragma unroll
    for (int dd = 0; dd < D / 16; ++dd) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, sV + tile_offset<BN>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), dd * 2 + (lane >> 4)));
      MmaOp<T>::run(acc[2 * dd], a, b[0], b[1]);
      MmaOp<T>::run(acc[2 * dd + 1], a, b[2], b[3]);
    }
  }
}

// The four threads of a quad hold columns 2 * quad and 2 * quad + 1 of every 8 of their two rows (the mma
// accumulator layout). Within each group of 32 columns (pairs d = 4m .. 4m + 3) they exchange pairs, a 4 x 4
// transpose in two rounds of swaps, so that pair 4m + s of thread `quad` then holds columns 8 (4m + quad) + 2s and
// + 1: eight consecutive columns per thread, which it stores 16 bytes at a time.
template <int D>
__device__ __forceinline__ void gather_column_runs(float (&acc)[D / 8][4]) {
  const int quad = threadIdx.x & 3;
#pragma unroll
  for (int bit = 2; bit >= 1; bit /= 2) {
    const bool upper = quad & bit;  // keeps the pairs whose slot has this bit, receives the others
#pragma unroll
    for (int d = 0; d < D / 8; ++d) {
      if (d & bit) continue;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float send = upper ? acc[d][e] : acc[d + bit][e];
        const float recv = __shfl_xor_sync(0xffffffffu, send, bit);
        if (upper)
          acc[d][e] = recv;
        else
          acc[d + bit][e] = recv;
      }
    }
  }
}

// Final rows: normalized output (with kSinks, the rows' sinks join the denominator: sink_log2 from load_sinks), or
// for split-K the unnormalized partial with its (max, sum).
template <typename T, int D, bool kSinks>
__device__ __forceinline__ void write_rows(const FlashParams& p, const float (&acc)[D / 8][4], const float (&m)[2],
                                           float (&l)[2], const int (&row_q)[2], const int (&row_head)[2],
                                           bool (&row_valid)[2], const float (&sink_log2)[2]) {
  const int quad = threadIdx.x & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if (!row_valid[r]) continue;
    if (p.n_split > 1) {
      const int64_t row = (static_cast<int64_t>(blockIdx.z) * p.n_q + row_q[r]) * p.n_head + row_head[r];
      float* dst = p.partial_acc + row * D + 2 * quad;
#pragma unroll
      for (int d = 0; d < D / 8; ++d)
        *reinterpret_cast<float2*>(dst + d * 8) = make_float2(acc[d][2 * r], acc[d][2 * r + 1]);
      if (quad == 0) p.partial_ml[row] = make_float2(m[r] == -INFINITY ? -INFINITY : m[r] * p.scale_log2, l[r]);
      continue;
    }
    if constexpr (kSinks) l[r] += sink_term(sink_log2[r], m[r], p.scale_log2);
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;  // no visible key: 0, not NaN
    const int64_t off = row_q[r] * p.o_stride + row_head[r] * D + 2 * quad;
    if (p.o_fp32) {
      float* dst = static_cast<float*>(p.o) + off;
#pragma unroll
      for (int d = 0; d < D / 8; ++d)
        *reinterpret_cast<float2*>(dst + d * 8) = make_float2(acc[d][2 * r] * inv, acc[d][2 * r + 1] * inv);
      if (p.o16) {
#pragma unroll
        for (int d = 0; d < D / 8; ++d)
          *reinterpret_cast<__nv_bfloat162*>(p.o16 + off + d * 8) =
              __floats2bfloat162_rn(acc[d][2 * r] * inv, acc[d][2 * r + 1] * inv);
      }
    } else {
      T* dst = static_cast<T*>(p.o) + off;
#pragma unroll
      for (int d = 0; d < D / 8; ++d)
        *reinterpret_cast<uint32_t*>(dst + d * 8) = MmaOp<T>::pack(acc[d][2 * r] * inv, acc[d][2 * r + 1] * inv);
    }
  }
}

// write_rows for the warp-specialized kernel (prefill): where every row of the warp is a query and the output rows
// are 16-byte aligned, the columns go out 16 bytes at a time (gather_column_runs); otherwise as write_rows. A warp's
// 4-byte stores of column pairs touch 8 rows x 16 bytes each: on the Gemma 3 sliding shape (d 256) the epilogue
// took ~7K cycles per work item, its stores queued with the next item's loads (bench/attention_notes.md #18).
// (The one-kernel path, which decode runs, keeps write_rows: the exchange measured slower there.)
template <typename T, int D, bool kSinks>
__device__ __forceinline__ void write_rows_in_runs(const FlashParams& p, float (&acc)[D / 8][4], const float (&m)[2],
                                                   float (&l)[2], const int (&row_q)[2], const int (&row_head)[2],
                                                   bool (&row_valid)[2], const float (&sink_log2)[2]) {
  const int64_t o_bytes = p.o_fp32 ? 4 : 2;
  const bool runs = p.n_split == 1 &&
                    ((reinterpret_cast<uintptr_t>(p.o) | reinterpret_cast<uintptr_t>(p.o16) |
                      uintptr_t(p.o_stride * (p.o16 ? 2 : o_bytes))) & 15) == 0 &&
                    __all_sync(0xffffffffu, row_valid[0] && row_valid[1]);
  if (!runs) {
    write_rows<T, D, kSinks>(p, acc, m, l, row_q, row_head, row_valid, sink_log2);
    return;
  }
  gather_column_runs<D>(acc);
  const int quad = threadIdx.x & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if constexpr (kSinks) l[r] += sink_term(sink_log2[r], m[r], p.scale_log2);
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;  // no visible key: 0, not NaN
    const int64_t row = row_q[r] * p.o_stride + row_head[r] * D;
#pragma unroll
    for (int m4 = 0; m4 < D / 32; ++m4) {
      float v[8];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        v[2 * s] = acc[4 * m4 + s][2 * r] * inv;
        v[2 * s + 1] = acc[4 * m4 + s][2 * r + 1] * inv;
      }
      const int64_t off = row + 8 * (4 * m4 + quad);
      if (p.o_fp32) {
        float4* dst = reinterpret_cast<float4*>(static_cast<float*>(p.o) + off);
        dst[0] = make_float4(v[0], v[1], v[2], v[3]);
        dst[1] = make_float4(v[4], v[5], v[6], v[7]);
        if (p.o16) {
          using Bf16 = MmaOp<__nv_bfloat16>;
          *reinterpret_cast<uint4*>(p.o16 + off) = make_uint4(Bf16::pack(v[0], v[1]), Bf16::pack(v[2], v[3]),
                                                              Bf16::pack(v[4], v[5]), Bf16::pack(v[6], v[7]));
        }
      } else {
        *reinterpret_cast<uint4*>(static_cast<T*>(p.o) + off) =
            make_uint4(MmaOp<T>::pack(v[0], v[1]), MmaOp<T>::pack(v[2], v[3]), MmaOp<T>::pack(v[4], v[5]),
                       MmaOp<T>::pack(v[6], v[7]));
      }
    }
  }
}

// kSoftcap: the scores are capped (cap_scores); kSinks: the rows' softmax has the heads' sinks (FlashParams::sinks);
// kFresh: a decode from the projection's rows (FlashParams::fresh). Separate instantiations, so kernels without them
// lose nothing (the fresh rows' double-precision angles alone would give every instance a stack frame).
template <typename T, int D, bool kSoftcap, bool kSinks, bool kFresh>
__global__ void __launch_bounds__(FlashConfig<D>::kThreads) flash_attention_kernel(const FlashParams p) {
  using Cfg = FlashConfig<D>;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, NT = Cfg::kThreads;
  constexpr bool kQInRegs = Cfg::kQInRegisters;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  // wgmma's swizzle works on absolute address bits: tiles start 1024-byte aligned.
  T* sQ = reinterpret_cast<T*>(smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023));
  constexpr int S = Cfg::kStages;
  T* sK = sQ + BM * D;          // stage s at sK + s * BN * D
  T* sV = sK + S * BN * D;
  const uint32_t full_bar = smem_addr(sV + S * BN * D), empty_bar = full_bar + 8 * S;  // 8 bytes each
  const uint32_t q_bar = empty_bar + 8 * S;  // Q on its own when the first K/V tiles load before the wait
  float2* cos_sin = reinterpret_cast<float2*>(reinterpret_cast<unsigned char*>(sV + S * BN * D) + 16 * S + 8);

  BlockBounds<BN> b;
  b.init(p);
  const int head_first = blockIdx.x * p.heads_per_block;
  const int kv_head = head_first / p.group;
  const T* k_head = static_cast<const T*>(p.k) + kv_head * D;
  const T* v_head = static_cast<const T*>(p.v) + kv_head * D;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_row0 = warp * 16;
  int row_q[2], row_head[2], row_pos[2];
  bool row_valid[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp_row0 + (lane >> 2) + 8 * r;
    row_q[r] = b.q_first + row / p.heads_per_block;
    row_head[r] = head_first + row % p.heads_per_block;
    row_pos[r] = b.pos_first + row / p.heads_per_block;
    row_valid[r] = row_q[r] <= b.q_last;
  }
  float sink_log2[2];
  load_sinks<kSinks>(sink_log2, p, row_head);
  // Warps (wgmma: warpgroups) whose rows are all padding (small n_q, decode) only help with the loads.
  const int unit_row0 = kWgmmaPath ? (warp & ~3) * 16 : warp_row0;
  const bool active = b.q_first + unit_row0 / p.heads_per_block <= b.q_last;

  if (threadIdx.x == 0) {
    for (int st = 0; st < S; ++st) {
      mbar_init(full_bar + 8 * st, NT);                // one cp.async arrival per thread
      mbar_init(empty_bar + 8 * st, Cfg::kWarps);      // one arrival per warp
    }
    mbar_init(q_bar, NT);
  }
  __syncthreads();  // barriers initialized before anyone arrives

  // Tile i (i-th of this block) goes to stage i % S; its k-th reuse of that stage is mbarrier phase k. Q comes
  // with tile 0, unless tile 0 loads before the wait (q_apart).
  const int n_tiles = b.tile_hi - b.tile_lo + 1;
  auto issue_tile = [&](int i, bool with_q) {
    const int stage = i % S;
    if (i >= S) mbar_wait(empty_bar + 8 * stage, (i / S - 1) & 1);  // every warp is done with tile i - S
    if (with_q) load_q_tile<T, D, BM, NT>(sQ, p, b.q_first, b.q_last, head_first);
    load_kv_tile<T, D, BN, NT>(sK + stage * BN * D, k_head, p.kv_stride, b.tile_lo + i, b, p.capacity);
    load_kv_tile<T, D, BN, NT>(sV + stage * BN * D, v_head, p.kv_stride, b.tile_lo + i, b, p.capacity);
    cp_async_arrive(full_bar + 8 * stage);
  };
  // Settled tiles load before the wait, while every stage is free.
  int issued = 0;
  if (kFresh || p.settled_rows)
    for (; issued < S && issued < n_tiles && b.tile_settled(b.tile_lo + issued); ++issued)
      issue_tile(issued, false);
  const bool q_apart = issued > 0 && !kFresh;
  if constexpr (kFresh) fresh_angles<D>(cos_sin, p.fresh, b.kv_len - 1);
  // Launched overlapped (kernels/common/launch.cuh): q and K/V come from the kernel before, so the block waits for
  // it only here. The bounds above read the device position, which the step uploads before its first kernel starts
  // and no kernel writes: that read and the set-up overlap the kernel before. So do a decode's angles and its
  // loads of cache rows older than its queries, which only earlier steps wrote.
  wait_for_predecessor();
  if constexpr (kFresh) stage_fresh_block<T, D, BM, BN>(p, b, sQ, head_first, cos_sin);
  if (q_apart) {
    load_q_tile<T, D, BM, NT>(sQ, p, b.q_first, b.q_last, head_first);
    cp_async_arrive(q_bar);
  }
  for (; issued < S - 1 && issued < n_tiles; ++issued) issue_tile(issued, issued == 0 && !kFresh);

  uint32_t qf[kQInRegs ? D / 16 : 1][4];
  float acc[D / 8][4];
#pragma unroll
  for (int d = 0; d < D / 8; ++d) acc[d][0] = acc[d][1] = acc[d][2] = acc[d][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int i = 0; i < n_tiles; ++i) {
    if (issued < n_tiles && issued == i + S - 1) issue_tile(issued++, false);  // S - 1 ahead of tile i
    const int stage = i % S, tile = b.tile_lo + i;
    const T* k_tile = sK + stage * BN * D;
    const T* v_tile = sV + stage * BN * D;
    if (i == 0 && q_apart) mbar_wait(q_bar, 0);
    mbar_wait(full_bar + 8 * stage, (i / S) & 1);
    if constexpr (kWgmmaPath) fence_proxy_async();  // cp.async wrote through the generic proxy
    if constexpr (kQInRegs) {
      if (i == 0) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
          ldmatrix_x4(qf[kk], sQ + tile_offset<BM>(warp_row0 + (lane & 15), kk * 2 + (lane >> 4)));
      }
    }
    if (active) {
      float s[BN / 8][4], alpha[2];
      uint32_t probs[BN / 16][4];
      if constexpr (kWgmmaPath) {
        wgmma_fence();
        issue_scores_wgmma<T, D, BM, BN>(s, sQ, k_tile, unit_row0);
        wgmma_commit();
        wgmma_wait<0>();
        pin_registers(s);
      } else {
        warp_scores<T, D, BM, BN, kQInRegs>(s, qf, sQ, k_tile, warp_row0);
      }
      if constexpr (kSoftcap) cap_scores<BN>(s, p.cap_exp2, p.cap_log2);
      if (b.tile_needs_mask(tile)) mask_scores<BN>(s, b, tile, row_pos);
      online_softmax<BN>(s, m, l, alpha, p.scale_log2);
      rescale_rows<D>(acc, alpha);
      pack_probs<T, BN>(probs, s);
      if constexpr (kWgmmaPath) {
        pin_fragments(probs);
        pin_registers(acc);
        wgmma_fence();
        issue_pv_wgmma<T, D, BN>(acc, probs, v_tile);
        wgmma_commit();
        wgmma_wait<0>();
        pin_registers(acc);
      } else {
        warp_pv<T, D, BN>(acc, probs, v_tile);
      }
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(empty_bar + 8 * stage);  // this warp is done with K(i) and V(i)
  }
  write_rows<T, D, kSinks>(p, acc, m, l, row_q, row_head, row_valid, sink_log2);
}

// Merges split-K partials: O = sum_s exp2(m_s - M) acc_s / sum_s exp2(m_s - M) l_s; with kSinks the head's sink joins
// M and adds exp2(sink - M) to the denominator, once per row (the partials carry none). Block (query x head,
// slice of kCombineCols dims): the splits' weights exp2(m_s - M) go to shared memory once, then the threads,
// kCombineCols / 4 float4 columns x kCombineGroups split groups, sum their splits' slices (group g takes splits g,
// g + kCombineGroups, ...; the loads of one thread are independent, so several are in flight), and the groups'
// sums meet in shared memory in group order. A decode step at depth has up to a wave of splits (132 on an H200):
// one thread walking them all in turn, a load each, was the step's longest kernel at 32K keys.
constexpr int kCombineThreads = 256, kCombineCols = 64, kCombineLanes = kCombineCols / 4;
constexpr int kCombineGroups = kCombineThreads / kCombineLanes;
constexpr int kMaxSplits = 1024;  // decode_splits' cap

template <typename T, int D, bool kSinks>
__global__ void __launch_bounds__(kCombineThreads) combine_splits_kernel(const FlashParams p) {
  static_assert(D % kCombineCols == 0, "whole column slices");
  __shared__ float weight[kMaxSplits];
  __shared__ float4 group_sum[kCombineGroups][kCombineLanes];
  __shared__ float reduce[kCombineThreads / 32];
  float sink_log2 = 0.f;
  if constexpr (kSinks) sink_log2 = __ldg(p.sinks + blockIdx.x % p.n_head) * kLog2e;  // a weight: before the wait
  wait_for_predecessor();
  const int64_t qh = blockIdx.x;  // query * n_head + head
  const int col0 = blockIdx.y * kCombineCols;
  const int64_t split_stride = static_cast<int64_t>(p.n_q) * p.n_head;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  auto block_reduce = [&](float v, bool is_max) {
    for (int o = 16; o > 0; o /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = is_max ? fmaxf(v, other) : v + other;
    }
    __syncthreads();  // an earlier reduction's readers are done with `reduce`
    if (lane == 0) reduce[warp] = v;
    __syncthreads();
    v = reduce[0];
    for (int w = 1; w < kCombineThreads / 32; ++w) v = is_max ? fmaxf(v, reduce[w]) : v + reduce[w];
    return v;
  };
  float mx = -INFINITY;
  for (int s = tid; s < p.n_split; s += kCombineThreads) mx = fmaxf(mx, p.partial_ml[s * split_stride + qh].x);
  mx = block_reduce(mx, true);
  if constexpr (kSinks) mx = fmaxf(mx, sink_log2);
  float total = 0.f;
  for (int s = tid; s < p.n_split; s += kCombineThreads) {
    const float2 ml = p.partial_ml[s * split_stride + qh];
    const float w = ml.x == -INFINITY ? 0.f : exp2f(ml.x - mx);  // an empty split weighs nothing
    weight[s] = w;
    total += w * ml.y;
  }
  total = block_reduce(total, false);  // its barriers also publish weight[]
  if constexpr (kSinks) total += exp2f(sink_log2 - mx);
  const int col = tid % kCombineLanes, group = tid / kCombineLanes;
  float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
  for (int s = group; s < p.n_split; s += kCombineGroups) {
    const float4 v = reinterpret_cast<const float4*>(p.partial_acc + (s * split_stride + qh) * D + col0)[col];
    const float w = weight[s];
    if (w != 0.f)  // every split writes its partial (zeros when empty), but 0 * inf would not be 0
      sum = make_float4(fmaf(w, v.x, sum.x), fmaf(w, v.y, sum.y), fmaf(w, v.z, sum.z), fmaf(w, v.w, sum.w));
  }
  group_sum[group][col] = sum;
  __syncthreads();
  if (tid >= kCombineLanes) return;
  float4 o = group_sum[0][col];
  for (int g = 1; g < kCombineGroups; ++g) {
    const float4 v = group_sum[g][col];
    o = make_float4(o.x + v.x, o.y + v.y, o.z + v.z, o.w + v.w);
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;
  o = make_float4(o.x * inv, o.y * inv, o.z * inv, o.w * inv);
  const int64_t q = qh / p.n_head, head = qh % p.n_head;
  const int64_t off = q * p.o_stride + head * D + col0 + 4 * col;
  if (p.o_fp32) {
    float* dst = static_cast<float*>(p.o) + off;  // o_stride and head * D are even: 8-byte aligned pairs
    reinterpret_cast<float2*>(dst)[0] = make_float2(o.x, o.y);
    reinterpret_cast<float2*>(dst)[1] = make_float2(o.z, o.w);
    if (p.o16) {
      reinterpret_cast<__nv_bfloat162*>(p.o16 + off)[0] = __floats2bfloat162_rn(o.x, o.y);
      reinterpret_cast<__nv_bfloat162*>(p.o16 + off)[1] = __floats2bfloat162_rn(o.z, o.w);
    }
  } else {
    T* dst = static_cast<T*>(p.o) + off;
    reinterpret_cast<uint32_t*>(dst)[0] = MmaOp<T>::pack(o.x, o.y);
    reinterpret_cast<uint32_t*>(dst)[1] = MmaOp<T>::pack(o.z, o.w);
  }
}

// Host-side launchers, instantiated per element type in flash_instances_*.cu.
template <typename T, int D, bool kSoftcap, bool kSinks>
void launch_flash(const FlashParams& p, dim3 grid, cudaStream_t stream);
template <typename T, int D, bool kSinks> void launch_combine(const FlashParams& p, cudaStream_t stream);

}  // namespace swrun::cuda::attn
