// Device bytes of the CUDA backend's allocations, as rules in one place: the memory plan (engine/memory_plan.cpp)
// counts with them before anything is allocated, and the CUDA backend (runtime/cuda/) can size its allocations
// with the same calls, so that the two cannot drift apart. Header-only and free of CUDA, so that CPU-only builds
// (`swrun fit` on a machine without a GPU) and .cu files can both include it.
//
// Beside every rule: the allocation it mirrors (file and name). Whoever changes one of those allocations changes
// the rule here with it; tests/test_memory_plan.cpp checks the plan against these rules, and on a GPU the plan's
// total against the backend's tracked peak (DeviceMemory::peak_bytes).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/backend.h"
#include "runtime/ggml_types.h"

namespace swrun::device_bytes {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

// ---- features (CudaBackend::features, runtime/cuda/cuda_backend.h) -------------------------------------------

// What the CUDA backend runs beyond the core ops: attention sinks (inside the flash kernels and dense-naive's
// softmax), YaRN RoPE (the rope kernels, the fused norm + RoPE and the decode kernel's fresh rows) and gpt-oss's
// mixture of experts (runtime/cuda/cuda_moe.cu). The memory plan's backend reports the same, so that a plan refuses
// a model exactly when a load would.
inline BackendFeatures cuda_features() {
  return BackendFeatures{.attention_sinks = true, .mixture_of_experts = true, .yarn_rope = true};
}

// ---- weights (CudaBackend::upload, runtime/cuda/cuda_backend.cu) ---------------------------------------------

// Elements per block of the device's block decoders (kernels/dequant/block_decode.cuh, block_decoder_elems): 32 for
// F32/F16/BF16, the 32-element quant types and MXFP4, 256 for the K-quants; 0 for a type no decoder reads.
inline int decoder_block_elems(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0:
    case GgmlType::MXFP4:
      return 32;
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return 256;
    default:
      return 0;
  }
}

// Whether a matrix with rows of `cols` elements stays on the device as the file's blocks, read by the block
// decoders of the GEMVs and the prefill GEMMs' dequantization (kernels/gemv/gemv_quant.cu, gemv_quant_supported).
inline bool keeps_file_blocks(GgmlType type, int64_t cols) {
  const int elems = decoder_block_elems(type);
  return elems > 0 && cols > 0 && cols % elems == 0 && cols / elems <= INT32_MAX;
}

// The file's blocks are padded to 16 bytes for the kernels' vector loads (kernels/gemv/gemv_quant.cuh,
// gemv_quant_padded_bytes).
constexpr size_t kWeightPadding = 16;
inline size_t padded_weight_bytes(size_t file_bytes) {
  return (file_bytes + kWeightPadding - 1) / kWeightPadding * kWeightPadding;
}

// Device bytes of one uploaded tensor of `type` and shape `ne` (ne[0] the row length):
// - a 1-D tensor (norms, biases, rope factors): an fp32 copy, elems x 4;
// - a matrix whose rows hold whole decoder blocks: its GGUF bytes padded to 16, no other copy;
// - any other matrix (rare odd widths): a bf16 copy, elems x 2.
// Small weights share 16 MiB chunks (weight_memory, kWeightChunkBytes): that granularity is not counted.
inline size_t weight_bytes(GgmlType type, const std::vector<int64_t>& ne) {
  int64_t elems = 1;
  for (int64_t d : ne) elems *= d;
  if (ne.size() <= 1) return size_t(elems) * 4;
  if (keeps_file_blocks(type, ne[0]))
    return padded_weight_bytes(ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(type)), elems));
  return size_t(elems) * 2;
}

// ---- KV cache (CudaBackend::init_kv) -------------------------------------------------------------------------

// One layer: K and V, capacity x n_head_kv x head_dim each, bf16.
inline size_t kv_layer_bytes(const KvLayerSpec& s) {
  return 2 * size_t(s.capacity) * size_t(s.n_head_kv) * size_t(s.head_dim) * 2;
}

// ---- activations ---------------------------------------------------------------------------------------------

// An activation buffer of `floats` fp32 values (CudaBackend::alloc).
inline size_t activation_bytes(size_t floats) { return floats * 4; }

// Batches of more rows than this go through GEMMs with bf16 operands; up to this many rows run the quantized GEMV
// (kernels/gemv/gemv_quant.cuh, kGemvQuantMaxRows).
constexpr int kGemvMaxRows = 8;

