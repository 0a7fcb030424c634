// Element-wise kernels of the CUDA backend: embedding lookup, gated activations, residual add and the
// fp32 <-> bf16 casts (incl. the one staging attention inputs: bf16 queries, new K/V rows in a ring-shaped
// cache). fp32 activations, bf16 weights/caches; all pointers are device pointers and every launch is checked.
#pragma once
#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace swrun::cuda {

enum class GatedActKind { GeluTanh, Silu };

// out[t, :] = table[tokens[t], :] * scale for t < n; table is [vocab, cols] bf16. Tokens must be < vocab
// (the caller validates them on the host).
void embed_rows_bf16(const __nv_bfloat16* table, const int32_t* tokens, int n, int64_t cols, float scale,
                     float* out, cudaStream_t stream);

// gate[i] = act(gate[i]) * up[i] for i < count.
void gated_activation(float* gate, const float* up, size_t count, GatedActKind act, cudaStream_t stream);
// out[i] = bf16 rounding (to nearest even) of act(gate[i]) * up[i] for i < count: the down projection's operand.
void gated_activation_bf16(const float* gate, const float* up, __nv_bfloat16* out, size_t count, GatedActKind act,
                           cudaStream_t stream);

// x[i] += y[i] for i < count.
void add_inplace(float* x, const float* y, size_t count, cudaStream_t stream);

// x[r, c] += bias[c] for r < rows, c < cols.
void add_bias_rows(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);

// x[i] = cap * tanh(x[i] / cap) for i < count.
void softcap_inplace(float* x, size_t count, float cap, cudaStream_t stream);

// Round-to-nearest-even casts of count elements.
void cast_f32_to_bf16(const float* src, __nv_bfloat16* dst, size_t count, cudaStream_t stream);
void cast_bf16_to_f32(const __nv_bfloat16* src, float* dst, size_t count, cudaStream_t stream);

// Casts q_count floats of q into q16, and n rows of row_elems floats from k and v into the bf16 caches at rows
// (*pos0 + i) % capacity, in one launch. pos0 is read on the device so a captured graph stores at the position
// of the step being replayed.
void stage_attention_bf16(const float* q, __nv_bfloat16* q16, size_t q_count, const float* k, const float* v,
                          __nv_bfloat16* k_cache, __nv_bfloat16* v_cache, int n, int64_t row_elems,
                          int32_t capacity, const int32_t* pos0, cudaStream_t stream);

}  // namespace swrun::cuda
