#include "runtime/cuda/host_upload.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/common/cuda_check.h"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

constexpr size_t kPinnedChunkBytes = size_t(8) << 20;

}  // namespace

HostUpload::HostUpload(DeviceMemory& mem) : mem_(mem) {
  const char* env = std::getenv("SWRUN_UPLOAD");
  const std::string choice = env ? env : "pageable";
  if (choice == "pageable") path_ = Path::Pageable;
  else if (choice == "pinned") path_ = Path::Pinned;
  else if (choice == "register") path_ = Path::Register;
  else fail("SWRUN_UPLOAD='" + choice + "': expected pageable, pinned or register");
}

HostUpload::~HostUpload() {
  for (void* p : registered_) cudaHostUnregister(p);
  for (Slot& s : slots_)
    if (s.drained) cudaEventDestroy(s.drained);
}

const char* HostUpload::describe() const {
  switch (path_) {
    case Path::Pageable: return "from the pageable file mapping";
    case Path::Pinned: return "through 2 x 8 MiB pinned staging (SWRUN_UPLOAD=pinned)";
    case Path::Register: return "from the mapping page-locked in place (SWRUN_UPLOAD=register)";
  }
  return "";
}

void HostUpload::copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (path_ == Path::Pinned) return copy_pinned(dst, src, bytes, stream);
  if (path_ == Path::Register) {
    void* p = const_cast<void*>(src);
    if (cudaHostRegister(p, bytes, cudaHostRegisterReadOnly) == cudaSuccess) registered_.push_back(p);
    else cudaGetLastError();  // refused by the driver: copied as pageable
  }
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "upload of weights");
}

void HostUpload::copy_pinned(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  for (size_t done = 0; done < bytes;) {
    Slot& s = slots_[next_slot_];
    next_slot_ ^= 1;
    const size_t n = std::min(kPinnedChunkBytes, bytes - done);
    if (!s.drained) check_cuda(cudaEventCreateWithFlags(&s.drained, cudaEventDisableTiming), "cudaEventCreate");
    if (s.in_flight) check_cuda(cudaEventSynchronize(s.drained), "upload of weights");
    void* host = s.host.ensure(mem_, kPinnedChunkBytes);
    std::memcpy(host, static_cast<const uint8_t*>(src) + done, n);
    check_cuda(cudaMemcpyAsync(static_cast<uint8_t*>(dst) + done, host, n, cudaMemcpyHostToDevice, stream),
               "upload of weights");
    check_cuda(cudaEventRecord(s.drained, stream), "cudaEventRecord");
    s.in_flight = true;
    done += n;
  }
}

void HostUpload::release() {
  for (void* p : registered_) check_cuda(cudaHostUnregister(p), "cudaHostUnregister");
  registered_.clear();
  for (Slot& s : slots_) {
    s.host.release(mem_);
    s.in_flight = false;
  }
}

}  // namespace swrun::cuda