// A buffer that only grows (runtime/cuda/device_memory.cpp, GrowingBuffer::ensure): a request beyond its size
// allocates max(request, size * 1.5) and retires the old allocation, which stays allocated until the backend's
// next release_retired() (the end of a step's synchronize while no CUDA graph exists, or init_kv). `live()` is
// what such a buffer holds on the device after a sequence of ensure() calls with no release in between.
struct GrowingBytes {
  size_t have = 0, retired = 0;
  void ensure(size_t need) {
    if (need <= have && have > 0) return;
    const size_t grown = std::max(need, have + have / 2);
    retired += have;
    have = grown;
  }
  size_t live() const { return have + retired; }
};

// ---- mixture of experts (CudaBackend::moe, runtime/cuda/cuda_moe.cu: moe_scratch_, a GrowingBuffer) -----------

// Rows above this run the grouped expert GEMMs; up to it, GEMVs over the chosen experts' rows.
constexpr int kMoeGemvMaxRows = kGemvMaxRows;

// One MoE call's scratch, carved from one buffer in this order, each part on a 256-byte boundary: the routing
// (expert ids and weights per token slot), the activated gate/up product per slot (fp32 for the GEMVs, bf16 for the
// grouped GEMMs), and for the grouped path the slots grouped by expert, the per-expert slot and tile offsets and each
// slot's down projection (fp32).
struct MoeScratchLayout {
  size_t ids = 0, weights = 0, hidden = 0, pair_of = 0, offsets = 0, tile_offsets = 0, expert_out = 0, total = 0;
};
inline MoeScratchLayout moe_scratch_layout(int64_t rows, int n_expert, int n_used, int64_t ffn, int64_t dim) {
  const size_t pairs = size_t(rows) * size_t(n_used);
  const bool grouped = rows > kMoeGemvMaxRows;
  MoeScratchLayout l;
  size_t at = 0;
  auto part = [&](size_t bytes) {
    const size_t start = at;
    at += (bytes + 255) / 256 * 256;
    return start;
  };
  l.ids = part(pairs * 4);
  l.weights = part(pairs * 4);
  l.hidden = part(pairs * size_t(ffn) * (grouped ? 2 : 4));
  if (grouped) {
    l.pair_of = part(pairs * 4);
    l.offsets = part((size_t(n_expert) + 1) * 4);
    l.tile_offsets = part((size_t(n_expert) + 1) * 4);
    l.expert_out = part(pairs * size_t(dim) * 4);
  }
  l.total = at;
  return l;
}

// ---- workspace -----------------------------------------------------------------------------------------------

// cuBLAS's workspace, allocated with the backend (cuda_backend.cu, kCublasWorkspaceBytes: Hopper's default).
constexpr size_t kCublasWorkspaceBytes = 32 * kMiB;

// The prefill GEMMs on a matrix kept in its blocks dequantize it a slice of whole rows at a time (weight_slice_rows)
// into one of two buffers taken in turn, the turn carrying over from matrix to matrix (cuda_backend.h slices_[2];
// cuda_ops.cu matmul_weight_slices, which takes these rules from here): each buffer holds max(kWeightSliceBytes, the
// slice). fp32 slices multiplied in TF32 for F16/F32 weights, bf16 slices for the quantized types; none where the
// GEMM reads the matrix as it is (a BF16 matrix's blocks are its bf16 copy; a matrix of odd width has a bf16 copy).
constexpr size_t kWeightSliceBytes = 64 * kMiB;
constexpr int kWeightSliceBuffers = 2;
inline bool weight_slices_in_tf32(GgmlType type) { return type == GgmlType::F16 || type == GgmlType::F32; }
inline bool gemm_slices_weight(GgmlType type, int64_t cols) {
  return type != GgmlType::BF16 && keeps_file_blocks(type, cols);
}
inline size_t weight_slice_elem_bytes(GgmlType type) { return weight_slices_in_tf32(type) ? 4 : 2; }
// Rows of a slice: as many as fit kWeightSliceBytes, rounded down to a multiple of 128 (aligned output columns for
// cuBLAS) where that many fit, at least one.
inline int64_t weight_slice_rows(GgmlType type, int64_t cols) {
  const int64_t fit = int64_t(kWeightSliceBytes / (size_t(cols) * weight_slice_elem_bytes(type)));
  return fit >= 128 ? fit / 128 * 128 : std::max<int64_t>(1, fit);
}
// The slice buffers after prefill GEMMs on a sequence of matrices (call add() per matrix in the order a forward
// multiplies them): what the two GrowingBuffers hold, retired allocations included.
struct WeightSliceBuffers {
  GrowingBytes buffers[kWeightSliceBuffers];
  int turn = 0;
  void add(GgmlType type, int64_t rows, int64_t cols) {
    if (!gemm_slices_weight(type, cols)) return;
    const int64_t slice_rows = weight_slice_rows(type, cols);
    for (int64_t r0 = 0; r0 < rows; r0 += slice_rows) {
      const size_t slice = size_t(std::min(slice_rows, rows - r0)) * size_t(cols) * weight_slice_elem_bytes(type);
      buffers[turn].ensure(std::max(kWeightSliceBytes, slice));
      turn ^= 1;
    }
  }
  size_t live() const { return buffers[0].live() + buffers[1].live(); }
};

