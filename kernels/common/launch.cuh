// Programmatic dependent launch (Hopper): a decode step is hundreds of tiny dependent kernels, each costing a
// launch latency of a few microseconds on top of its microsecond of work. Launched with programmatic stream
// serialization, a kernel is scheduled while its predecessor still runs and waits on the device
// (griddepcontrol.wait) for the predecessor's completion and memory, so the launch latency overlaps the
// predecessor instead of following it. Graph capture keeps these as programmatic edges.
//
// Every kernel launched through launch_overlapped must call wait_for_predecessor() before it touches memory that
// an earlier kernel writes, and it lets its own successor launch at that point.
#pragma once
#include <utility>

#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"

namespace swrun::cuda {

__device__ __forceinline__ void wait_for_predecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
#endif
}

// With `smem_bytes` of dynamic shared memory (the kernel must have opted in above 48 KiB).
template <typename... Params, typename... Args>
void launch_overlapped_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                            const char* what, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  check_cuda(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), what);
}

template <typename... Params, typename... Args>
void launch_overlapped(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, const char* what,
                       Args&&... args) {
  launch_overlapped_smem(kernel, grid, block, 0, stream, what, std::forward<Args>(args)...);
}

}  // namespace swrun::cuda
