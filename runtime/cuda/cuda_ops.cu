// CudaBackend's compute ops: argument checks on the host, then launches on the backend's stream.
#include <algorithm>
#include <optional>
#include <string>

#include "kernels/attention/attention.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/elementwise/elementwise.cuh"
#include "kernels/elementwise/vec.cuh"
#include "kernels/dequant/dequant.cuh"
#include "kernels/gemv/gemv.cuh"
#include "kernels/gemv/gemv_quant.cuh"
#include "kernels/norm/rmsnorm.cuh"
#include "kernels/rope/rope.cuh"
#include "runtime/common.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/device_bytes.h"

namespace swrun::cuda {
namespace {

// The slices' sizes and types are the memory plan's rules (runtime/device_bytes.h), so the plan follows them.
using device_bytes::kWeightSliceBytes;
using device_bytes::weight_slice_elem_bytes;
using device_bytes::weight_slice_rows;
using device_bytes::weight_slices_in_tf32;

void require_floats(Buffer b, size_t need, const char* op, const char* what) {
  if (!b.data || b.count < need)
    fail(std::string(op) + ": " + what + " holds " + std::to_string(b.count) + " floats, " + std::to_string(need) +
         " needed");
}

}  // namespace

void CudaBackend::embed(const Weight& table, float scale, Buffer out) {
  require_batch("embed");
  const DeviceWeight& d = device_weight(table, "embed");
  if (d.fp32) fail("embed: '" + table.name + "' is a vector, not an embedding table");
  require_floats(out, size_t(n_) * size_t(table.cols), "embed", "output");
  for (int i = 0; i < n_; ++i)
    if (tokens_[i] < 0 || tokens_[i] >= table.rows)
      fail("embed: token " + std::to_string(tokens_[i]) + " at batch index " + std::to_string(i) +
           " is outside the vocabulary of " + std::to_string(table.rows));
  if (record_embed(table, d, scale, out)) return;
  if (!launching()) return;
  if (d.raw)  // from the file's blocks: the values the CPU reference dequantizes
    embed_rows_quant(table.type, d.raw, pos0_dev() + 1, n_, table.cols, scale, out.data, stream_);
  else
    embed_rows_bf16(static_cast<const __nv_bfloat16*>(d.data), pos0_dev() + 1, n_, table.cols, scale, out.data,
                    stream_);
}

void CudaBackend::rmsnorm(Buffer x, const Weight& w, int64_t rows, float eps, Buffer out) {
  const DeviceWeight& d = device_weight(w, "rmsnorm");
  if (!d.fp32) fail("rmsnorm: weight '" + w.name + "' is a matrix, not a vector");
  const size_t need = size_t(rows) * size_t(w.cols);
  require_floats(x, need, "rmsnorm", "input");
  require_floats(out, need, "rmsnorm", "output");
  if (record_rmsnorm(x, static_cast<const float*>(d.data), rows, w.cols, eps, out)) return;
  if (!launching()) return;
  __nv_bfloat16* out16 = rows > kGemvQuantMaxRows ? gemm_operand_target(need) : nullptr;
  rmsnorm_f32(x.data, static_cast<const float*>(d.data), out.data, rows, w.cols, eps, stream_, out16);
  if (out16) gemm_operand_written(out.data, need);
}

void CudaBackend::matmul(Buffer x, const Weight& w, int64_t rows, Buffer out) {
  const DeviceWeight& d = device_weight(w, "matmul");
  if (d.fp32) fail("matmul: weight '" + w.name + "' is a vector, not a matrix");
  require_floats(x, size_t(rows) * size_t(w.cols), "matmul", "input");
  require_floats(out, size_t(rows) * size_t(w.rows), "matmul", "output");
  if (const Weight* ws[] = {&w}; rows == 1 && record_gemv(x, ws, &out, 1, nullptr)) return;
  if (rows <= 0 || !launching(x.data)) return;
  // A few rows (decode steps): stream the file's blocks once with fp32 activations.
  if (d.raw && rows <= kGemvQuantMaxRows) {
    gemv_quant(w.type, d.raw, x.data, out.data, int(rows), w.rows, w.cols, stream_);
    return;
  }
  if (d.data && rows == 1 && gemv_bf16_supported(x.data, static_cast<const __nv_bfloat16*>(d.data), w.cols)) {
    gemv_bf16(x.data, static_cast<const __nv_bfloat16*>(d.data), out.data, w.rows, w.cols, stream_);
    return;
  }
  const size_t n_in = size_t(rows) * size_t(w.cols);
  if (!d.data && weight_slices_in_tf32(w.type))
    matmul_weight_slices(nullptr, x.data, w, d, rows, out.data);
  else
    gemm_weight(gemm_operand(x.data, n_in), w, d, rows, out.data);
  forget_operand_under(out, size_t(rows) * size_t(w.rows));
}

void CudaBackend::forget_operand_under(Buffer out, size_t count) {
  if (out.data < gemm_operand_.src + gemm_operand_.count && gemm_operand_.src < out.data + count) gemm_operand_ = {};
}

// cuBLAS is column-major: out^T [n_out x rows] (leading dimension ldo) = W [stored as cols x n_out, transposed]
// * x^T [cols x rows], with fp32 accumulation. bf16 operands, or fp32 ones multiplied in TF32.
void CudaBackend::gemm(const void* x, const void* w, bool tf32, int64_t n_out, int64_t cols, int ldo, int64_t rows,
                       float* out, const std::string& name) {
  const float alpha = 1.f, beta = 0.f;
  const cudaDataType_t t = tf32 ? CUDA_R_32F : CUDA_R_16BF;
  const cublasStatus_t status =
      cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(n_out), int(rows), int(cols), &alpha, w, t, int(cols), x, t,
                   int(cols), &beta, out, CUDA_R_32F, ldo, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                   CUBLAS_GEMM_DEFAULT);
  if (status != CUBLAS_STATUS_SUCCESS) check_cublas(status, ("matmul " + name).c_str());
}

