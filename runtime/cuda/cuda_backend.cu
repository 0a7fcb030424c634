// CudaBackend: device set-up, weights, activation buffers, KV caches, batch staging, reads and NVTX ranges.
// The compute ops live in cuda_ops.cu and graph capture in cuda_capture.cu.
#include "runtime/cuda/cuda_backend.h"

#include <nvtx3/nvToolsExt.h>

#include <cstdlib>
#include <cstring>

#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/dequant/dequant.cuh"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/gemv/gemv_quant.cuh"
#include "kernels/logprob/logprob.cuh"
#include "kernels/sample/top_k.cuh"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

// cuBLAS on Hopper wants up to 32 MiB; giving it our own buffer also keeps its GEMMs capturable in graphs.
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

// Weights are never freed one by one, so the small ones (a model has hundreds) share device allocations of
// kWeightChunkBytes instead of costing a cudaMalloc each; one larger than a quarter of a chunk gets its own, so a
// chunk wastes at most a quarter at its end. Offsets keep cudaMalloc's 256-byte alignment, which the kernels'
// vector loads and cuBLAS rely on.
constexpr size_t kWeightChunkBytes = size_t(16) << 20;
constexpr size_t kWeightAlignment = 256;

}  // namespace

CudaBackend::CudaBackend(int device, LoadLog* log) {
  double t0 = now_ms();
  auto phase_done = [&](const char* name, const std::string& detail) {
    const double t1 = now_ms();
    if (log) log->add_sub(name, t1 - t0, detail);
    t0 = t1;
  };
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    fail(std::string("no CUDA device: ") + cudaGetErrorString(status));
  }
  if (count == 0) fail("no CUDA device: the driver reports none");
  if (device < 0 || device >= count)
    fail("no CUDA device: device " + std::to_string(device) + " requested, " + std::to_string(count) + " present");
  phase_done("CUDA driver", std::to_string(count) + " device(s)");
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  if (const char* env = std::getenv("SWRUN_DECODE_PROGRAM")) program_enabled_ = std::string(env) == "1";
  if (const char* env = std::getenv("SWRUN_PROGRAM_TRACE")) program_trace_ = std::string(env) == "1";
  check_cuda(cudaFree(nullptr), "CUDA context creation");  // creates the context now, so that it is timed alone
  // The driver reads CUDA_MODULE_LOADING (LAZY by default: each module is loaded at its first launch).
  const char* loading = std::getenv("CUDA_MODULE_LOADING");
  phase_done("CUDA context", std::string("CUDA_MODULE_LOADING=") + (loading ? loading : "(unset: LAZY)"));
  cudaDeviceProp props{};
  check_cuda(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
  device_name_ = props.name;
  device_memory_bytes_ = props.totalGlobalMem;
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaEventCreateWithFlags(&batch_uploaded_, cudaEventDisableTiming), "cudaEventCreate");
  check_cuda(cudaStreamCreateWithFlags(&slice_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaEventCreateWithFlags(&uploads_done_, cudaEventDisableTiming), "cudaEventCreate");
  for (WeightSlice& w : slices_) {
    check_cuda(cudaEventCreateWithFlags(&w.ready, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventCreateWithFlags(&w.read, cudaEventDisableTiming), "cudaEventCreate");
  }
  phase_done("properties, stream", device_name_);
  check_cublas(cublasCreate(&cublas_), "cublasCreate");
  check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
  void* workspace = mem_.device(kCublasWorkspaceBytes, "cuBLAS workspace");
  check_cublas(cublasSetWorkspace(cublas_, workspace, kCublasWorkspaceBytes), "cublasSetWorkspace");
  phase_done("cuBLAS", "handle and " + human_bytes(double(kCublasWorkspaceBytes)) + " workspace");
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  print_program_trace();
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
  cublasDestroy(cublas_);
  cudaEventDestroy(batch_uploaded_);
  cudaStreamSynchronize(slice_stream_);
  cudaEventDestroy(uploads_done_);
  for (WeightSlice& w : slices_) {
    cudaEventDestroy(w.ready);
    cudaEventDestroy(w.read);
  }
  cudaStreamDestroy(slice_stream_);
  cudaStreamDestroy(stream_);
}

// ---- weights -------------------------------------------------------------------------------------------------

void* CudaBackend::upload_staging(const GgufTensor& t) {
  void* staging = load_staging_.ensure(mem_, t.nbytes);
  host_upload_.copy(staging, t.data, t.nbytes, stream_);
  upload_timer_.copied(stream_, t.nbytes);
  return staging;
}

void* CudaBackend::weight_memory(size_t bytes, const std::string& what) {
  const double t0 = upload_timer_.active() ? now_ms() : 0;
  const size_t aligned = (bytes + kWeightAlignment - 1) / kWeightAlignment * kWeightAlignment;
  void* p = nullptr;
  if (aligned > kWeightChunkBytes / 4) {
    p = mem_.device(bytes, what);
    if (upload_timer_.active()) upload_timer_.note_alloc(now_ms() - t0, bytes);
  } else {
    if (aligned > weight_chunk_left_) {
      weight_chunk_ = static_cast<uint8_t*>(mem_.device(kWeightChunkBytes, "weights (shared allocation)"));
      weight_chunk_left_ = kWeightChunkBytes;
      if (upload_timer_.active()) upload_timer_.note_alloc(now_ms() - t0, kWeightChunkBytes);
    }
    p = weight_chunk_;
    weight_chunk_ += aligned;
    weight_chunk_left_ -= aligned;
  }
  weight_bytes_ += bytes;
  return p;
}

// Matrices are kept once, as the file stores them: decode GEMVs read the blocks, prefill GEMMs dequantize slices of
// them into a scratch buffer (matmul_weight_slices). Only a matrix no block decoder reads (a row length that is not
// a whole number of decoder blocks) gets a bf16 copy instead; a BF16 matrix's bytes are its own bf16 copy.
Weight CudaBackend::upload(const GgufTensor& t) {
  const int64_t elems = check_device_tensor(t);
  const GgmlTypeInfo ti = ggml_type_info(t.type_id);
  const size_t file_bytes = ggml_row_bytes(ti, elems);
  const bool vector = t.ne.size() == 1;
  const GgmlType type = t.type();
  DeviceWeight dw;
  dw.fp32 = vector;
  upload_timer_.begin(stream_);
  if (vector) {
    void* dst = weight_memory(size_t(elems) * sizeof(float), "weight " + t.name);
    if (type == GgmlType::F32) {
      host_upload_.copy(dst, t.data, size_t(elems) * 4, stream_);
      upload_timer_.copied(stream_, size_t(elems) * 4);
    } else if (type == GgmlType::BF16) {
      cast_bf16_to_f32(static_cast<const __nv_bfloat16*>(upload_staging(t)), static_cast<float*>(dst),
                       size_t(elems), stream_);
    } else {
      dequantize_to_f32(type, upload_staging(t), dst, elems, stream_);
    }
    if (type != GgmlType::F32) upload_timer_.converted(stream_, std::string(ti.name) + " -> f32");
    dw.data = dst;
  } else {
    const void* src = nullptr;  // the file's bytes on the device
    if (gemv_quant_supported(type, t.ne[0])) {
      const size_t padded = gemv_quant_padded_bytes(file_bytes);
      auto* raw = static_cast<uint8_t*>(weight_memory(padded, "weight " + t.name));
      host_upload_.copy(raw, t.data, file_bytes, stream_);
      check_cuda(cudaMemsetAsync(raw + file_bytes, 0, padded - file_bytes, stream_), "upload padding");
      upload_timer_.copied(stream_, file_bytes);
      dw.raw = src = raw;
    }
    if (type == GgmlType::BF16 && dw.raw) {
      dw.data = const_cast<void*>(dw.raw);  // the file's bytes are the bf16 copy
    } else if (!dw.raw) {
      void* dst = weight_memory(size_t(elems) * sizeof(__nv_bfloat16), "weight " + t.name + " (bf16)");
      if (!src) src = upload_staging(t);
      if (type == GgmlType::BF16)
        check_cuda(cudaMemcpyAsync(dst, src, size_t(elems) * 2, cudaMemcpyDeviceToDevice, stream_), "upload");
      else if (type == GgmlType::F32)
        cast_f32_to_bf16(static_cast<const float*>(src), static_cast<__nv_bfloat16*>(dst), size_t(elems), stream_);
      else
        dequantize_to_bf16(type, src, dst, elems, stream_);
      upload_timer_.converted(stream_, std::string(ti.name) + " -> bf16");
      dw.data = dst;
    }
  }
  weights_.push_back(dw);
  uploads_since_slice_ = true;
  Weight w;
  w.name = t.name;
  w.type = type;
  w.cols = t.ne[0];
  w.rows = elems / t.ne[0];
  w.impl = &weights_.back();
  return w;
}

Weight CudaBackend::weight_rows(const Weight& w, int64_t first, int64_t count) {
  check_row_range(w, first, count);
  const DeviceWeight& d = device_weight(w, "weight_rows");
  DeviceWeight view;
  if (d.data) view.data = static_cast<__nv_bfloat16*>(d.data) + size_t(first) * size_t(w.cols);
  if (d.raw) {
    const size_t row_bytes = ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(w.type)), w.cols);
    view.raw = static_cast<const uint8_t*>(d.raw) + size_t(first) * row_bytes;
  }
  weights_.push_back(view);
  Weight v = w;
  v.rows = count;
  v.impl = &weights_.back();
  return v;
}

