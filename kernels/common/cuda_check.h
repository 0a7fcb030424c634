// Checked CUDA calls: every runtime call and kernel launch goes through these, so a failure surfaces as one
// swrun::Error naming the operation instead of a silent wrong result later.
#pragma once
#include <string>

#include <cuda_runtime.h>

#include "runtime/common.h"

namespace swrun::cuda {

inline void check_cuda(cudaError_t status, const char* op) {
  if (status != cudaSuccess) fail(std::string("CUDA error in ") + op + ": " + cudaGetErrorString(status));
}

// After a <<<...>>> launch: reports bad launch configurations (and earlier asynchronous faults) by op name.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

// Blocks of `threads` covering `work` items, for 1-D grids.
inline unsigned grid_for(size_t work, unsigned threads) {
  return static_cast<unsigned>((work + threads - 1) / threads);
}

}  // namespace swrun::cuda
