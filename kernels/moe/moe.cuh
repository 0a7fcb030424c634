// gpt-oss's mixture-of-experts FFN on the device (runtime/backend.h MoeFfn states the math; the CPU backend's moe
// is the reference). Every step keeps the expert choice on the device, so a decode step can be captured whole:
// - moe_route: per token, the router's fp32 dots (+ bias), the n_used largest logits (the lower index among equal
//   ones, best first, the CPU's order) and the softmax over them -> (expert id, weight) per token slot;
// - a few rows (decode): GEMVs that read only the chosen experts' rows (moe_decode);
// - many rows (prefill): tokens grouped per expert on the device, two grouped GEMM launches over all experts with
//   weight tiles dequantized to bf16 in shared memory, then the weighted sum back per token (moe_prefill).
// Expert weights are [n_expert * rows, cols] matrices of GGUF blocks (expert e owns rows [e * rows, (e+1) * rows));
// biases are fp32 [n_expert, rows] matrices or absent.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "runtime/ggml_types.h"

namespace swrun::cuda {

constexpr int kMoeMaxExperts = 256;  // the router's logits of a token live in shared memory
constexpr int kMoeMaxUsed = 32;

struct MoeDeviceFfn {
  GgmlType router_type = GgmlType::F32, gate_type = GgmlType::F32, down_type = GgmlType::F32;  // up: gate_type
  const uint8_t* router = nullptr;  // [n_expert, dim] blocks
  const float* router_bias = nullptr;  // [n_expert] or null
  const uint8_t* gate = nullptr;    // [n_expert * ffn, dim] blocks, 16-byte aligned, padded (gemv_quant_padded_bytes)
  const uint8_t* up = nullptr;      // same shape and type as gate
  const uint8_t* down = nullptr;    // [n_expert * dim, ffn] blocks
  const float* gate_bias = nullptr;  // [n_expert, ffn] or null
  const float* up_bias = nullptr;    // [n_expert, ffn] or null
  const float* down_bias = nullptr;  // [n_expert, dim] or null
  int n_expert = 0, n_used = 0;
  int64_t ffn = 0, dim = 0;
  float alpha = 1.702f, limit = 7.f;
};

// Whether the kernels below read these shapes and types: the router and the GEMVs any block-decoded type with whole
// blocks per row; the grouped GEMMs (prefill) 32-element block types (one block per row of a 32-column k-tile:
// F32, F16, BF16, Q4_0 .. Q8_0, MXFP4) for gate/up and down. An empty string when they do, else why not.
const char* moe_unsupported(const MoeDeviceFfn& f, bool grouped);

// ids[t * n_used + k], weights[t * n_used + k] for t < rows: token t's k-th expert, best first.
void moe_route(const MoeDeviceFfn& f, const float* x, int64_t rows, int32_t* ids, float* weights,
               cudaStream_t stream);

// out[t, :] = the mixture for rows of x through GEMVs over the chosen experts' rows only: `hidden` is scratch of
// rows * n_used * ffn floats.
void moe_decode(const MoeDeviceFfn& f, const float* x, int64_t rows, const int32_t* ids, const float* weights,
                float* hidden, float* out, cudaStream_t stream);

// Scratch of the grouped path (sizes: runtime/device_bytes.h moe_scratch_layout).
struct MoeGroupScratch {
  int32_t* pair_of = nullptr;       // [rows * n_used]: the token slots grouped by expert
  int32_t* offsets = nullptr;       // [n_expert + 1]: expert e's slots are pair_of[offsets[e] .. offsets[e + 1])
  int32_t* tile_offsets = nullptr;  // [n_expert + 1]: its row tiles start at tile tile_offsets[e] of the launch
  __nv_bfloat16* hidden = nullptr;  // [rows * n_used, ffn]: the activated gate/up product, in grouped order
  float* expert_out = nullptr;      // [rows * n_used, dim]: each slot's down projection (no bias), by slot
};
// The same mixture for many rows: grouping, one grouped gate/up GEMM (bias and clamped SwiGLU in its epilogue), one
// grouped down GEMM, then out[t] = sum_k weight * (expert_out + down bias) in slot order (deterministic).
void moe_prefill(const MoeDeviceFfn& f, const float* x, int64_t rows, const int32_t* ids, const float* weights,
                 const MoeGroupScratch& s, float* out, cudaStream_t stream);

// Rows of a grouped GEMM tile (the launch's upper bound on tiles: rows * n_used / kMoeTileRows + n_expert).
constexpr int kMoeTileRows = 64;

}  // namespace swrun::cuda