void CudaBackend::release_load_staging() {
  check_cuda(cudaStreamSynchronize(stream_), "weight upload");
  load_staging_.release(mem_);
  host_upload_.release();
}

void CudaBackend::finish_uploads() {
  check_cuda(cudaStreamSynchronize(stream_), "weight upload");
  upload_timer_.report(host_upload_.describe());
}

const DeviceWeight& CudaBackend::device_weight(const Weight& w, const char* op) const {
  if (!w.impl) fail(std::string(op) + ": weight '" + w.name + "' was not uploaded to this backend");
  return *static_cast<const DeviceWeight*>(w.impl);
}

// ---- buffers -------------------------------------------------------------------------------------------------

Buffer CudaBackend::alloc(size_t count) {
  return Buffer{static_cast<float*>(mem_.device(count * sizeof(float), "activation buffer")), count};
}

__nv_bfloat16* CudaBackend::bf16_scratch(size_t elems) {
  return static_cast<__nv_bfloat16*>(scratch_bf16_.ensure(mem_, elems * sizeof(__nv_bfloat16)));
}

__nv_bfloat16* CudaBackend::gemm_operand_target(size_t count) {
  gemm_operand_ = {};
  return static_cast<__nv_bfloat16*>(gemm_operand_buf_.ensure(mem_, count * sizeof(__nv_bfloat16)));
}

