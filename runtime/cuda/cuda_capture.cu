// Decode steps as CUDA graphs: a step is captured on its key's first call and replayed afterwards. Positions,
// ring slots and sequence lengths are read from the device copy of pos0 that begin_batch uploads inside the
// graph, so one graph serves every later step of the same shape. The step's synchronize() ends the capture (or
// the replay's host pass), launches the graph, waits and copies the reads out.
#include <cstdio>
#include <exception>
#include <string>

#include "kernels/common/cuda_check.h"
#include "runtime/common.h"
#include "runtime/cuda/cuda_backend.h"

namespace swrun::cuda {
void CudaBackend::drop_graphs() {
  for (auto& [key, g] : graphs_) {
    check_cuda(cudaGraphExecDestroy(g.exec), "cudaGraphExecDestroy");
    for (void* program : g.programs) mem_.release(program);
    for (const CapturedStep::Trace& t : g.traces) mem_.release(t.stamps);
  }
  graphs_.clear();
  plain_keys_.clear();
}

void CudaBackend::enter_step(Mode mode, CapturedStep* step) {
  mode_ = mode;
  step_ = step;
  step_batches_ = 0;
  replay_reads_ = 0;
}

void CudaBackend::complete_step() {
  if (mode_ == Mode::Capturing) {
    flush_deferred();
    mode_ = Mode::Plain;
    cudaGraph_t graph = nullptr;
    cudaError_t status = cudaStreamEndCapture(stream_, &graph);
    if (status == cudaSuccess) status = cudaGraphInstantiate(&step_->exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (status != cudaSuccess) throw CaptureFailed{cudaGetErrorString(status)};
  } else {
    mode_ = Mode::Plain;
    if (replay_reads_ != step_->reads.size()) {
      pending_reads_.clear();
      fail("run_captured: the step reads different data than when it was captured");
    }
  }
  check_cuda(cudaGraphLaunch(step_->exec, stream_), "cudaGraphLaunch");
  finish_step();
  collect_program_trace(*step_);
}

bool CudaBackend::run_captured(int key, const std::function<void()>& step) {
  if (mode_ != Mode::Plain) fail("run_captured: steps cannot nest");
  if (plain_keys_.count(key)) {
    step();
    return false;
  }
  if (auto it = graphs_.find(key); it != graphs_.end()) {
    enter_step(Mode::Replaying, &it->second);
    try {
      step();
      if (mode_ == Mode::Replaying) complete_step();
    } catch (...) {
      mode_ = Mode::Plain;
      step_ = nullptr;
      pending_reads_.clear();
      throw;
    }
    step_ = nullptr;
    return true;
  }
  return capture_step(key, step);
}

// Ends a capture that will not become a graph. Returns false when the capture was still intact.
bool CudaBackend::abandon_capture() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(stream_, &status);
  bool broken = status == cudaStreamCaptureStatusInvalidated;
  if (status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    broken |= cudaStreamEndCapture(stream_, &graph) != cudaSuccess;
    if (graph) cudaGraphDestroy(graph);
  }
  cudaGetLastError();  // a failed capture leaves its error behind; the plain run must not inherit it
  program_.clear();
  pending_norm_rope_.reset();
  pending_residual_.reset();
  mode_ = Mode::Plain;
  step_ = nullptr;
  pending_reads_.clear();
  read_used_ = 0;
  return broken;
}

// When capture is impossible (an op that allocates or synchronizes, a driver that refuses), the step runs with
// plain launches, now and for every later call with this key.
bool CudaBackend::capture_step(int key, const std::function<void()>& step) {
  finish_step();  // the step's staging buffers must be quiet before their addresses go into a graph
  CapturedStep captured;
  enter_step(Mode::Capturing, &captured);
  // Relaxed: a buffer growing during the first capture may allocate (it is never freed while graphs exist).
  check_cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  std::string why;
  try {
    step();
    if (mode_ == Mode::Capturing) complete_step();
    graphs_.emplace(key, std::move(captured));
    step_ = nullptr;
    return true;
  } catch (const CaptureFailed& failed) {
    abandon_capture();
    why = failed.why;
  } catch (const std::exception& e) {
    if (mode_ != Mode::Capturing) {  // raised after the graph ran: the graph is good, the error is the step's
      graphs_.emplace(key, std::move(captured));
      step_ = nullptr;
      throw;
    }
    // Raised while the capture was intact: an error in the step's own arguments, not in capturing it.
    if (!abandon_capture()) throw;
    why = e.what();
  }
  if (captured.exec) cudaGraphExecDestroy(captured.exec);
  for (void* program : captured.programs) mem_.release(program);
  for (const CapturedStep::Trace& t : captured.traces) mem_.release(t.stamps);
  std::fprintf(stderr, "swrun: CUDA graph capture of step %d failed (%s); running it with plain launches\n", key,
               why.c_str());
  plain_keys_.insert(key);
  step();
  return false;
}

}  // namespace swrun::cuda