void CudaBackend::gemm_weight(const __nv_bfloat16* xb, const Weight& w, const DeviceWeight& d, int64_t rows,
                              float* out) {
  if (d.data)
    gemm(xb, d.data, false, w.rows, w.cols, int(w.rows), rows, out, w.name);
  else
    matmul_weight_slices(xb, nullptr, w, d, rows, out);
}

// Many rows against a matrix kept only in its blocks: slices of it dequantized one at a time into a scratch buffer,
// each multiplied through cuBLAS into its columns of out. Quantized blocks become bf16 slices against the bf16
// operand xb; F16/F32 become fp32 slices multiplied in TF32 against the fp32 activations x32 themselves: TF32 holds
// an F16 weight's 11 significant bits exactly, and the activations keep 11 bits where bf16 keeps 8.
void CudaBackend::matmul_weight_slices(const __nv_bfloat16* xb, const float* x32, const Weight& w,
                                       const DeviceWeight& d, int64_t rows, float* out) {
  const bool tf32 = weight_slices_in_tf32(w.type);
  const size_t elem_bytes = weight_slice_elem_bytes(w.type);
  // Slices of a multiple of 128 rows where that many fit: each slice's output columns then start 512-byte aligned,
  // which cuBLAS's fast kernels need (a slice at an odd row ran the 7B prefill at a third of its speed).
  const int64_t slice_rows = weight_slice_rows(w.type, w.cols);
  const size_t row_bytes = ggml_row_bytes(ggml_type_info(uint32_t(w.type)), w.cols);
  // The slices alternate between two buffers, dequantized on a stream of their own: a buffer is rewritten once the
  // GEMM that read it is done, and each GEMM waits for its slice. Dequantizing needs nothing the main stream writes
  // (weights never change), so the next slice, of this matrix or the next one, is ready when its GEMM starts.
  // Inside a captured step (never a prefill in practice) everything stays on the one stream.
  const bool overlap = mode_ == Mode::Plain;
  if (overlap && uploads_since_slice_) {  // the blocks' upload, queued on stream_, must be done
    check_cuda(cudaEventRecord(uploads_done_, stream_), "weight slice");
    check_cuda(cudaStreamWaitEvent(slice_stream_, uploads_done_), "weight slice");
    uploads_since_slice_ = false;
  }
  for (int64_t r0 = 0; r0 < w.rows; r0 += slice_rows) {
    const int64_t n = std::min(slice_rows, w.rows - r0);
    WeightSlice& slice = slices_[slice_turn_];
    slice_turn_ ^= 1;
    void* buf = slice.buffer.ensure(mem_, std::max(kWeightSliceBytes, size_t(n * w.cols) * elem_bytes));
    cudaStream_t dq = overlap ? slice_stream_ : stream_;
    if (overlap) check_cuda(cudaStreamWaitEvent(dq, slice.read), "weight slice");
    const uint8_t* blocks = static_cast<const uint8_t*>(d.raw) + size_t(r0) * row_bytes;
    if (tf32)
      dequantize_to_f32(w.type, blocks, buf, n * w.cols, dq);
    else
      dequantize_to_bf16(w.type, blocks, buf, n * w.cols, dq);
    if (overlap) {
      check_cuda(cudaEventRecord(slice.ready, dq), "weight slice");
      check_cuda(cudaStreamWaitEvent(stream_, slice.ready), "weight slice");
    }
    gemm(tf32 ? static_cast<const void*>(x32) : xb, buf, tf32, n, w.cols, int(w.rows), rows, out + r0, w.name);
    if (overlap) check_cuda(cudaEventRecord(slice.read, stream_), "weight slice");
  }
}

