// Launchers of the flash kernels, defined once and instantiated per element type, softcapping and sinks by
// flash_instances_*.cu (one file per combination so the instantiations compile in parallel).
#pragma once
#include "kernels/attention/flash_kernel.cuh"
#include "kernels/attention/flash_kernel_ws.cuh"
#include "kernels/common/cuda_check.h"
#include "kernels/common/launch.cuh"

namespace swrun::cuda::attn {

template <typename T, int D, bool kSoftcap, bool kSinks, bool kFresh>
void launch_flash_instance(const FlashParams& p, dim3 grid, cudaStream_t stream) {
  using Cfg = FlashConfig<D>;
  constexpr auto kernel = flash_attention_kernel<T, D, kSoftcap, kSinks, kFresh>;
  // Above 48 KiB a kernel must opt in to dynamic shared memory; once per instantiation is enough.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
  check_cuda(opt_in, "flash_attention: shared memory opt-in");
  launch_overlapped_smem(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes, stream, "flash_attention_kernel", p);
}

template <typename T, int D, bool kSoftcap, bool kSinks>
void launch_flash(const FlashParams& p, dim3 grid, cudaStream_t stream) {
  if (p.fresh.q)
    launch_flash_instance<T, D, kSoftcap, kSinks, true>(p, grid, stream);
  else
    launch_flash_instance<T, D, kSoftcap, kSinks, false>(p, grid, stream);
}

template <typename T, int D, bool kSoftcap, bool kSinks, bool kPersistent>
void launch_flash_ws_grid(const FlashParams& p, const WsMaps& maps, dim3 grid, cudaStream_t stream) {
  using Cfg = WsConfig<D>;
  constexpr auto kernel = flash_attention_ws_kernel<T, D, kSoftcap, kSinks, kPersistent>;
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
  check_cuda(opt_in, "flash_attention: shared memory opt-in (warp-specialized)");
  launch_overlapped_smem(kernel, grid, WsConfig<D>::kThreads, Cfg::kSmemBytes, stream, "flash_attention_ws_kernel", p,
                         maps);
}

template <typename T, int D, bool kSoftcap, bool kSinks>
void launch_flash_ws(const FlashParams& p, const WsMaps& maps, dim3 grid, cudaStream_t stream) {
  if (p.persistent)
    launch_flash_ws_grid<T, D, kSoftcap, kSinks, true>(p, maps, grid, stream);
  else
    launch_flash_ws_grid<T, D, kSoftcap, kSinks, false>(p, maps, grid, stream);
}

template <typename T, int D, bool kSinks>
void launch_combine(const FlashParams& p, cudaStream_t stream) {
  launch_overlapped(combine_splits_kernel<T, D, kSinks>,
                    dim3(static_cast<unsigned>(static_cast<int64_t>(p.n_q) * p.n_head), D / kCombineCols),
                    kCombineThreads, stream, "flash_attention_decode combine", p);
}

}  // namespace swrun::cuda::attn

// Explicit instantiations of every launcher flash_attention.cu dispatches to, for element type T with or without
// softcapping and sinks. The split-K combine does not depend on softcapping: the softcap = false files instantiate it.
#define SWRUN_INSTANTIATE_FLASH_KERNELS(T, SOFTCAP, SINKS)                                                  \
  namespace swrun::cuda::attn {                                                                             \
  template void launch_flash<T, 64, SOFTCAP, SINKS>(const FlashParams&, dim3, cudaStream_t);                \
  template void launch_flash<T, 128, SOFTCAP, SINKS>(const FlashParams&, dim3, cudaStream_t);               \
  template void launch_flash<T, 256, SOFTCAP, SINKS>(const FlashParams&, dim3, cudaStream_t);               \
  template void launch_flash_ws<T, 64, SOFTCAP, SINKS>(const FlashParams&, const WsMaps&, dim3, cudaStream_t);  \
  template void launch_flash_ws<T, 128, SOFTCAP, SINKS>(const FlashParams&, const WsMaps&, dim3, cudaStream_t); \
  template void launch_flash_ws<T, 256, SOFTCAP, SINKS>(const FlashParams&, const WsMaps&, dim3, cudaStream_t); \
  }
#define SWRUN_INSTANTIATE_FLASH_COMBINE(T, SINKS)                                                \
  namespace swrun::cuda::attn {                                                                  \
  template void launch_combine<T, 64, SINKS>(const FlashParams&, cudaStream_t);                  \
  template void launch_combine<T, 128, SINKS>(const FlashParams&, cudaStream_t);                 \
  template void launch_combine<T, 256, SINKS>(const FlashParams&, cudaStream_t);                 \
  }