const __nv_bfloat16* CudaBackend::gemm_operand(const float* x, size_t count) {
  if (gemm_operand_.src == x && gemm_operand_.count >= count)
    return static_cast<const __nv_bfloat16*>(gemm_operand_buf_.data());
  __nv_bfloat16* xb = gemm_operand_target(count);
  cast_f32_to_bf16(x, xb, count, stream_);
  gemm_operand_written(x, count);
  return xb;
}

// ---- KV cache ------------------------------------------------------------------------------------------------

void CudaBackend::init_kv(const std::vector<KvLayerSpec>& layers) {
  if (mode_ != Mode::Plain) fail("init_kv inside a captured step");
  require_bf16_kv(*this, layers);
  release_load_staging();
  drop_graphs();  // they point at the caches being replaced
  for (KvLayer& l : kv_) {
    mem_.release(l.k);
    mem_.release(l.v);
  }
  kv_.clear();
  kv_bytes_ = 0;
  mem_.release_retired();

  size_t need = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const KvLayerSpec& s = layers[i];
    if (s.capacity <= 0 || s.n_head_kv <= 0 || s.head_dim <= 0)
      fail("init_kv: layer " + std::to_string(i) + " has a non-positive capacity, head count or head size");
    need += 2 * size_t(s.capacity) * size_t(s.n_head_kv) * size_t(s.head_dim) * sizeof(__nv_bfloat16);
  }
  size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  if (need > free_bytes)
    fail("KV cache needs " + human_bytes(double(need)) + ", " + human_bytes(double(free_bytes)) + " free on " +
         device_name_ + " (lower -c/--ctx-size or use sliding attention)");
  for (size_t i = 0; i < layers.size(); ++i) {
    const KvLayerSpec& s = layers[i];
    const size_t bytes = size_t(s.capacity) * size_t(s.n_head_kv) * size_t(s.head_dim) * sizeof(__nv_bfloat16);
    const std::string what = "KV cache of layer " + std::to_string(i);
    KvLayer l{s, static_cast<__nv_bfloat16*>(mem_.device(bytes, what)),
              static_cast<__nv_bfloat16*>(mem_.device(bytes, what))};
    kv_.push_back(l);
    kv_bytes_ += 2 * bytes;
  }
}

// ---- batches, reads, synchronization -------------------------------------------------------------------------

void CudaBackend::require_batch(const char* op) const {
  if (n_ <= 0) fail(std::string(op) + ": no batch (begin_batch was not called)");
}