const float* CudaBackend::device_vector(const Weight* w, int64_t length, const char* op) const {
  if (!w || !w->impl) return nullptr;
  const DeviceWeight& d = device_weight(*w, op);
  if (!d.fp32 || w->cols != length)
    fail(std::string(op) + ": weight '" + w->name + "' is not a vector of " + std::to_string(length));
  return static_cast<const float*>(d.data);
}

const float* CudaBackend::rope_factors(const RopeParams& p, int head_dim, const char* op) const {
  return device_vector(&p.freq_factors, head_dim / 2, op);
}

void CudaBackend::rope(Buffer x, int heads, int head_dim, const RopeParams& p) {
  require_batch("rope");
  require_floats(x, size_t(n_) * size_t(heads) * size_t(head_dim), "rope", "input");
  const float* factors = rope_factors(p, head_dim, "rope");
  if (!launching()) return;
  rope_f32(x.data, n_, heads, head_dim, pos0_dev(), p.freq_base, p.freq_scale, factors, p.attn_factor,
           p.style == RopeStyle::NeoX ? RopeKind::NeoX : RopeKind::Normal, stream_, rope_yarn(p));
}

void CudaBackend::attention(int layer, Buffer q, Buffer k, Buffer v, Buffer out, const AttnParams& p) {
  require_batch("attention");
  // Built only for a message: this runs once per layer of every step, graph replays included.
  auto where = [layer] { return "attention (layer " + std::to_string(layer) + ")"; };
  auto require = [&](Buffer b, size_t need, const char* what) {
    if (!b.data || b.count < need) require_floats(b, need, where().c_str(), what);
  };
  if (layer < 0 || layer >= int(kv_.size()))
    fail(where() + ": no KV cache for this layer (init_kv made " + std::to_string(kv_.size()) + ")");
  const KvLayer& cache = kv_[layer];
  const KvLayerSpec& s = cache.spec;
  if (p.n_head_kv != s.n_head_kv || p.head_dim != s.head_dim)
    fail(where() + ": " + std::to_string(p.n_head_kv) + " KV heads of " + std::to_string(p.head_dim) +
         " but the cache holds " + std::to_string(s.n_head_kv) + " of " + std::to_string(s.head_dim));
  if (p.n_head <= 0 || p.n_head % p.n_head_kv != 0)
    fail(where() + ": " + std::to_string(p.n_head) + " query heads is not a multiple of the KV heads");
  if (!valid_softcap(p.softcap))
    fail(where() + ": softcap " + std::to_string(p.softcap) + " must be 0 (none) or positive and finite");
  // gpt-oss's sinks: an fp32 vector of one logit per query head, which every kernel below adds to its softmax.
  const float* sinks = p.sinks.impl ? device_vector(&p.sinks, p.n_head, where().c_str()) : nullptr;
  const size_t q_elems = size_t(n_) * size_t(p.n_head) * size_t(p.head_dim);
  const size_t kv_elems = size_t(n_) * size_t(p.n_head_kv) * size_t(p.head_dim);
  require(q, q_elems, "q");
  require(k, kv_elems, "k");
  require(v, kv_elems, "v");
  require(out, q_elems, "output");
  // Rows the cache must hold at once: every key any query of this batch can see, plus the batch itself.
  const int64_t kv_len = int64_t(pos0_) + n_;
  const int64_t visible = p.policy.windowed() ? std::min<int64_t>(kv_len, int64_t(p.policy.left) + n_) : kv_len;
  if (std::max<int64_t>(visible, n_) > s.capacity)
    fail(where() + ": " + describe(p.policy) + " over " + std::to_string(kv_len) + " keys with a batch of " +
         std::to_string(n_) + " needs " + std::to_string(std::max<int64_t>(visible, n_)) +
         " cache rows, the cache has " + std::to_string(s.capacity));
  if (n_ == 1 && p.policy.kind != AttnKind::DenseNaive && record_attention(q, k, v, out, cache, p)) return;
  // The q/k norm + RoPE just before, on these q and k, is done with the staging: in the decode kernel itself, or
  // in one launch before a prefill's.
  std::optional<PendingNormRope> rotate;
  if (pending_norm_rope_ && pending_norm_rope_->q.data == q.data && pending_norm_rope_->k.data == k.data &&
      pending_norm_rope_->n_head == p.n_head && pending_norm_rope_->n_head_kv == p.n_head_kv &&
      pending_norm_rope_->head_dim == p.head_dim && aligned_to(v.data, 16)) {
    rotate = pending_norm_rope_;
    pending_norm_rope_.reset();
  }
  if (!launching()) return;

  FlashAttnArgs a;
  a.head_dim = p.head_dim;
  // A decode step's plain flash kernel takes the norm + RoPE rows as the projection wrote them and stages them
  // itself.
  const bool fresh = rotate && n_ == 1 && p.policy.kind != AttnKind::DenseNaive && flash_decode_stages_fresh_rows(a);
  if (fresh) {
    const PendingNormRope& r = *rotate;
    a.fresh = {q.data, k.data, v.data, r.q_norm, r.k_norm, r.eps, r.rope.freq_base, r.rope.freq_scale,
               r.rope.attn_factor, r.factors, r.rope.style == RopeStyle::NeoX, rope_yarn(r.rope)};
  } else {
    __nv_bfloat16* q16 = bf16_scratch(q_elems);
    if (rotate) {
      const AttnStage stage{q16, v.data, cache.k, cache.v, s.capacity};
      launch_norm_rope(*rotate, &stage);
    } else {
      stage_attention_bf16(q.data, q16, q_elems, k.data, v.data, cache.k, cache.v, n_,
                           int64_t(p.n_head_kv) * p.head_dim, s.capacity, pos0_dev(), stream_);
    }
    a.q = q16;
  }
  a.k = cache.k;
  a.v = cache.v;
  a.o = out.data;
  a.o_fp32 = true;
  a.dtype = AttnDtype::BF16;
  a.q_stride = int64_t(p.n_head) * p.head_dim;
  a.kv_stride = int64_t(p.n_head_kv) * p.head_dim;
  a.o_stride = a.q_stride;
  a.n_q = n_;
  a.n_head = p.n_head;
  a.n_head_kv = p.n_head_kv;
  a.head_dim = p.head_dim;
  a.q_pos0 = pos0_;
  a.q_pos0_dev = pos0_dev();
  a.capacity = s.capacity;
  a.left = p.policy.left;
  a.right = p.policy.right;
  a.softcap = p.softcap;
  a.sinks = sinks;
  a.scale = p.scale;
  if (p.policy.kind == AttnKind::DenseNaive) {
    // The baseline sizes its score matrix from the host position, which a graph replay would not update.
    if (mode_ == Mode::Capturing) throw CaptureFailed{"dense-naive attention takes its position from the host"};
    a.q_pos0_dev = nullptr;
    mem_.note_transient(naive_attention_workspace_bytes(a));
    naive_attention(a, stream_);
  } else if (n_ == 1) {
    // Sized for the largest key range this cache can serve, so a captured step stays valid as positions grow.
    const int32_t max_kv_len = s.capacity;
    void* workspace = decode_workspace_.ensure(mem_, flash_decode_workspace_bytes(a, max_kv_len));
    flash_attention_decode(a, max_kv_len, workspace, stream_);
  } else {
    use_fastest_variant(a);  // measured on prefill only: split-K decode keeps the base kernels
    // The output projection's GEMM reads the output next: its bf16 rounding is written by the same epilogue.
    if (n_ > kGemvQuantMaxRows) a.o16 = gemm_operand_target(q_elems);
    flash_attention(a, stream_);
    if (a.o16) gemm_operand_written(out.data, q_elems);
  }
}

