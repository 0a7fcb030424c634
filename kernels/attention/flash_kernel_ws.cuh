// Warp-specialized flash kernel (sm_90a only; head_dim 128, and 256 / 64 when FlashAttnArgs::ws_d256 / ws_d64
// asks for it, variants 14b / 15): warpgroup 0 only loads, refilling the K and V stages with cp.async as soon as the
// consumers release them, and gives its registers to the two consumer warpgroups (setmaxnreg). Each consumer
// overlaps its own softmax with its own MMAs (FlashAttention-3 order: S(i) = Q.K(i) and O += P(i-1).V(i-1) are
// issued together, the softmax of S(i) runs while P.V is in flight), and the two consumers take turns issuing
// their MMAs (ping-pong). Block bounds, tile loads, mask, softmax and epilogue are the ones of flash_kernel.cuh.
// Measured against the one-kernel path: bench/attention_notes.md #12-#15.
#pragma once
#include <cuda.h>

#include "kernels/attention/flash_kernel.cuh"
#include "kernels/common/bulk_copy.cuh"

namespace swrun::cuda::attn {

// Tile shape per head_dim: at 128 and 256 the one-kernel path's (two warpgroups of 64 rows there too). At 64 the
// one-kernel path runs one warpgroup against 64-key tiles so that three blocks share an SM; here the register
// split allows one block per SM, so each block is two warpgroups against 128-key tiles (variant 15): a key tile's
// fixed costs (barrier waits, row max and sum shuffles, the O rescale, the ping-pong hand-over) are paid per 128
// keys, and the consumers hold O (32 registers), S (64) and P (32) with room to spare under 224. 256-key tiles
// would need S at 128 registers plus P at 64; FlashAttention-3's 192-row tiles would need a third consumer
// warpgroup, which the two-way ping-pong does not have. 4 stages (144 KiB): shared memory is not what limits the
// blocks per SM here, and three tiles in flight cover ~1.5 us of L2 latency at the MMA rate of a 128-key tile.
template <int D> struct WsTile : FlashTile<D> {};
template <> struct WsTile<64> { static constexpr int kWarps = 8, kBlockN = 128, kStages = 4; };

template <int D> struct WsConfig {
  static constexpr int kConsumerWarps = WsTile<D>::kWarps;
  static constexpr int kBlockM = 16 * kConsumerWarps;
  static constexpr int kBlockN = WsTile<D>::kBlockN;
  static constexpr int kStages = WsTile<D>::kStages;
  static constexpr int kProducerThreads = 128;
  static constexpr int kThreads = kProducerThreads + 32 * kConsumerWarps;
  // The register file (64K) split by role: the producer only computes addresses.
  static constexpr int kProducerRegs = 56, kConsumerRegs = 224;
  static_assert(kConsumerWarps == 8, "ping-pong between two consumer warpgroups");
  static_assert(kProducerRegs * kProducerThreads + kConsumerRegs * 32 * kConsumerWarps <= 65536);
  // Q, the K and V stages, four mbarriers per stage (K full/empty, V full/empty) and two for Q (full/empty),
  // 1024-byte alignment slack.
  static constexpr int kSmemBytes = (kBlockM + 2 * kStages * kBlockN) * D * 2 + (4 * kStages + 2) * 8 + 1024;
};

// A work item: the block of the plain grid (head group blockIdx.x, query tile blockIdx.y, split blockIdx.z), or
// on the persistent grid item w of the list, heaviest causal tiles first.
struct WsItem {
  int head_first, q_tile, split;
};
template <bool kPersistent>
__device__ __forceinline__ WsItem ws_item(const FlashParams& p, int w) {
  if (!kPersistent) return {int(blockIdx.x) * p.heads_per_block, int(gridDim.y - 1 - blockIdx.y), int(blockIdx.z)};
  const int head_blocks = p.n_head / p.heads_per_block;
  const int q_tiles = (p.n_q + p.queries_per_block - 1) / p.queries_per_block;
  return {w % head_blocks * p.heads_per_block, q_tiles - 1 - w / head_blocks, 0};
}

// The TMA's tensor maps (FlashParams::tma): Q (column, head, position; box = one 64-column block of a block's
// rows) and the K and V caches (column, KV head, ring slot; box = one 64-column block of a key tile), all with the
// 128-byte swizzle, so that tiles land as wgmma reads them.
struct WsMaps {
  CUtensorMap q, k, v;
};

// kPersistent (FlashParams::persistent, variant 16): a separate instantiation, so the plain grid's kernel keeps its
// registers (the item loop costs the d 256 consumers spills). maps: a kernel parameter of its own so that the TMA can
// read the maps there (the other kernels' FlashParams stay as they were). kSinks as flash_attention_kernel's: the
// sinks load in the epilogue, where registers are no longer scarce (a prefill item has many key tiles to hide it).
template <typename T, int D, bool kSoftcap, bool kSinks, bool kPersistent>
__global__ void __launch_bounds__(WsConfig<D>::kThreads, 1)
    flash_attention_ws_kernel(const FlashParams p, const __grid_constant__ WsMaps maps) {
  // Only sm_90a machine code has a body; the host launches this kernel only on compute capability 9.0.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(SWRUN_ATTN_MMA_SYNC_ONLY)
  wait_for_predecessor();  // launched overlapped, as flash_attention_kernel
  using Cfg = WsConfig<D>;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, S = Cfg::kStages, NP = Cfg::kProducerThreads;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023));
  T* sK = sQ + BM * D;  // stage s at sK + s * BN * D
  T* sV = sK + S * BN * D;
  const uint32_t full_k = smem_addr(sV + S * BN * D), full_v = full_k + 8 * S;  // 8 bytes per barrier
  const uint32_t empty_k = full_v + 8 * S, empty_v = empty_k + 8 * S;
  const uint32_t q_full = empty_v + 8 * S, q_empty = q_full + 8;  // the Q tile, one work item after another

  // Work items: one per block, or with kPersistent (variant 16) items blockIdx.x, + gridDim.x, ... A persistent
  // block's producer loads the next item's Q as soon as the consumers' last Q.K of the current one is done, and
  // its first K/V tiles into the stages the current item frees, so an item's prologue overlaps the previous item's
  // last products and its epilogue. Tile counters run on across items (stage g % S, phase g / S).
  const int n_items = kPersistent ? (p.n_head / p.heads_per_block) *
                                        ((p.n_q + p.queries_per_block - 1) / p.queries_per_block)
                                  : 1;
  const int first_item = kPersistent ? int(blockIdx.x) : 0, item_stride = kPersistent ? int(gridDim.x) : 1;
  // Consumer warpgroups whose rows are all padding (small n_q, decode) skip the loop, so the "empty"
  // barriers count only the warps that compute; a persistent grid's items are prefill tiles, where every group
  // computes (padding rows are zero and never written).
  const WsItem first_work = ws_item<kPersistent>(p, first_item);
  BlockBounds<BN> first;
  first.init(p, first_work.q_tile, first_work.split);
  auto group_active = [&](const BlockBounds<BN>& b, int group) {
    return kPersistent || b.q_first + group * 64 / p.heads_per_block <= b.q_last;
  };
  int active_warps = 0;
