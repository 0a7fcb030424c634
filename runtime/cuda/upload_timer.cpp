#include "runtime/cuda/upload_timer.h"

#include <map>

#include "kernels/common/cuda_check.h"
#include "runtime/common.h"

namespace swrun::cuda {

UploadTimer::~UploadTimer() { release_events(); }

cudaEvent_t UploadTimer::record(cudaStream_t stream) {
  cudaEvent_t e = nullptr;
  check_cuda(cudaEventCreate(&e), "cudaEventCreate (upload timing)");
  check_cuda(cudaEventRecord(e, stream), "cudaEventRecord (upload timing)");
  return e;
}

void UploadTimer::begin(cudaStream_t stream) {
  if (!active()) return;
  tensors_.push_back({});
  tensors_.back().start = record(stream);
}

void UploadTimer::copied(cudaStream_t stream, size_t bytes) {
  if (!active() || tensors_.empty()) return;
  tensors_.back().copy_end = record(stream);
  tensors_.back().bytes = bytes;
}

void UploadTimer::converted(cudaStream_t stream, const std::string& what) {
  if (!active() || tensors_.empty()) return;
  tensors_.back().convert_end = record(stream);
  tensors_.back().conversion = what;
}

static double elapsed_ms(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  check_cuda(cudaEventElapsedTime(&ms, from, to), "cudaEventElapsedTime (upload timing)");
  return ms;
}

void UploadTimer::report(const std::string& copy_path) {
  if (!active()) return;
  double copy_ms = 0;
  size_t copy_bytes = 0;
  struct Conversion {
    double ms = 0;
    int tensors = 0;
  };
  std::map<std::string, Conversion> conversions;
  for (const Tensor& t : tensors_) {
    if (!t.copy_end) continue;
    copy_ms += elapsed_ms(t.start, t.copy_end);
    copy_bytes += t.bytes;
    if (t.convert_end) {
      Conversion& c = conversions[t.conversion];
      c.ms += elapsed_ms(t.copy_end, t.convert_end);
      ++c.tensors;
    }
  }
  char detail[160];
  std::snprintf(detail, sizeof detail, "%zu cudaMalloc, %s", allocs_, human_bytes(double(alloc_bytes_)).c_str());
  log_->add_sub("device allocations", alloc_ms_, detail);
  const double mb = double(copy_bytes) / 1e6;
  std::snprintf(detail, sizeof detail, "%.1f MB, %.0f MB/s, %zu tensors, %s (GPU time)", mb,
                copy_ms > 0 ? mb / (copy_ms / 1e3) : 0.0, tensors_.size(), copy_path.c_str());
  log_->add_sub("copy to device", copy_ms, detail);
  for (const auto& [what, c] : conversions) {
    std::snprintf(detail, sizeof detail, "%d tensors (GPU time)", c.tensors);
    log_->add_sub(what, c.ms, detail);
  }
  release_events();
  tensors_.clear();
  alloc_ms_ = 0;
  alloc_bytes_ = allocs_ = 0;
}

void UploadTimer::release_events() {
  for (const Tensor& t : tensors_)
    for (cudaEvent_t e : {t.start, t.copy_end, t.convert_end})
      if (e) cudaEventDestroy(e);
}

}  // namespace swrun::cuda