void CudaBackend::gated_act(Buffer gate, Buffer up, size_t count, GatedAct act) {
  require_floats(gate, count, "gated_act", "gate");
  require_floats(up, count, "gated_act", "up");
  if (!launching()) return;
  gated_activation(gate.data, up.data, count, act == GatedAct::Silu ? GatedActKind::Silu : GatedActKind::GeluTanh,
                   stream_);
}

void CudaBackend::gated_matmul(Buffer x, const Weight& w_gate, const Weight& w_up, int64_t rows, GatedAct act,
                               Buffer gate, Buffer up) {
  const DeviceWeight& g = device_weight(w_gate, "gated_matmul");
  const DeviceWeight& u = device_weight(w_up, "gated_matmul");
  const bool fused = g.raw && u.raw && w_gate.type == w_up.type && w_gate.rows == w_up.rows &&
                     w_gate.cols == w_up.cols && rows >= 1 && rows <= kGemvQuantMaxRows;
  if (!fused) return Backend::gated_matmul(x, w_gate, w_up, rows, act, gate, up);
  require_floats(x, size_t(rows) * size_t(w_gate.cols), "gated_matmul", "input");
  require_floats(gate, size_t(rows) * size_t(w_gate.rows), "gated_matmul", "output");
  if (const Weight* ws[] = {&w_gate, &w_up}; rows == 1 && record_gemv(x, ws, &gate, 2, &act)) return;
  const std::optional<GemvResidualFold> fold = take_residual_fold(x, rows, w_gate.cols);
  if (!launching()) return;
  gemv_quant_gated(w_gate.type, g.raw, u.raw, x.data, gate.data, int(rows), w_gate.rows, w_gate.cols,
                   act == GatedAct::Silu ? GatedActKind::Silu : GatedActKind::GeluTanh, stream_,
                   fold ? &*fold : nullptr);
}

