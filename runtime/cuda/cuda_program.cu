// Recording a captured one-token step into a decode program (kernels/persistent/decode_program.cuh). The ops
// validate their arguments exactly as before and then, instead of launching, append an instruction; the first op
// without a program form (the output projection, top-k, a read) launches the program recorded so far into the
// graph being captured, then itself. Replays launch the graph: the program's instructions live in device memory
// owned by the captured step.
#include <cmath>
#include <cstdio>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/elementwise/vec.cuh"
#include "runtime/common.h"
#include "runtime/cuda/cuda_backend.h"

namespace swrun::cuda {

bool CudaBackend::record(const ProgramInstr& in) {
  program_.push_back(in);  // every record_* has checked recording_program()
  return true;
}

void CudaBackend::flush_program() {
  if (program_.empty()) return;
  const size_t bytes = program_.size() * sizeof(ProgramInstr);
  auto* device = static_cast<ProgramInstr*>(mem_.device(bytes, "decode program"));
  step_->programs.push_back(device);
  // The instructions are fixed for the graph's lifetime: copied once now, outside the captured stream.
  check_cuda(cudaMemcpy(device, program_.data(), bytes, cudaMemcpyHostToDevice), "decode program upload");
  const int count = int(program_.size());
  step_->program_instructions += count;
  uint64_t* stamps = nullptr;
  if (program_trace_) {
    stamps = static_cast<uint64_t*>(mem_.device((program_.size() + 1) * sizeof(uint64_t), "decode program trace"));
    CapturedStep::Trace trace{stamps, {}};
    for (const ProgramInstr& in : program_) trace.ops.push_back(in.op);
    step_->traces.push_back(std::move(trace));
  }
  program_.clear();
  if (cudaError_t status = launch_decode_program(device, count, stamps, stream_); status != cudaSuccess) {
    cudaGetLastError();
    throw CaptureFailed{std::string("decode program: ") + cudaGetErrorString(status)};
  }
}

void CudaBackend::collect_program_trace(const CapturedStep& step) {
  if (step.traces.empty()) return;
  ++traced_steps_;
  for (const CapturedStep::Trace& t : step.traces) {
    std::vector<uint64_t> stamps(t.ops.size() + 1);
    check_cuda(cudaMemcpy(stamps.data(), t.stamps, stamps.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost),
               "decode program trace");
    for (size_t i = 0; i < t.ops.size(); ++i) {
      auto& [ns, n] = trace_ns_[program_op_name(t.ops[i])];
      ns += double(stamps[i + 1] - stamps[i]);
      ++n;
    }
    traced_ns_ += double(stamps.back() - stamps.front());
  }
}

void CudaBackend::print_program_trace() const {
  if (traced_steps_ == 0) return;
  std::fprintf(stderr, "decode program trace: %ld steps, %.1f us of program per step\n", traced_steps_,
               traced_ns_ / 1e3 / double(traced_steps_));
  std::fprintf(stderr, "  %-14s %8s %12s %12s\n", "op", "per step", "us per step", "us each");
  for (const auto& [op, v] : trace_ns_)
    std::fprintf(stderr, "  %-14s %8.1f %12.1f %12.2f\n", op.c_str(), double(v.second) / double(traced_steps_),
                 v.first / 1e3 / double(traced_steps_), v.first / 1e3 / double(v.second));
}

bool CudaBackend::record_embed(const Weight& table, const DeviceWeight& d, float scale, Buffer out) {
  if (!recording_program() || !d.raw || !program_gemv_supported(table.type, table.cols)) return false;
  ProgramInstr in{};
  in.op = ProgramOp::Embed;
  in.embed = {static_cast<const uint8_t*>(d.raw), table.type, table.cols, pos0_dev() + 1, scale, out.data};
  return record(in);
}

bool CudaBackend::record_rmsnorm(Buffer x, const float* w, int64_t rows, int64_t cols, float eps, Buffer out) {
  if (!recording_program() || rows != 1 || !program_norm_supported(cols)) return false;
  ProgramInstr in{};
  in.op = ProgramOp::RmsNorm;
  in.norm = {x.data, w, out.data, int(cols), eps};
  return record(in);
}

bool CudaBackend::record_gemv(Buffer x, const Weight* const* ws, const Buffer* outs, int count, const GatedAct* act) {
  if (!recording_program() || count < 1 || count > kGemvMultiMax || !aligned_to(x.data, 16)) return false;
  ProgramInstr in{};
  in.op = ProgramOp::Gemv;
  ProgramGemv& g = in.gemv;
  g.count = count;
  g.gated = act != nullptr;
  g.act = act && *act == GatedAct::Silu ? GatedActKind::Silu : GatedActKind::GeluTanh;
  g.x = x.data;
  g.cols = ws[0]->cols;
  for (int i = 0; i < count; ++i) {
    const DeviceWeight& d = device_weight(*ws[i], "decode program");
    if (!d.raw || ws[i]->cols != g.cols || ws[i]->rows > kProgramMaxGemvRows ||
        !program_gemv_supported(ws[i]->type, ws[i]->cols))
      return false;
    g.w[i] = static_cast<const uint8_t*>(d.raw);
    g.type[i] = ws[i]->type;
    g.n_out[i] = ws[i]->rows;
    g.out[i] = g.gated ? outs[0].data : outs[i].data;
  }
  if (g.gated && (count != 2 || g.type[0] != g.type[1] || g.n_out[0] != g.n_out[1])) return false;
  return record(in);
}

bool CudaBackend::record_qk_norm_rope(Buffer q, Buffer k, const float* q_norm, const float* k_norm, int n_head,
                                      int n_head_kv, int head_dim, float eps, const RopeParams& p,
                                      const float* factors) {
  if (!recording_program() || !program_rope_supported(head_dim)) return false;
  ProgramInstr in{};
  in.op = ProgramOp::QkNormRope;
  ProgramQkNormRope& r = in.rope;
  r.q = q.data;
  r.k = k.data;
  r.q_norm = q_norm;
  r.k_norm = k_norm;
  r.q_heads = n_head;
  r.k_heads = n_head_kv;
  r.head_dim = head_dim;
  r.eps = eps;
  r.pos = pos0_dev();
  r.freq = rope_freq(p.freq_base, head_dim, factors, p.attn_factor, p.freq_scale, rope_yarn(p));
  r.neox = p.style == RopeStyle::NeoX;
  return record(in);
}

// The new key and value go into the cache from the q/k-norm + RoPE instruction just before (one barrier fewer);
// without such an instruction the attention runs as its own kernels.
bool CudaBackend::record_attention(Buffer q, Buffer k, Buffer v, Buffer out, const KvLayer& cache,
                                   const AttnParams& p) {
  // Sinks (gpt-oss) have no program form: such a layer's attention runs as the flash kernels, which add them.
  if (!recording_program() || program_.empty() || p.policy.right != 0 || p.sinks.impl ||
      !program_attention_supported(p.n_head, p.n_head_kv, p.head_dim))
    return false;
  ProgramInstr& rope = program_.back();
  if (rope.op != ProgramOp::QkNormRope || rope.rope.k != k.data || rope.rope.k_heads != p.n_head_kv ||
      rope.rope.head_dim != p.head_dim || rope.rope.k_cache)
    return false;
  const int max_splits = program_attention_max_splits(p.n_head_kv);
  auto* partials = static_cast<float*>(program_partials_.ensure(
      mem_, program_attention_workspace_floats(p.n_head, p.head_dim, max_splits) * sizeof(float)));
  if (p.n_head_kv > program_counter_count_) {
    // Counters return to zero after every use; they start at zero once. Programs recorded earlier keep theirs.
    program_counters_ = static_cast<int*>(mem_.device(size_t(p.n_head_kv) * sizeof(int), "decode program counters"));
    check_cuda(cudaMemset(program_counters_, 0, size_t(p.n_head_kv) * sizeof(int)), "decode program counters");
    program_counter_count_ = p.n_head_kv;
  }
  rope.rope.v = v.data;
  rope.rope.k_cache = cache.k;
  rope.rope.v_cache = cache.v;
  rope.rope.capacity = cache.spec.capacity;
  ProgramInstr in{};
  in.op = ProgramOp::Attention;
  in.attn = {q.data,        cache.k, cache.v,   out.data,   p.n_head, p.n_head_kv,          p.head_dim,
             cache.spec.capacity, p.policy.left, p.scale, p.softcap, pos0_dev(), partials, program_counters_,
             max_splits};
  return record(in);
}

bool CudaBackend::record_residual_norm(Buffer y, const float* w_post, Buffer x, const float* w_next, int64_t rows,
                                       int64_t width, float eps, Buffer xn) {
  if (!recording_program() || rows != 1 || !program_norm_supported(width)) return false;
  ProgramInstr in{};
  in.op = ProgramOp::ResidualNorm;
  in.residual = {y.data, w_post, x.data, w_next, w_next ? xn.data : nullptr, int(width), eps};
  return record(in);
}

bool CudaBackend::record_elementwise(ProgramOp op, Buffer x, const float* bias, int64_t count, int64_t cols,
                                     float cap) {
  if (!recording_program()) return false;
  ProgramInstr in{};
  in.op = op;
  in.elementwise = {x.data, bias, count, cols, cap};
  return record(in);
}

}  // namespace swrun::cuda
