#include "runtime/cuda/range_timer.h"

#include <algorithm>

#include "kernels/common/cuda_check.h"
#include "runtime/common.h"
#include "runtime/profile.h"

namespace swrun::cuda {

RangeTimer::~RangeTimer() {
  for (const Range& r : ranges_) {
    cudaEventDestroy(r.start);
    if (r.end) cudaEventDestroy(r.end);
  }
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
}

void RangeTimer::attach(Profiler* profiler) {
  drop_pending();
  profiler_ = profiler;
}

void RangeTimer::drop_pending() {
  // Re-recording an event the GPU has not reached yet is legal, so the events can go back to the pool at once.
  for (const Range& r : ranges_) {
    free_events_.push_back(r.start);
    if (r.end) free_events_.push_back(r.end);
  }
  ranges_.clear();
  std::fill(open_.begin(), open_.end(), kUntimed);
}

cudaEvent_t RangeTimer::acquire() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  check_cuda(cudaEventCreate(&e), "profiler event");
  return e;
}

void RangeTimer::push(const char* name, int layer, OpKind op, bool timed, cudaStream_t stream) {
  if (!timed || !profiler_) {
    open_.push_back(kUntimed);
    return;
  }
  int parent = kUntimed;
  for (auto it = open_.rbegin(); it != open_.rend() && parent == kUntimed; ++it) parent = *it;
  cudaEvent_t start = acquire();
  check_cuda(cudaEventRecord(start, stream), "profiler event record");
  ranges_.push_back({name, layer, op, parent, start, nullptr, 0.0});
  open_.push_back(static_cast<int>(ranges_.size()) - 1);
}

void RangeTimer::pop(cudaStream_t stream) {
  if (open_.empty()) fail("profiler: pop_range without a matching push_range");
  const int index = open_.back();
  open_.pop_back();
  if (index == kUntimed) return;
  cudaEvent_t end = acquire();
  check_cuda(cudaEventRecord(end, stream), "profiler event record");
  ranges_[index].end = end;
}

void RangeTimer::resolve() {
  if (ranges_.empty()) return;
  // Children follow their parent in push order, so walking backwards finishes every child before its parent.
  for (size_t i = ranges_.size(); i-- > 0;) {
    Range& r = ranges_[i];
    if (!r.end) continue;
    float ms = 0.f;
    check_cuda(cudaEventElapsedTime(&ms, r.start, r.end), "profiler elapsed time");
    // Each elapsed time is rounded to the events' resolution, so the children may add up to a hair more.
    profiler_->add(r.layer, r.op, r.name, std::max(0.0, double(ms) - r.child_ms));
    if (r.parent != kUntimed) ranges_[r.parent].child_ms += ms;
  }
  // Ranges still open (a synchronize() inside a range) stay pending with the child time they have collected.
  remap_.assign(ranges_.size(), kUntimed);
  size_t kept = 0;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    Range& r = ranges_[i];
    if (r.end) {
      free_events_.push_back(r.start);
      free_events_.push_back(r.end);
      continue;
    }
    if (r.parent != kUntimed) r.parent = remap_[r.parent];  // an open range's parent is open too
    remap_[i] = static_cast<int>(kept);
    ranges_[kept++] = r;
  }
  ranges_.resize(kept);
  for (int& index : open_)
    if (index != kUntimed) index = remap_[index];
}

}  // namespace swrun::cuda