void CudaBackend::gated_mlp(Buffer x, const Weight& w_gate, const Weight& w_up, const Weight& w_down, int64_t rows,
                            GatedAct act, Buffer gate, Buffer up, Buffer out) {
  const DeviceWeight& g = device_weight(w_gate, "gated_mlp");
  const DeviceWeight& u = device_weight(w_up, "gated_mlp");
  const DeviceWeight& dn = device_weight(w_down, "gated_mlp");
  const int64_t ff = w_gate.rows;
  // A prefill whose three GEMMs take bf16 operands: the product goes straight into the down projection's bf16
  // operand. (F16/F32 weights multiply in TF32 against fp32 activations, so their product is written in fp32.)
  auto bf16_gemm = [](const Weight& w, const DeviceWeight& d) {
    return !d.fp32 && (d.data || !weight_slices_in_tf32(w.type));
  };
  const bool prefill = rows > kGemvQuantMaxRows && bf16_gemm(w_gate, g) && bf16_gemm(w_up, u) &&
                       bf16_gemm(w_down, dn) && w_up.rows == ff && w_up.cols == w_gate.cols && w_down.cols == ff;
  if (!prefill) return Backend::gated_mlp(x, w_gate, w_up, w_down, rows, act, gate, up, out);
  const size_t n_in = size_t(rows) * size_t(w_gate.cols), n_ff = size_t(rows) * size_t(ff);
  require_floats(x, n_in, "gated_mlp", "input");
  require_floats(gate, n_ff, "gated_mlp", "gate");
  require_floats(up, n_ff, "gated_mlp", "up");
  require_floats(out, size_t(rows) * size_t(w_down.rows), "gated_mlp", "output");
  if (!launching(x.data)) return;
  const __nv_bfloat16* xb = gemm_operand(x.data, n_in);
  gemm_weight(xb, w_gate, g, rows, gate.data);
  gemm_weight(xb, w_up, u, rows, up.data);
  __nv_bfloat16* product = gemm_operand_target(n_ff);  // the rounding of no fp32 buffer: recorded as none
  gated_activation_bf16(gate.data, up.data, product, n_ff,
                        act == GatedAct::Silu ? GatedActKind::Silu : GatedActKind::GeluTanh, stream_);
  gemm_weight(product, w_down, dn, rows, out.data);
}