#pragma unroll
  for (int g = 0; g < Cfg::kConsumerWarps / 4; ++g) active_warps += group_active(first, g) ? 4 : 0;

  if (threadIdx.x == 0) {
    for (int st = 0; st < S; ++st) {
      mbar_init(full_k + 8 * st, NP);  // one cp.async arrival per producer thread
      mbar_init(full_v + 8 * st, NP);
      mbar_init(empty_k + 8 * st, active_warps);  // one arrival per computing warp
      mbar_init(empty_v + 8 * st, active_warps);
    }
    mbar_init(q_full, p.tma ? 1 : NP);  // the TMA: one arrival that expects the tile's bytes
    mbar_init(q_empty, active_warps);
  }
  __syncthreads();  // barriers initialized before anyone arrives

  if (threadIdx.x < NP) {
    setmaxnreg_dec<Cfg::kProducerRegs>();
    // Tile g goes to stage g % S; its k-th reuse of that stage is mbarrier phase k. K and V have their own
    // barriers so K(g) can be refilled once S(g - S) is done, before P.V(g - S) is.
    int g = 0;
    for (int w = first_item, k = 0; w < n_items; w += item_stride, ++k) {
      const WsItem item = ws_item<kPersistent>(p, w);
      BlockBounds<BN> b;
      b.init(p, item.q_tile, item.split);
      const int kv_head = item.head_first / p.group;
      const T* k_head = static_cast<const T*>(p.k) + kv_head * D;
      const T* v_head = static_cast<const T*>(p.v) + kv_head * D;
      if (k > 0) mbar_wait(q_empty, (k - 1) & 1);  // the consumers' last Q.K of the item before is done
      if (p.tma) {
        // One thread and D / 64 instructions where the producer's cp.async spent ~12K cycles on the Gemma 3
        // sliding shape (bench/attention_notes.md #18); positions past the last query arrive as zeros.
        if (threadIdx.x == 0) {
          mbar_arrive_expect_tx(q_full, BM * D * sizeof(T));
#pragma unroll
          for (int c = 0; c < D / 64; ++c)
            tma_load_3d(smem_addr(sQ + c * BM * 64), &maps.q, c * 64, item.head_first, b.q_first, q_full);
        }
      } else {
        load_q_tile<T, D, BM, NP>(sQ, p, b.q_first, b.q_last, item.head_first);
        cp_async_arrive(q_full);
      }
      // A key tile wholly inside the keys present and in consecutive ring slots comes through the TMA (thread 0
      // arrives expecting its bytes, the others plainly); the edge tiles, whose rows outside the window must be
      // zeros and not stale ring rows, and tiles across the ring's end through the threads' cp.async.
      auto load_tile = [&](T* dst, const T* head, const CUtensorMap* map, uint32_t full, int tile) {
        const int slot_first = tile * BN % p.capacity;
        if (p.tma && tile * BN >= b.key_lo && tile * BN + BN - 1 <= b.key_hi && slot_first + BN <= p.capacity) {
          if (threadIdx.x == 0) {
            mbar_arrive_expect_tx(full, BN * D * sizeof(T));
#pragma unroll
            for (int c = 0; c < D / 64; ++c)
              tma_load_3d(smem_addr(dst + c * BN * 64), map, c * 64, kv_head, slot_first, full);
          } else {
            mbar_arrive(full);
          }
        } else {
          load_kv_tile<T, D, BN, NP>(dst, head, p.kv_stride, tile, b, p.capacity);
          cp_async_arrive(full);
        }
      };
      for (int i = 0; i < b.tile_hi - b.tile_lo + 1; ++i, ++g) {
        const int stage = g % S;
        const uint32_t reuse_phase = (g / S - 1) & 1;
        if (g >= S) mbar_wait(empty_k + 8 * stage, reuse_phase);
        load_tile(sK + stage * BN * D, k_head, &maps.k, full_k + 8 * stage, b.tile_lo + i);
        if (g >= S) mbar_wait(empty_v + 8 * stage, reuse_phase);
        load_tile(sV + stage * BN * D, v_head, &maps.v, full_v + 8 * stage, b.tile_lo + i);
      }
    }
    cp_async_wait_all();  // no copy outlives its issuing thread
  } else {
    setmaxnreg_inc<Cfg::kConsumerRegs>();
    const int warp = (threadIdx.x - NP) >> 5, lane = threadIdx.x & 31;
    const int warp_row0 = warp * 16, group_row0 = (warp & ~3) * 16;
    const int group = group_row0 / 64;
    // Ping-pong (both groups computing): the groups take turns issuing their products (named barriers 1 and
    // 2), so one group's softmax runs under the other's MMAs. A group's turns in an item: Q.K(0), then Q.K(i)
    // with P.V(i-1), then P.V(last); group 1 gives group 0 the first turn and keeps its own last one.
    const bool pingpong = active_warps == Cfg::kConsumerWarps;
    auto take_turn = [&] {
      if (pingpong) named_bar_sync(1 + group, 256);
    };
    auto pass_turn = [&](bool last) {
      if (pingpong && !(last && group == 1)) named_bar_arrive(1 + (group ^ 1), 256);
    };
    auto arrive = [&](uint32_t bar) {
      __syncwarp();
      if (lane == 0) mbar_arrive(bar);
    };
    int g0 = 0;  // the item's first tile in the block's count
    for (int k = 0; first_item + k * item_stride < n_items; ++k) {
      const WsItem item = ws_item<kPersistent>(p, first_item + k * item_stride);
      BlockBounds<BN> b;
      b.init(p, item.q_tile, item.split);
      const int n_tiles = b.tile_hi - b.tile_lo + 1;
      auto row_of = [&](int r) { return warp_row0 + (lane >> 2) + 8 * r; };  // this thread's two rows
      int row_pos[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) row_pos[r] = b.pos_first + row_of(r) / p.heads_per_block;
      float acc[D / 8][4];
#pragma unroll
      for (int d = 0; d < D / 8; ++d) acc[d][0] = acc[d][1] = acc[d][2] = acc[d][3] = 0.f;
      float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

      auto wait_full = [&](uint32_t bars, int i) {
        mbar_wait(bars + 8 * ((g0 + i) % S), ((g0 + i) / S) & 1);
        fence_proxy_async();  // cp.async wrote through the generic proxy, wgmma reads through the async one
      };
      auto release = [&](uint32_t bars, int i) { arrive(bars + 8 * ((g0 + i) % S)); };
      // K(i) is free once S(i) is done; after the item's last S, so is Q.
      auto release_k = [&](int i) {
        release(empty_k, i);
        if (i == n_tiles - 1) arrive(q_empty);
      };
      auto k_tile = [&](int i) { return sK + ((g0 + i) % S) * BN * D; };
      auto v_tile = [&](int i) { return sV + ((g0 + i) % S) * BN * D; };
      auto softmax_tile = [&](float (&s)[BN / 8][4], float (&alpha)[2], int i) {
        const int tile = b.tile_lo + i;
        if constexpr (kSoftcap) cap_scores<BN>(s, p.cap_exp2, p.cap_log2);
        if (b.tile_needs_mask(tile)) mask_scores<BN>(s, b, tile, row_pos);
        online_softmax<BN>(s, m, l, alpha, p.scale_log2);
      };

      if (group_active(b, group) && n_tiles > 0) {
        if (pingpong && group == 1) named_bar_arrive(1, 256);
        float s[BN / 8][4], alpha[2];
        uint32_t probs[BN / 16][4];
        mbar_wait(q_full, k & 1);
        wait_full(full_k, 0);
        take_turn();
        wgmma_fence();
        issue_scores_wgmma<T, D, BM, BN>(s, sQ, k_tile(0), group_row0);
        wgmma_commit();
        pass_turn(false);
        wgmma_wait<0>();
        pin_registers(s);
        release_k(0);
        softmax_tile(s, alpha, 0);
        pack_probs<T, BN>(probs, s);
        // Invariant at the top of iteration i: probs = P(i-1), acc lacks P(i-1).V(i-1) and alpha(i-1).
        for (int i = 1; i < n_tiles; ++i) {
          wait_full(full_k, i);
          wait_full(full_v, i - 1);
          take_turn();
          wgmma_fence();
          issue_scores_wgmma<T, D, BM, BN>(s, sQ, k_tile(i), group_row0);
          wgmma_commit();
          rescale_rows<D>(acc, alpha);  // under Q.K(i)
          pin_fragments(probs);
          pin_registers(acc);
          wgmma_fence();
          issue_pv_wgmma<T, D, BN>(acc, probs, v_tile(i - 1));
          wgmma_commit();
          pass_turn(false);
          wgmma_wait<1>();  // S(i) done, P.V(i-1) may still run
          pin_registers(s);
          release_k(i);
          softmax_tile(s, alpha, i);
          wgmma_wait<0>();
          pin_registers(acc);
          pin_fragments(probs);
          release(empty_v, i - 1);
          pack_probs<T, BN>(probs, s);
        }
        rescale_rows<D>(acc, alpha);
        wait_full(full_v, n_tiles - 1);
        pin_fragments(probs);
        pin_registers(acc);
        take_turn();
        wgmma_fence();
        issue_pv_wgmma<T, D, BN>(acc, probs, v_tile(n_tiles - 1));
        wgmma_commit();
        pass_turn(true);
        wgmma_wait<0>();
        pin_registers(acc);
        release(empty_v, n_tiles - 1);
      }
      int row_q[2], row_head[2];  // formed only now: registers are scarcest in the loop above
      bool row_valid[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        row_q[r] = b.q_first + row_of(r) / p.heads_per_block;
        row_head[r] = item.head_first + row_of(r) % p.heads_per_block;
        row_valid[r] = row_q[r] <= b.q_last;
      }
      float sink_log2[2];
      load_sinks<kSinks>(sink_log2, p, row_head);
      write_rows_in_runs<T, D, kSinks>(p, acc, m, l, row_q, row_head, row_valid, sink_log2);
      g0 += n_tiles;
    }
  }
#endif
}

template <typename T, int D, bool kSoftcap, bool kSinks>
void launch_flash_ws(const FlashParams& p, const WsMaps& maps, dim3 grid, cudaStream_t stream);

}  // namespace swrun::cuda::attn