void CudaBackend::begin_batch(const int32_t* tokens, int32_t pos0, int n) {
  if (n < 1) fail("begin_batch: batch of " + std::to_string(n) + " tokens");
  if (pos0 < 0) fail("begin_batch: negative position " + std::to_string(pos0));
  if (mode_ == Mode::Plain && (load_staging_.data() || host_upload_.holds_resources())) release_load_staging();
  if (mode_ != Mode::Plain && ++step_batches_ > 1) fail("run_captured: a captured step must hold one batch");
  tokens_.assign(tokens, tokens + n);
  pos0_ = pos0;
  gemm_operand_ = {};
  n_ = n;
  const size_t bytes = (size_t(n) + 1) * sizeof(int32_t);
  if (mode_ == Mode::Replaying) {
    if (n != step_->n)
      fail("run_captured: step captured with a batch of " + std::to_string(step_->n) + " tokens replayed with " +
           std::to_string(n));
    check_cuda(cudaEventSynchronize(batch_uploaded_), "begin_batch");
    step_->staging[0] = pos0;
    std::memcpy(step_->staging + 1, tokens, size_t(n) * sizeof(int32_t));
    return;
  }
  // The previous batch's upload must have left the pinned buffer before it is overwritten.
  if (mode_ == Mode::Plain) check_cuda(cudaEventSynchronize(batch_uploaded_), "begin_batch");
  auto* host = static_cast<int32_t*>(batch_host_.ensure(mem_, bytes));
  void* dev = batch_dev_.ensure(mem_, bytes);
  host[0] = pos0;
  std::memcpy(host + 1, tokens, size_t(n) * sizeof(int32_t));
  check_cuda(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream_), "begin_batch upload");
  if (mode_ == Mode::Plain) check_cuda(cudaEventRecord(batch_uploaded_, stream_), "begin_batch");
  if (mode_ == Mode::Capturing) {
    step_->n = n;
    step_->staging = host;
  }
}

void* CudaBackend::reserve_read_staging(size_t words) {
  auto* base = static_cast<uint32_t*>(read_host_.data());
  if (!base || read_used_ + words > read_capacity_) {
    // Reads already queued keep their old buffer: it is retired, not freed, until they are delivered.
    const size_t capacity = std::max(words, read_capacity_ * 2);
    base = static_cast<uint32_t*>(read_host_.ensure(mem_, capacity * 4));
    read_capacity_ = capacity;
    read_used_ = 0;
  }
  uint32_t* staged = base + read_used_;
  read_used_ += words;
  return staged;
}

void CudaBackend::queue_read(const void* src, size_t words, void* host) {
  if (mode_ == Mode::Replaying) {
    const size_t i = replay_reads_++;
    if (i >= step_->reads.size() || step_->reads[i].second != words)
      fail("run_captured: the step reads different data than when it was captured");
    pending_reads_.push_back({step_->reads[i].first, words, host});
    return;
  }
  flush_deferred();  // the read follows everything recorded or held back before it
  void* staged = reserve_read_staging(words);
  check_cuda(cudaMemcpyAsync(staged, src, words * 4, cudaMemcpyDeviceToHost, stream_), "read");
  pending_reads_.push_back({staged, words, host});
  if (mode_ == Mode::Capturing) step_->reads.push_back({staged, words});
}

void CudaBackend::read(Buffer src, size_t offset, size_t count, float* host) {
  if (offset + count > src.count)
    fail("read: floats " + std::to_string(offset) + " .. " + std::to_string(offset + count) +
         " are outside a buffer of " + std::to_string(src.count));
  if (count == 0) return;
  queue_read(src.data + offset, count, host);
}

void CudaBackend::top_k(Buffer src, size_t count, int k, int32_t* ids, float* values) {
  if (count > src.count || k < 1 || k > kMaxDeviceTopK || size_t(k) > count)
    fail("top_k: k = " + std::to_string(k) + " of " + std::to_string(count) + " floats in a buffer of " +
         std::to_string(src.count));
  if (launching()) {
    auto* out = static_cast<int32_t*>(top_k_out_.ensure(mem_, size_t(kMaxDeviceTopK) * 8));
    void* workspace = top_k_workspace_.ensure(mem_, top_k_workspace_bytes(int64_t(count), kMaxDeviceTopK));
    top_k_f32(src.data, int64_t(count), k, workspace, out, reinterpret_cast<float*>(out + k), stream_);
    queue_read(out, size_t(k), ids);
    queue_read(out + k, size_t(k), values);
  } else {
    queue_read(nullptr, size_t(k), ids);
    queue_read(nullptr, size_t(k), values);
  }
}

