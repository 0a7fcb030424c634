// Backend choice shared by the swrun subcommands (header-only: the executable itself must reference the CUDA
// backend factory so that the static CUDA library's definition is linked in).
#pragma once
#include <cstdio>
#include <future>
#include <memory>
#include <string>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/load_log.h"
#include "engine/memory_plan.h"

namespace swrun {

// --backend: "cpu", "cuda", or "auto" (CUDA when a device is present, else the CPU). With a log, the backend's
// set-up phases are added to it (runtime/load_log.h). *fell_back: "auto" found no CUDA device.
inline std::unique_ptr<Backend> choose_backend(const std::string& which, int threads, LoadLog* log, bool* fell_back) {
  *fell_back = false;
  if (which == "cpu") return make_cpu_backend(threads);
  if (which == "cuda" || cuda_device_available()) return make_cuda_backend(0, log);
  *fell_back = true;
  return make_cpu_backend(threads);
}

inline void note_cpu_fallback() { std::fprintf(stderr, "swrun: no CUDA device found, using the CPU backend\n"); }

// choose_backend with the fallback noted on stderr.
inline std::unique_ptr<Backend> make_backend(const std::string& which, int threads) {
  bool fell_back = false;
  auto backend = choose_backend(which, threads, nullptr, &fell_back);
  if (fell_back) note_cpu_fallback();
  return backend;
}

// choose_backend on a thread of its own, so that the CUDA driver and context set-up (a large part of the load time
// on a big GPU) runs while the caller parses the GGUF file and builds the tokenizer, which need no device. The
// backend is then used from the caller's thread as it is: the CUDA runtime's primary context belongs to the
// process, and device 0 (the only one choose_backend picks) is every thread's default device.
class BackendStart {
 public:
  BackendStart(const std::string& which, int threads)
      : started_(now_ms()), result_(std::async(std::launch::async, [this, which, threads] {
          auto backend = choose_backend(which, threads, &setup_, &fell_back_);
          ran_ms_ = now_ms() - started_;
          return backend;
        })) {}
  BackendStart(const BackendStart&) = delete;  // the set-up thread writes into this object
  BackendStart& operator=(const BackendStart&) = delete;

  // Waits for the backend (rethrowing its set-up's Error; an error of the caller's before this is the only one
  // shown); with a log, adds the set-up's own phases to it as sub-phases (of the caller's next phase: the wait).
  std::unique_ptr<Backend> get(LoadLog* log) {
    auto backend = result_.get();
    if (fell_back_) note_cpu_fallback();  // here, so that an earlier error on the caller's side stays one line
    if (log)
      for (const LoadPhase& p : setup_.phases()) log->add_sub(p.name, p.ms, p.detail);
    return backend;
  }
  // How long the set-up ran on its thread (valid after get()).
  double setup_ms() const { return ran_ms_; }

 private:
  LoadLog setup_;  // written by the set-up thread only, read after it has finished
  double started_ = 0, ran_ms_ = 0;
  bool fell_back_ = false;
  std::future<std::unique_ptr<Backend>> result_;
};

// The prefill chunk of a run on `be`: -b when given (ubatch_flag > 0), else the backend's default. On the CPU the
// default is 512 (it only bounds the activation buffers, in host memory). On CUDA the chunk comes from the memory
// plan (engine/memory_plan.h) of `job` on this GPU: the default is the largest power of two from 32768 down to
// 512 that fits and keeps activations + workspace within 2.5 GiB (plan_default_ubatch), and a run that does not
// fit, at the default or at the -b given, fails here, before anything is loaded, with the part that does not fit
// and the flag that would help. Chunks never exceed the prompt, so short prompts allocate no more.
inline int choose_ubatch(const Backend& be, const GgufFile& f, int ubatch_flag, MemoryJob job) {
  if (be.name() != "cuda") return ubatch_flag > 0 ? ubatch_flag : 512;
  job.memory_bytes = be.device_memory_bytes();
  const JobPlan plan = ubatch_flag > 0 ? plan_job(f, job, ubatch_flag) : plan_default_ubatch(f, job);
  if (!plan.fits) fail(not_fit_message(f, job, plan));
  return plan.ubatch;
}

}  // namespace swrun
