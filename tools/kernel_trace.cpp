// kernel_trace: a CUPTI activity trace of every kernel a CUDA process runs, CUDA graph nodes included, loaded by the
// driver through CUDA_INJECTION64_PATH=libkernel_trace.so (no change to the traced program; nsys is not on every
// machine). One line per kernel to $KERNEL_TRACE_OUT: start and end (ns, GPU clock), graph node id (0: not from a
// graph), grid x, block x, registers per thread, mangled name. tools/decode_step_trace.py reads it.
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

FILE* out = nullptr;
std::mutex out_mutex;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = size_t(8) << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  std::lock_guard<std::mutex> lock(out_mutex);
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    std::fprintf(out, "%llu %llu %llu %d %d %u %s\n", static_cast<unsigned long long>(k->start),
                 static_cast<unsigned long long>(k->end), static_cast<unsigned long long>(k->graphNodeId), k->gridX,
                 k->blockX, unsigned(k->registersPerThread), k->name);
  }
  std::free(buffer);
}

void flush_at_exit() {
  cuptiActivityFlushAll(1);
  std::fclose(out);
}

bool ok(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return true;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  std::fprintf(stderr, "kernel_trace: %s: %s\n", what, msg ? msg : "unknown error");
  return false;
}

}  // namespace

// Called by the CUDA driver at initialization when CUDA_INJECTION64_PATH names this library.
extern "C" int InitializeInjection() {
  const char* path = std::getenv("KERNEL_TRACE_OUT");
  out = std::fopen(path ? path : "kernel_trace.txt", "w");
  if (!out) {
    std::fprintf(stderr, "kernel_trace: cannot write %s\n", path ? path : "kernel_trace.txt");
    return 0;
  }
  // Concurrent-kernel records do not serialize the kernels, so overlapped launches keep their overlap.
  if (!ok(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "register callbacks") ||
      !ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enable kernel records"))
    return 0;
  std::atexit(flush_at_exit);
  return 1;
}