void CudaBackend::matmuls(Buffer x, int64_t rows, const Weight* const* ws, const Buffer* outs, int count) {
  bool fused = count >= 1 && count <= kGemvMultiMax && rows >= 1 && rows <= kGemvQuantMaxRows;
  for (int i = 0; fused && i < count; ++i)
    fused = device_weight(*ws[i], "matmuls").raw && ws[i]->cols == ws[0]->cols;
  if (!fused) return Backend::matmuls(x, rows, ws, outs, count);
  GemvMultiArgs a{};
  a.count = count;
  require_floats(x, size_t(rows) * size_t(ws[0]->cols), "matmuls", "input");
  for (int i = 0; i < count; ++i) {
    require_floats(outs[i], size_t(rows) * size_t(ws[i]->rows), "matmuls", "output");
    a.w[i] = static_cast<const uint8_t*>(device_weight(*ws[i], "matmuls").raw);
    a.out[i] = outs[i].data;
    a.n_out[i] = ws[i]->rows;
    a.type[i] = ws[i]->type;
  }
  if (rows == 1 && record_gemv(x, ws, outs, count, nullptr)) return;
  const std::optional<GemvResidualFold> fold = take_residual_fold(x, rows, ws[0]->cols);
  if (!launching()) return;
  gemv_quant_multi(a, x.data, int(rows), ws[0]->cols, stream_, fold ? &*fold : nullptr);
}

void CudaBackend::qk_norm_rope(Buffer q, Buffer k, const Weight* q_norm, const Weight* k_norm, int64_t tokens,
                               int n_head, int n_head_kv, int head_dim, float eps, const RopeParams& p) {
  require_batch("qk_norm_rope");
  if (head_dim % 4 != 0 || head_dim > kNormRopeMaxHeadDim)
    return Backend::qk_norm_rope(q, k, q_norm, k_norm, tokens, n_head, n_head_kv, head_dim, eps, p);
  if (tokens != n_)
    fail("qk_norm_rope: " + std::to_string(tokens) + " tokens in a batch of " + std::to_string(n_));
  const float* qn = device_vector(q_norm, head_dim, "qk_norm_rope");
  const float* kn = device_vector(k_norm, head_dim, "qk_norm_rope");
  require_floats(q, size_t(n_) * size_t(n_head) * size_t(head_dim), "qk_norm_rope", "q");
  require_floats(k, size_t(n_) * size_t(n_head_kv) * size_t(head_dim), "qk_norm_rope", "k");
  const float* factors = rope_factors(p, head_dim, "qk_norm_rope");
  if (record_qk_norm_rope(q, k, qn, kn, n_head, n_head_kv, head_dim, eps, p, factors)) return;
  if (!launching()) return;
  // Held back one op: an attention on these q and k next stages its inputs in the same launch (attention()).
  pending_norm_rope_ = PendingNormRope{q, k, qn, kn, n_head, n_head_kv, head_dim, eps, p, factors};
}

void CudaBackend::launch_norm_rope(const PendingNormRope& r, const AttnStage* stage) {
  norm_rope_f32(r.q.data, r.k.data, r.q_norm, r.k_norm, n_, r.n_head, r.n_head_kv, r.head_dim, r.eps, pos0_dev(),
                r.rope.freq_base, r.rope.freq_scale, r.factors, r.rope.attn_factor,
                r.rope.style == RopeStyle::NeoX ? RopeKind::NeoX : RopeKind::Normal, stream_, stage,
                rope_yarn(r.rope));
}

