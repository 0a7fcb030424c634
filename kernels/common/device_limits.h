// What the current device holds at once, for grid sizes: its SM count (queried once) and how many blocks of a
// kernel are resident on all of it.
#pragma once
#include <algorithm>
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"

namespace swrun::cuda {

inline int sm_count() {
  static const int sms = [] {
    int device = 0, n = 0;
    check_cuda(cudaGetDevice(&device), "cudaGetDevice");
    check_cuda(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "SM count");
    return n;
  }();
  return sms;
}

// Blocks of `kernel` (at `threads` per block, no dynamic shared memory) resident on the whole device at once.
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int threads, const char* what) {
  int per_sm = 0;
  check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0), what);
  return int64_t(sm_count()) * std::max(per_sm, 1);
}

}  // namespace swrun::cuda
