// Hopper bulk copies (cp.async.bulk, the TMA engine without a tensor map): one thread moves a contiguous run of
// global memory into shared memory, and an mbarrier counts the bytes as they land. Consumers wait on the
// mbarrier's phase (attn::mbar_wait in kernels/attention/mma_sm80.cuh).
#pragma once
#include <cstdint>

namespace swrun::cuda {

// Makes initialized mbarriers visible to the copy engine; the block synchronizes after it.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// Arms the mbarrier at shared address `bar` for a copy of `bytes` (one arrival of the one expected).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}

// Copies `bytes` (a multiple of 16; both addresses 16-byte aligned) from src to the shared address dst and
// completes them on `bar`.
__device__ __forceinline__ void bulk_copy_to_shared(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}

// Copies box (c0, c1, c2) of the 3-D tensor that `tensor_map` (a __grid_constant__ kernel parameter's address)
// describes to the shared address dst, laid out and swizzled as the map says, and completes it on `bar`; elements
// outside the tensor arrive as zeros (and count as bytes).
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* tensor_map, int c0, int c1, int c2,
                                            uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(dst),
      "l"(tensor_map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

}  // namespace swrun::cuda