void CudaBackend::flush_deferred() {
  // What they write may be the operand's source.
  if (pending_norm_rope_ || pending_residual_ || !program_.empty()) gemm_operand_ = {};
  if (pending_norm_rope_) {
    const PendingNormRope r = *pending_norm_rope_;
    pending_norm_rope_.reset();
    launch_norm_rope(r, nullptr);
  }
  if (pending_residual_) {
    const PendingResidual r = *pending_residual_;
    pending_residual_.reset();
    gemv_residual_step(r.step, r.width, stream_);
  }
  flush_program();
}

std::optional<GemvResidualFold> CudaBackend::take_residual_fold(Buffer x, int64_t rows, int64_t cols) {
  if (!pending_residual_ || rows != 1 || x.data != pending_residual_->step.xn || cols != pending_residual_->width)
    return std::nullopt;
  GemvResidualFold fold = pending_residual_->step;
  pending_residual_.reset();
  if (!fold_arrivals_) {
    fold_arrivals_ = static_cast<int*>(mem_.device(sizeof(int), "residual fold counter"));
    check_cuda(cudaMemset(fold_arrivals_, 0, sizeof(int)), "residual fold counter");  // left at 0 by every use
  }
  fold.arrivals = fold_arrivals_;
  return fold;
}

void CudaBackend::residual_norm(Buffer y, const Weight* w_post, Buffer x, const Weight* w_next, int64_t rows,
                                int64_t width, float eps, Buffer xn) {
  const float* post = device_vector(w_post, width, "residual_norm");
  const float* next = device_vector(w_next, width, "residual_norm");
  const size_t need = size_t(rows) * size_t(width);
  require_floats(y, need, "residual_norm", "y");
  require_floats(x, need, "residual_norm", "x");
  if (next) require_floats(xn, need, "residual_norm", "output");
  if (record_residual_norm(y, post, x, next, rows, width, eps, xn)) return;
  if (!launching()) return;
  // One row into a next norm: held back for the GEMV of xn that follows (take_residual_fold).
  if (rows == 1 && next && gemv_fold_supported(width) && aligned_to(y.data, 16) && aligned_to(x.data, 16) &&
      aligned_to(xn.data, 16)) {
    pending_residual_ = PendingResidual{{y.data, post, x.data, next, xn.data, eps, nullptr}, width};
    return;
  }
  // In a prefill the next block's projections read xn through bf16 GEMMs: its rounding is written in the same pass.
  __nv_bfloat16* xn16 = next && rows > kGemvQuantMaxRows ? gemm_operand_target(need) : nullptr;
  residual_norm_f32(y.data, post, x.data, next, next ? xn.data : nullptr, rows, width, eps, stream_, xn16);
  if (xn16) gemm_operand_written(xn.data, need);
}

void CudaBackend::add(Buffer x, Buffer y, size_t count) {
  require_floats(x, count, "add", "x");
  require_floats(y, count, "add", "y");
  if (!launching()) return;
  add_inplace(x.data, y.data, count, stream_);
}

void CudaBackend::add_bias(Buffer x, const Weight& bias, int64_t rows) {
  const DeviceWeight& d = device_weight(bias, "add_bias");
  if (!d.fp32) fail("add_bias: '" + bias.name + "' is a matrix, not a vector");
  require_floats(x, size_t(rows) * size_t(bias.cols), "add_bias", "x");
  if (record_elementwise(ProgramOp::AddBias, x, static_cast<const float*>(d.data), rows * bias.cols, bias.cols, 0.f))
    return;
  if (!launching()) return;
  add_bias_rows(x.data, static_cast<const float*>(d.data), rows, bias.cols, stream_);
}

void CudaBackend::softcap(Buffer x, size_t count, float cap) {
  require_floats(x, count, "softcap", "x");
  if (!(cap > 0.f)) fail("softcap: the cap must be positive");
  if (record_elementwise(ProgramOp::Softcap, x, nullptr, int64_t(count), 0, cap)) return;
  if (!launching()) return;
  softcap_inplace(x.data, count, cap, stream_);
}

}  // namespace swrun::cuda