// Whether a prefill GEMM on such a matrix reads the bf16 rounding of its input (gemm_operand_buf_); F16/F32 slices
// multiply the fp32 activations themselves (TF32).
inline bool gemm_reads_bf16_operand(GgmlType type, int64_t cols) {
  return !(keeps_file_blocks(type, cols) && weight_slices_in_tf32(type));
}

// The top-k's level buffers for k best of n entries (kernels/sample/top_k.cu, top_k_workspace_bytes; its kSpan is
// kThreads 256 x kPerThread 16, halved for k = 1) and its candidates (cuda_backend.cu top_k: top_k_out_, always
// kMaxDeviceTopK ids and values; the workspace is always sized for k = kMaxDeviceTopK).
inline size_t top_k_workspace_bytes(int64_t n, int k) {
  const int64_t span = k == 1 ? 2048 : 4096;
  auto spans_of = [&](int64_t m) { return (m + span - 1) / span; };
  size_t entries = 0;
  for (int64_t m = n; m > span; m = spans_of(m) * k) entries += size_t(spans_of(m)) * size_t(k);
  return entries * (sizeof(float) + sizeof(int32_t));
}
constexpr size_t kTopKOutBytes = size_t(kMaxDeviceTopK) * 8;

// Backend::score_rows against base rows / compress_rows on `rows` rows of `vocab` logits (cuda_backend.cu:
// logprob_in_ holds the targets, 256-byte aligned, then the base rows; logprob_out_ the scores or the compressed
// rows and their nll), each buffer at the larger of its two uses.
inline size_t base_rows_bytes(int64_t rows, int vocab) {
  const size_t n = size_t(rows), row_bytes = size_t(kl_row_width(vocab)) * 2;
  const size_t in = (n * 4 + 255) / 256 * 256 + n * row_bytes;
  const size_t out = std::max(n * sizeof(RowScore), n * (row_bytes + sizeof(double)));
  return in + out;
}

// Split-K decode attention partials (kernels/attention/flash_attention.cu, flash_decode_workspace_bytes; the
// backend's decode_workspace_): splits x n_q x n_head x (head_dim + 2) floats. The split count depends on the
// GPU's SM count (at most one wave of blocks), so the plan bounds it by kPlanSmCount splits (H100 SXM and H200
// have 132 SMs).
constexpr int kPlanSmCount = 132;
inline size_t decode_workspace_bytes(int n_head, int head_dim, int splits = kPlanSmCount) {
  return size_t(splits) * size_t(n_head) * size_t(head_dim + 2) * 4;
}

// The dense-naive baseline's materialized scores (kernels/attention/naive_attention.cu,
// naive_attention_workspace_bytes: fp32 scores S, then bf16 probabilities P on a 256-byte boundary), counted by
// the backend as a transient (DeviceMemory::note_transient).
inline size_t naive_attention_bytes(int n_head, int64_t n_q, int64_t kv_len) {
  const size_t scores = size_t(n_head) * size_t(n_q) * size_t(kv_len);
  return (scores * 4 + 255) / 256 * 256 + scores * 2;
}

// Device memory the CUDA context itself takes (module code loaded lazily, cuBLAS handles, the driver's own
// allocations, CUDA graphs), which DeviceMemory does not see: not part of a plan's total, kept back from the
// budget instead (budget = GPU memory - this).
constexpr size_t kContextReserveBytes = 1 * kGiB;

}  // namespace swrun::device_bytes