const int32_t* CudaBackend::upload_logprob_inputs(int64_t rows, int vocab, const int32_t* targets,
                                                  const uint16_t* base, const uint16_t** base_dev) {
  const size_t target_bytes = (size_t(rows) * sizeof(int32_t) + 255) / 256 * 256;  // keeps the base rows aligned
  const size_t base_bytes = base ? size_t(rows) * size_t(kl_row_width(vocab)) * sizeof(uint16_t) : 0;
  auto* in = static_cast<uint8_t*>(logprob_in_.ensure(mem_, target_bytes + base_bytes));
  check_cuda(cudaMemcpyAsync(in, targets, size_t(rows) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
             "score_rows: targets upload");
  if (base)
    check_cuda(cudaMemcpyAsync(in + target_bytes, base, base_bytes, cudaMemcpyHostToDevice, stream_),
               "score_rows: base rows upload");
  *base_dev = base ? reinterpret_cast<const uint16_t*>(in + target_bytes) : nullptr;
  return reinterpret_cast<const int32_t*>(in);
}

void CudaBackend::score_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                             RowScore* out) {
  check_logit_rows("score_rows", src, rows, vocab, targets);
  if (mode_ != Mode::Plain) fail("score_rows inside a captured step");
  launching();
  const uint16_t* base_dev = nullptr;
  const int32_t* targets_dev = upload_logprob_inputs(rows, vocab, targets, base, &base_dev);
  auto* scores = static_cast<RowScore*>(logprob_out_.ensure(mem_, size_t(rows) * sizeof(RowScore)));
  score_rows_f32(src.data, rows, vocab, targets_dev, base_dev, scores, stream_);
  queue_read(scores, size_t(rows) * sizeof(RowScore) / 4, out);
}

void CudaBackend::compress_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, uint16_t* out,
                                double* nll) {
  check_logit_rows("compress_rows", src, rows, vocab, targets);
  if (mode_ != Mode::Plain) fail("compress_rows inside a captured step");
  launching();
  const uint16_t* no_base = nullptr;
  const int32_t* targets_dev = upload_logprob_inputs(rows, vocab, targets, nullptr, &no_base);
  const size_t row_bytes = size_t(kl_row_width(vocab)) * sizeof(uint16_t);  // a multiple of 4: whole words
  auto* rows_dev = static_cast<uint8_t*>(logprob_out_.ensure(mem_, size_t(rows) * (row_bytes + sizeof(double))));
  auto* nll_dev = reinterpret_cast<double*>(rows_dev);
  auto* codes_dev = reinterpret_cast<uint16_t*>(rows_dev + size_t(rows) * sizeof(double));
  compress_rows_f32(src.data, rows, vocab, targets_dev, codes_dev, nll_dev, stream_);
  queue_read(codes_dev, size_t(rows) * row_bytes / 4, out);
  queue_read(nll_dev, size_t(rows) * sizeof(double) / 4, nll);
}

void CudaBackend::finish_step() {
  flush_deferred();
  check_cuda(cudaStreamSynchronize(stream_), "synchronize");
  range_timer_.resolve();
  for (const PendingRead& r : pending_reads_) std::memcpy(r.host, r.staged, r.words * 4);
  pending_reads_.clear();
  read_used_ = 0;
  if (graphs_.empty() && !step_) mem_.release_retired();  // a graph being built may use retired memory
}

void CudaBackend::synchronize() {
  gemm_operand_ = {};  // the host may write the device buffers itself once it has waited (tests do)
  if (mode_ == Mode::Plain)
    finish_step();
  else
    complete_step();
}

// ---- profiling hooks -----------------------------------------------------------------------------------------

void CudaBackend::push_range(const char* name, int layer, OpKind op) {
  // The layer travels as the NVTX payload: formatting a label per op would cost more than the range itself.
  nvtxEventAttributes_t attributes{};
  attributes.version = NVTX_VERSION;
  attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
  attributes.message.ascii = name;
  if (layer >= 0) {
    attributes.payloadType = NVTX_PAYLOAD_TYPE_INT32;
    attributes.payload.iValue = layer;
  }
  nvtxRangePushEx(&attributes);
  // Events are recorded only on plain launches: a captured step would bake them into its graph, and a replay's
  // host pass launches nothing to time.
  range_timer_.push(name, layer, op, mode_ == Mode::Plain, stream_);
}

void CudaBackend::pop_range() {
  // A profiled op's time must fall inside its own range: nothing is held back past it (no fusion when profiling).
  if (range_timer_.attached() && mode_ == Mode::Plain) flush_deferred();
  range_timer_.pop(stream_);
  nvtxRangePop();
}

}  // namespace swrun::cuda

namespace swrun {

std::unique_ptr<Backend> make_cuda_backend(int device, LoadLog* log) {
  return std::make_unique<cuda::CudaBackend>(device, log);
}

bool cuda_device_available() {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();
  return ok;
}

}  // namespace swrun
