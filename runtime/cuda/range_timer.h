// GPU time of the profiling ranges (runtime/backend.h push_range/pop_range) from CUDA events: an event is recorded
// on the stream at each push and pop, and the elapsed times are read only once the stream has drained (resolve(),
// called by the backend's synchronize()), so timing adds no synchronization to the hot path. Events come from a
// pool that only grows to the deepest step seen; after warm-up a timed step allocates nothing.
//
// Ranges are tracked even while nothing is attached (a stack push, no events), so pushes and pops stay paired
// across attach/detach and graph capture: a range opened untimed stays untimed until it closes.
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "runtime/backend.h"

namespace swrun::cuda {

class RangeTimer {
 public:
  RangeTimer() = default;
  RangeTimer(const RangeTimer&) = delete;
  RangeTimer& operator=(const RangeTimer&) = delete;
  ~RangeTimer();

  // nullptr detaches: ranges not yet resolved are dropped and open ones finish untimed.
  void attach(Profiler* profiler);
  bool attached() const { return profiler_ != nullptr; }

  // `timed` false (nothing attached, or the stream is being captured): bookkeeping only, no event.
  void push(const char* name, int layer, OpKind op, bool timed, cudaStream_t stream);
  void pop(cudaStream_t stream);

  // Feeds every closed range to the profiler with its exclusive time. The stream the events were recorded on
  // must have completed them (the caller has synchronized it).
  void resolve();

 private:
  static constexpr int kUntimed = -1;
  struct Range {
    const char* name;
    int layer;
    OpKind op;
    int parent;  // index in ranges_ of the nearest timed enclosing range, or kUntimed
    cudaEvent_t start, end;  // end is null while the range is open
    double child_ms;         // inclusive time of the timed ranges directly inside it
  };

  cudaEvent_t acquire();
  void drop_pending();

  Profiler* profiler_ = nullptr;
  std::vector<cudaEvent_t> free_events_;
  std::vector<Range> ranges_;  // timed ranges not yet resolved, in push order (a parent before its children)
  std::vector<int> open_;      // the open ranges, innermost last: index in ranges_, or kUntimed
  std::vector<int> remap_;     // scratch of resolve()
};

}  // namespace swrun::cuda
