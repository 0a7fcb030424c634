// The CUDA backend (runtime/backend.h on one GPU): weight matrices kept once, in the file's GGUF blocks, read by the
// quantized GEMV of decode steps (kernels/gemv/gemv_quant) and dequantized a slice at a time into a scratch buffer
// for the prefill GEMMs (bf16 for quantized blocks, fp32 multiplied in TF32 for F16/F32), fp32 activations and
// residual stream, cuBLAS projections with fp32 accumulation, bf16 KV caches per layer, our attention kernels
// (kernels/attention), sampling candidates reduced on the device, and decode steps captured once and replayed
// as CUDA graphs.
//
// Every op runs on one stream. Host-side arguments are validated before anything is launched, so a bad call is
// a clear Error and the same checks also run while a captured step is replayed.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kernels/gemv/gemv_quant.cuh"
#include "kernels/persistent/decode_program.cuh"
#include "kernels/rope/rope.cuh"
#include "runtime/backend.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/host_upload.h"
#include "runtime/cuda/range_timer.h"
#include "runtime/cuda/upload_timer.h"
#include "runtime/device_bytes.h"

namespace swrun::cuda {

// RoPE's YaRN terms as the kernels take them (kernels/rope/rope.cuh).
inline RopeYarn rope_yarn(const RopeParams& p) { return {p.yarn, p.yarn_low, p.yarn_high}; }

// What Weight::impl points at: fp32 for 1-D tensors (norm weights); for matrices the file's blocks (`raw`, where a
// block decoder reads the rows), or a bf16 [rows, cols] copy (`data`) where none does; a BF16 matrix's blocks are
// both.
struct DeviceWeight {
  void* data = nullptr;
  bool fp32 = false;
  const void* raw = nullptr;
};

struct KvLayer {
  KvLayerSpec spec;
  __nv_bfloat16* k = nullptr;  // [capacity, n_head_kv, head_dim]
  __nv_bfloat16* v = nullptr;
};

// A decode step captured as a graph. Replays run the step's host code again, which validates the arguments,
// re-stages tokens/position into `staging` and names the host destinations of the reads; then its
// synchronize() launches the graph.
struct CapturedStep {
  cudaGraphExec_t exec = nullptr;
  int n = 0;                                     // batch size at capture
  int32_t* staging = nullptr;                    // pinned [pos0, tokens...] read by the graph's upload
  std::vector<std::pair<const void*, size_t>> reads;  // pinned landing places (and words) of the reads, in order
  std::vector<void*> programs;                   // device copies of the decode programs the graph runs
  int program_instructions = 0;                  // their instructions, all together
  struct Trace {
    uint64_t* stamps;           // device: start of every instruction, then the end
    std::vector<ProgramOp> ops;
  };
  std::vector<Trace> traces;                     // SWRUN_PROGRAM_TRACE=1 only
};

class CudaBackend final : public Backend {
 public:
  // With a log, the set-up's phases (driver, context, cuBLAS) are added to it as sub-phases.
  CudaBackend(int device, LoadLog* log);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }
  size_t device_memory_bytes() const override { return device_memory_bytes_; }
  // Attention sinks, YaRN RoPE and mixture of experts (what the memory plan's backend reports too: runtime/device_bytes.h).
  BackendFeatures features() const override { return device_bytes::cuda_features(); }
  Weight upload(const GgufTensor& t) override;
  Weight weight_rows(const Weight& w, int64_t first, int64_t count) override;
  Buffer alloc(size_t count) override;
  void init_kv(const std::vector<KvLayerSpec>& layers) override;
  size_t kv_bytes() const override { return kv_bytes_; }
  void begin_batch(const int32_t* tokens, int32_t pos0, int n) override;
  void embed(const Weight& table, float scale, Buffer out) override;
  void rmsnorm(Buffer x, const Weight& w, int64_t rows, float eps, Buffer out) override;
  void matmul(Buffer x, const Weight& w, int64_t rows, Buffer out) override;
  void rope(Buffer x, int heads, int head_dim, const RopeParams& p) override;
  void attention(int layer, Buffer q, Buffer k, Buffer v, Buffer out, const AttnParams& p) override;
  void gated_act(Buffer gate, Buffer up, size_t count, GatedAct act) override;
  void add(Buffer x, Buffer y, size_t count) override;
  void add_bias(Buffer x, const Weight& bias, int64_t rows) override;
  void softcap(Buffer x, size_t count, float cap) override;
  void gated_matmul(Buffer x, const Weight& w_gate, const Weight& w_up, int64_t rows, GatedAct act, Buffer gate,
                    Buffer up) override;
  void gated_mlp(Buffer x, const Weight& w_gate, const Weight& w_up, const Weight& w_down, int64_t rows, GatedAct act,
                 Buffer gate, Buffer up, Buffer out) override;
  void matmuls(Buffer x, int64_t rows, const Weight* const* ws, const Buffer* outs, int count) override;
  void qk_norm_rope(Buffer q, Buffer k, const Weight* q_norm, const Weight* k_norm, int64_t tokens, int n_head,
                    int n_head_kv, int head_dim, float eps, const RopeParams& p) override;
  void residual_norm(Buffer y, const Weight* w_post, Buffer x, const Weight* w_next, int64_t rows, int64_t width,
                     float eps, Buffer xn) override;
  void moe(Buffer x, int64_t rows, const MoeFfn& f, Buffer out) override;  // cuda_moe.cu
  void read(Buffer src, size_t offset, size_t count, float* host) override;
  void top_k(Buffer src, size_t count, int k, int32_t* ids, float* values) override;
  void score_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                  RowScore* out) override;
  void compress_rows(Buffer src, int64_t rows, int vocab, const int32_t* targets, uint16_t* out,
                     double* nll) override;
  void synchronize() override;
  bool run_captured(int key, const std::function<void()>& step) override;
  size_t weight_bytes() const override { return weight_bytes_; }
  size_t peak_memory_bytes() const override { return mem_.peak_bytes(); }
  void reset_peak_memory() override { mem_.reset_peak(); }
  void push_range(const char* name, int layer, OpKind op) override;
  void pop_range() override;
  void attach_profiler(Profiler* profiler) override { range_timer_.attach(profiler); }
  // Instructions the persistent decode kernel runs in the step captured under `key` (0: none, or no such step).
  int captured_program_instructions(int key) const {
    auto it = graphs_.find(key);
    return it == graphs_.end() ? 0 : it->second.program_instructions;
  }
  void attach_load_log(LoadLog* log) override { upload_timer_.attach(log); }
  void finish_uploads() override;

 private:
  enum class Mode { Plain, Capturing, Replaying };
  // Unwinds a step whose graph cannot be built; run_captured then runs it with plain launches.
  struct CaptureFailed {
    std::string why;
  };
  struct PendingRead {
    const void* staged;
    size_t words;  // 4-byte words
    void* host;
  };

  // During a replay the step's host code runs for its checks and staging only; nothing is launched. Anything
  // launched ends the decode program recorded so far, which is launched first.
  // Whatever launches next may write any buffer, so the GEMM operand below is forgotten unless it is the operand
  // of `keep` (a GEMM reading it, which leaves it intact).
  bool launching(const float* keep = nullptr) {
    if (mode_ == Mode::Replaying) return false;
    if (gemm_operand_.src != keep) gemm_operand_ = {};
    flush_deferred();
    return true;
  }
  // The bf16 rounding of one fp32 activation buffer, the operand of the bf16 GEMMs. Written by the op that produced
  // the buffer when a GEMM reads it next (a prefill's pre-norms, the attention's output), or else cast by the first
  // GEMM; every GEMM on that buffer reads it until something else is launched or the host synchronizes.
  struct GemmOperand {
    const float* src = nullptr;
    size_t count = 0;
  };
  // Where an op producing `count` floats at src writes their bf16 rounding; the op calls gemm_operand_written
  // after its launch.
  __nv_bfloat16* gemm_operand_target(size_t count);
  void gemm_operand_written(const float* src, size_t count) { gemm_operand_ = {src, count}; }
  // The bf16 operand of x's first `count` floats, cast now unless an earlier op left it.
  const __nv_bfloat16* gemm_operand(const float* x, size_t count);
  // A q/k norm + RoPE waits for the next op: when that is the attention on the same q and k, one launch also
  // stages the attention's inputs (bf16 q, the new K/V cache rows) instead of a second kernel doing it.
  struct PendingNormRope {
    Buffer q, k;
    const float* q_norm;
    const float* k_norm;
    int n_head, n_head_kv, head_dim;
    float eps;
    RopeParams rope;
    const float* factors;
  };
  void launch_norm_rope(const PendingNormRope& r, const AttnStage* stage);
  // A decode step's residual step (one row, a next norm) waits for the next op: when that is a quantized GEMV of
  // its xn (q/k/v or gate/up), the GEMV's blocks compute it as their prologue (kernels/gemv/gemv_quant.cuh).
  struct PendingResidual {
    GemvResidualFold step;  // without arrivals: set by the GEMV that takes it
    int64_t width;
  };
  // The fold of the pending residual step when it writes the xn that a GEMV of `cols` reads (taken: it is no
  // longer pending), else nothing. Called before launching(), which would launch the step on its own.
  std::optional<GemvResidualFold> take_residual_fold(Buffer x, int64_t rows, int64_t cols);
  void flush_deferred();  // launches what waits: the pending norm + RoPE or residual step, then the recorded program
  // ---- the persistent decode kernel (cuda_program.cu) ----
  // A captured one-token step records its ops into a program (kernels/persistent) instead of launching them;
  // each record_* returns false when the op has no program form here, and the op then launches as usual.
  bool recording_program() const { return program_enabled_ && mode_ == Mode::Capturing && n_ == 1; }
  bool record(const ProgramInstr& in);
  bool record_embed(const Weight& table, const DeviceWeight& d, float scale, Buffer out);
  bool record_rmsnorm(Buffer x, const float* w, int64_t rows, int64_t cols, float eps, Buffer out);
  bool record_gemv(Buffer x, const Weight* const* ws, const Buffer* outs, int count, const GatedAct* act);
  bool record_qk_norm_rope(Buffer q, Buffer k, const float* q_norm, const float* k_norm, int n_head, int n_head_kv,
                           int head_dim, float eps, const RopeParams& p, const float* factors);
  bool record_attention(Buffer q, Buffer k, Buffer v, Buffer out, const KvLayer& cache, const AttnParams& p);
  bool record_residual_norm(Buffer y, const float* w_post, Buffer x, const float* w_next, int64_t rows, int64_t width,
                            float eps, Buffer xn);
  bool record_elementwise(ProgramOp op, Buffer x, const float* bias, int64_t count, int64_t cols, float cap);
  void flush_program();  // launches the recorded program (captured into the step's graph)
  void collect_program_trace(const CapturedStep& step);
  void print_program_trace() const;
  const DeviceWeight& device_weight(const Weight& w, const char* op) const;
  const uint8_t* moe_blocks(const Weight& w) const;  // cuda_moe.cu
  const float* moe_bias(const Weight& w) const;
  // An fp32 vector weight of `length` values on the device (null when w is null or not uploaded); anything else
  // is an Error naming `op`.
  const float* device_vector(const Weight* w, int64_t length, const char* op) const;
  // RoPE's LongRoPE frequency factors on the device (null when none), checked against head_dim.
  const float* rope_factors(const RopeParams& p, int head_dim, const char* op) const;
  void require_batch(const char* op) const;
  const int32_t* pos0_dev() const { return static_cast<const int32_t*>(batch_dev_.data()); }
  __nv_bfloat16* bf16_scratch(size_t elems);
  void* upload_staging(const GgufTensor& t);
  void* weight_memory(size_t bytes, const std::string& what);  // for a weight, counted in weight_bytes_
  void* reserve_read_staging(size_t words);
  // The targets of score_rows / compress_rows (and their base rows, when given) copied to the device: returns the
  // device targets; *base_dev receives the device base rows (null without).
  const int32_t* upload_logprob_inputs(int64_t rows, int vocab, const int32_t* targets, const uint16_t* base,
                                       const uint16_t** base_dev);
  // Queues a copy of `words` 4-byte words from device memory to host, delivered by the step's synchronize().
  void queue_read(const void* src, size_t words, void* host);
  // out^T = w x^T through cuBLAS: x [rows, cols], w [n_out, cols], both bf16 or (tf32) both fp32; out fp32 with
  // row stride ldo.
  void gemm(const void* x, const void* w, bool tf32, int64_t n_out, int64_t cols, int ldo, int64_t rows, float* out,
            const std::string& name);
  // out [rows, w.rows] = x w^T for a prefill of bf16 operand xb: on w's bf16 copy, or on slices of its blocks.
  void gemm_weight(const __nv_bfloat16* xb, const Weight& w, const DeviceWeight& d, int64_t rows, float* out);
  // The GEMM on slices of w's blocks (cuda_ops.cu): xb for quantized types, the fp32 x32 for F16/F32 (TF32).
  void matmul_weight_slices(const __nv_bfloat16* xb, const float* x32, const Weight& w, const DeviceWeight& d,
                            int64_t rows, float* out);
  void forget_operand_under(Buffer out, size_t count);  // a GEMM wrote count floats at out: over the operand's source?
  void finish_step();  // waits for the stream, hands reads to their host buffers
  void release_load_staging();
  void drop_graphs();
  void enter_step(Mode mode, CapturedStep* step);
  void complete_step();  // ends a capture or replay pass: launches the graph, waits, delivers the reads
  bool capture_step(int key, const std::function<void()>& step);
  bool abandon_capture();

  std::string device_name_;
  size_t device_memory_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t batch_uploaded_ = nullptr;  // the last plain begin_batch's copy out of pinned staging is done
  cublasHandle_t cublas_ = nullptr;
  DeviceMemory mem_;

  std::deque<DeviceWeight> weights_;
  size_t weight_bytes_ = 0;
  uint8_t* weight_chunk_ = nullptr;  // where weight_memory() hands out the next small weight
  size_t weight_chunk_left_ = 0;
  GrowingBuffer load_staging_{true, "weight upload staging"};
  HostUpload host_upload_{mem_};  // host -> device copies of the weights (SWRUN_UPLOAD)
  GrowingBuffer scratch_bf16_{true, "bf16 activation scratch"};
  GrowingBuffer gemm_operand_buf_{true, "bf16 GEMM operand"};
  GemmOperand gemm_operand_;
  GrowingBuffer decode_workspace_{true, "attention decode workspace"};
  // Two slice buffers taken in turn: a slice is dequantized on slice_stream_ while the GEMM of the one before runs.
  struct WeightSlice {
    GrowingBuffer buffer{true, "dequantized slice of a weight matrix (prefill GEMMs)"};
    cudaEvent_t ready = nullptr;  // slice_stream_: the slice is written
    cudaEvent_t read = nullptr;   // stream_: the GEMM that read it is done
  };
  WeightSlice slices_[2];
  int slice_turn_ = 0;
  cudaStream_t slice_stream_ = nullptr;
  // Weights are uploaded on stream_: slice_stream_ waits for every upload queued so far before it dequantizes again.
  cudaEvent_t uploads_done_ = nullptr;
  bool uploads_since_slice_ = false;
  GrowingBuffer moe_scratch_{true, "mixture-of-experts scratch"};  // device_bytes::moe_scratch_layout
  GrowingBuffer top_k_workspace_{true, "top-k workspace"};
  GrowingBuffer top_k_out_{true, "top-k candidates"};
  // score_rows / compress_rows: the targets then the base rows copied in, and the scores or base rows coming out.
  GrowingBuffer logprob_in_{true, "scored rows' targets and base rows"};
  GrowingBuffer logprob_out_{true, "scored rows' results"};
  GrowingBuffer batch_dev_{true, "batch tokens"};     // [pos0, tokens...]
  GrowingBuffer batch_host_{false, "batch tokens"};   // pinned source of batch_dev_
  GrowingBuffer read_host_{false, "read staging"};    // pinned landing place of read()
  size_t read_capacity_ = 0;                          // words read_host_ holds
  size_t read_used_ = 0;                              // words of read_host_ in use until finish_step
  std::vector<PendingRead> pending_reads_;

  std::vector<KvLayer> kv_;
  size_t kv_bytes_ = 0;

  std::vector<int32_t> tokens_;  // host copy of the current batch, for validation
  int32_t pos0_ = 0;
  int n_ = 0;

  Mode mode_ = Mode::Plain;
  std::map<int, CapturedStep> graphs_;
  std::set<int> plain_keys_;           // keys whose capture failed: always run plainly
  CapturedStep* step_ = nullptr;       // the step being captured or replayed
  size_t step_batches_ = 0;            // begin_batch calls inside it
  size_t replay_reads_ = 0;            // reads matched against step_->reads so far

  // SWRUN_DECODE_PROGRAM=1 turns the persistent decode kernel on: measured slower than the graph of fused kernels
  // on the H200 so far (bench/decode_notes.md), so it is opt-in.
  bool program_enabled_ = false;
  std::vector<ProgramInstr> program_;     // recorded, not yet launched
  GrowingBuffer program_partials_{true, "decode program attention partials"};
  int* program_counters_ = nullptr;  // per KV head: blocks done with their split of the attention
  int program_counter_count_ = 0;
  // SWRUN_PROGRAM_TRACE=1: time per instruction (its op and the barrier after it), summed by op over the steps,
  // printed to stderr when the backend goes away.
  bool program_trace_ = false;
  std::map<std::string, std::pair<double, long>> trace_ns_;  // op -> (ns, instructions)
  long traced_steps_ = 0;
  double traced_ns_ = 0;

  std::optional<PendingNormRope> pending_norm_rope_;
  std::optional<PendingResidual> pending_residual_;
  int* fold_arrivals_ = nullptr;  // the folded residual steps' block counter (kernels/gemv), at 0 between launches

  RangeTimer range_timer_;  // op times for an attached profiler; resolved by finish_step
  UploadTimer upload_timer_;  // the upload's split for an attached load log; reported by finish_uploads
};

}  // namespace swrun::cuda
