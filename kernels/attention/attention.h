// Fused attention kernels (flash-style, tensor cores) and the materialized baseline. Host-callable API;
// kernels/attention/*.cu implement it. All tensors are device pointers.
//
// Keys live in a cache of `capacity` rows: the key at position p is row p % capacity (a plain contiguous K/V of
// length N is capacity >= N). Queries are the n_q positions q_pos0 .. q_pos0+n_q-1; the keys present are positions
// 0 .. q_pos0+n_q-1 (kv_len). Query i sees key j iff i-left <= j <= i+right and 0 <= j < kv_len
// (runtime/attn_policy.h; left = kUnboundedWindow for dense).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/rope/rope.cuh"

namespace swrun::cuda {

enum class AttnDtype { BF16, FP16 };

struct FlashAttnArgs {
  const void* q = nullptr;  // [n_q, n_head, head_dim], row stride q_stride elements (>= n_head*head_dim)
  const void* k = nullptr;  // [capacity, n_head_kv, head_dim], row stride kv_stride elements
  const void* v = nullptr;  // same layout as k
  void* o = nullptr;        // [n_q, n_head, head_dim], row stride o_stride; element type o_fp32 ? float : dtype
  bool o_fp32 = false;
  // With an fp32 o, the output's bf16 rounding is also written here (same layout and row stride): the operand of
  // the GEMM that reads the attention's output next. Flash kernels only.
  __nv_bfloat16* o16 = nullptr;
  AttnDtype dtype = AttnDtype::BF16;
  int64_t q_stride = 0, kv_stride = 0, o_stride = 0;
  int32_t n_q = 0;
  int32_t n_head = 0, n_head_kv = 0, head_dim = 0;  // n_head % n_head_kv == 0; head_dim in {64, 128, 256}
  int32_t q_pos0 = 0;
  // When non-null, q_pos0 is read from this device int at run time (CUDA-graph replay of decode steps).
  const int32_t* q_pos0_dev = nullptr;
  int32_t capacity = 0;
  int32_t left = INT32_MAX, right = 0;
  float scale = 1.f;
  // Score softcapping (Gemma 2): the scaled score s becomes softcap * tanh(s / softcap) before the softmax.
  // 0 = none; otherwise positive and finite.
  float softcap = 0.f;
  // Attention sinks (gpt-oss): n_head fp32 logits on the device, one per query head (natural units, neither scaled
  // nor softcapped); head h's softmax gets one more term exp(sinks[h]) in its denominator and none in its weighted
  // sum. null = none. Inside the kernels: the sink joins each row's denominator at the final normalization (split-K:
  // in the combine), with no pass over the scores; kernels without sinks are separate instances, unchanged.
  const float* sinks = nullptr;
  // Variant 14 (bench/attention_notes.md), GQA packing: every block serves all n_head / n_head_kv query heads of
  // one KV head at any n_q (its rows are the group x fewer positions), so each block's key span shrinks to the
  // window plus those fewer positions. false: the group is packed only when n_q is below one tile (decode).
  // Off by default until the GPU measures it against the unpacked kernel (swbench --variants packed).
  bool pack_gqa = false;
  // Variant 14b: head_dim 256 on the warp-specialized kernel (flash_kernel_ws.cuh: producer warpgroup, FA3
  // overlap, ping-pong) that head_dim 128 always uses on sm_90a. Off by default until measured (swbench
  // --variants ws256, packed+ws256); ignored at other head_dims and off sm_90a.
  bool ws_d256 = false;
  // Variant 15: head_dim 64 on the warp-specialized kernel, with its own tile (128 query rows x 128 keys, where the
  // one-kernel path runs 64 x 64). Off by default until measured (swbench --variants ws64, packed+ws64); ignored at
  // other head_dims and off sm_90a.
  bool ws_d64 = false;
  // Variant 16: the warp-specialized kernel on a persistent grid, a block per SM taking the work items (the plain
  // grid's blocks) in turn, so that its producer loads the next item's Q and first K/V tiles while the consumers
  // finish the current one: a block's prologue and epilogue no longer stand alone, which matters where a block has
  // few key tiles (short windows). Prefill only, where the warp-specialized kernel runs (use_fastest_variant sets
  // it for windows under 2048 keys; swbench --variants ...+persistent).
  bool persistent = false;
  // Decode only (flash_attention_decode, n_q 1): the new position's q, k and v as the q/k/v projection wrote them,
  // fp32. The kernel then does what norm_rope_f32 with an AttnStage would have done before it, with the same
  // values: each block RMSNorms (when a norm is given) and rotates its query rows into shared memory, and the
  // block whose keys end at the new position writes that position's rotated k and its v into the cache before it
  // reads them. q and q_stride are then not read. One launch per layer and step fewer. The plain flash kernel
  // does this (a decode with fresh rows runs it even where the warp-specialized one would run: d 128 on sm_90a).
  struct FreshRows {
    const float* q = nullptr;  // [n_head, head_dim]; null: off
    const float* k = nullptr;  // [n_head_kv, head_dim]
    const float* v = nullptr;  // [n_head_kv, head_dim]
    const float* q_norm = nullptr;  // [head_dim], or null: no norm
    const float* k_norm = nullptr;
    float eps = 0.f;
    // RoPE as rope_f32 takes it (kernels/rope/rope.cuh).
    float freq_base = 10000.f, freq_scale = 1.f, attn_factor = 1.f;
    const float* freq_factors = nullptr;
    bool neox = false;
    RopeYarn yarn;
  } fresh;
};

// Sets pack_gqa, ws_d256, ws_d64 and persistent to the variants measured fastest (bench/attention_notes.md, 14-16,
// H200): the warp-specialized kernel at head_dim 256, and at 64 for dense or long windows; its persistent grid for
// windows under 2048 keys (at every head_dim); GQA packing where the running kernel's query tile is taller than its
// key tile (head_dim 256: a block's key span then shrinks towards the window); elsewhere packing measured no gain.
void use_fastest_variant(FlashAttnArgs& a);

// What FlashAttnArgs::softcap accepts: 0 (none) or a positive finite cap.
inline bool valid_softcap(float softcap) { return softcap == 0.f || (softcap > 0.f && std::isfinite(softcap)); }

// Prefill / general: any n_q. Key tiles wholly outside the window are skipped. Throws swrun::Error on bad args.
void flash_attention(const FlashAttnArgs& a, cudaStream_t stream);

// Decode: n_q small (1 per sequence step), key range split across blocks and combined. `workspace` must hold
// flash_decode_workspace_bytes(a) bytes. Usable inside CUDA-graph capture (no host sync, no allocation). The
// kernels may load the cache rows older than the first query position before they wait for the kernel launched
// just before them (programmatic dependent launch): that kernel may write q and the new positions' rows, not
// older ones.
size_t flash_decode_workspace_bytes(const FlashAttnArgs& a, int32_t max_kv_len);
void flash_attention_decode(const FlashAttnArgs& a, int32_t max_kv_len, void* workspace, cudaStream_t stream);
// Whether the decode kernel these arguments run without fresh rows is the one that stages them (the plain kernel:
// not d 128 on sm_90a, which runs the warp-specialized one). The CUDA backend hands fresh rows over only then, so
// that no model's decode kernel changes with them.
bool flash_decode_stages_fresh_rows(const FlashAttnArgs& a);

// Baseline: S = QK^T via cuBLAS into an n_q x kv_len fp32 matrix per head, masked softmax kernel, O = PV via
// cuBLAS. Requires capacity >= kv_len (contiguous keys). Allocates its own workspace and throws swrun::Error
// ("dense-naive needs X GiB for the N x N scores, Y free") when it cannot fit.
size_t naive_attention_workspace_bytes(const FlashAttnArgs& a);
void naive_attention(const FlashAttnArgs& a, cudaStream_t stream);
// The baseline keeps its largest workspace for reuse; this frees it (benchmarks moving on to other work).
void naive_attention_release_workspace();

}  // namespace swrun::cuda
