// Checked cuBLAS calls, reported like the CUDA ones (kernels/common/cuda_check.h).
#pragma once
#include <string>

#include <cublas_v2.h>

#include "runtime/common.h"

namespace swrun::cuda {

inline void check_cublas(cublasStatus_t status, const char* op) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail(std::string("cuBLAS error in ") + op + ": " + cublasGetStatusString(status));
}

}  // namespace swrun::cuda
