// The persistent decode kernel: a whole decode step (one token) as ONE cooperative launch that walks a program of
// ops, with a grid-wide barrier between ops. A step of a small model is ~190 dependent ops of a few hundred KB each;
// as separate kernels each costs a launch and a drain of the GPU (~5 us on an H200) for ~1 us of work, while a grid
// barrier costs about a microsecond. With SWRUN_DECODE_PROGRAM=1 the CUDA backend records a captured decode step's
// ops into a program instead of launching them (runtime/cuda/cuda_program.cu), so the model code is unchanged; ops
// with no program form end the program and launch as before. Measured slower than the default graph of fused
// kernels so far (bench/decode_notes.md): each op plus its barrier costs 2.4-6 us.
//
// Every op divides its work over the whole grid (blockIdx.x of gridDim.x, kProgramThreads threads each) and reads
// positions from the device, so a program captured in a CUDA graph serves every later step.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/elementwise/elementwise.cuh"
#include "kernels/gemv/gemv_quant.cuh"
#include "kernels/rope/rope_rotate.cuh"
#include "runtime/ggml_types.h"

namespace swrun::cuda {

constexpr int kProgramThreads = 256;
constexpr int kProgramWarps = kProgramThreads / 32;
// A program's attention serves query groups of at most this many floats (query heads per KV head x head_dim): the
// group's accumulators live in registers (head_dim 256: 4 heads; 128 and 64: 8).
constexpr int kProgramMaxGroupFloats = 1024;

enum class ProgramOp : int32_t {
  Embed,         // out = table[token] * scale
  RmsNorm,       // out = rmsnorm(x) * w, one row
  Gemv,          // up to kGemvMultiMax matrices against one x row; or gated: out = act(x . gate) * (x . up)
  QkNormRope,    // per-head RMSNorm (optional) and RoPE of q and k; optionally k and v stored into the cache
  Attention,     // one query against the cache: softmax partials per (KV head, key split), merged by the last
                 // block to finish a KV head's splits
  ResidualNorm,  // y = rmsnorm(y) * w_post (optional); x += y; xn = rmsnorm(x) * w_next (optional)
  AddBias,       // x += bias
  Softcap,       // x = cap * tanh(x / cap)
};

struct ProgramEmbed {
  const uint8_t* table;
  GgmlType type;
  int64_t cols;
  const int32_t* token;  // device
  float scale;
  float* out;
};

struct ProgramRmsNorm {
  const float* x;
  const float* w;
  float* out;
  int cols;
  float eps;
};

struct ProgramGemv {
  const uint8_t* w[kGemvMultiMax];
  float* out[kGemvMultiMax];
  int64_t n_out[kGemvMultiMax];
  GgmlType type[kGemvMultiMax];
  int count;
  bool gated;  // w[0] gate, w[1] up (same type and shape), one output out[0]
  GatedActKind act;
  const float* x;
  int64_t cols;
};

struct ProgramQkNormRope {
  float* q;
  float* k;
  const float* q_norm;  // null: no norm
  const float* k_norm;
  int q_heads, k_heads, head_dim;
  float eps;
  const int32_t* pos;  // device
  RopeFreq freq;       // with the position's scale and YaRN (rope_freq)
  bool neox;
  // When set, the rotated k and v (fp32, [k_heads, head_dim]) are also stored into the bf16 cache row pos % capacity.
  const float* v;
  __nv_bfloat16* k_cache;
  __nv_bfloat16* v_cache;
  int32_t capacity;
};

struct ProgramAttn {
  const float* q;  // [n_head, head_dim], already rotated
  const __nv_bfloat16* k_cache;
  const __nv_bfloat16* v_cache;
  float* out;  // [n_head, head_dim]
  int n_head, n_head_kv, head_dim;
  int32_t capacity;
  int32_t left;  // keys pos-left .. pos are visible
  float scale, softcap;
  const int32_t* pos;  // device
  float* partials;     // workspace: max_splits x n_head x (head_dim + 2) floats
  int* splits_done;    // n_head_kv counters, zero between ops
  int max_splits;
};

struct ProgramResidualNorm {
  const float* y;
  const float* w_post;  // null: none
  float* x;
  const float* w_next;  // null: no next norm
  float* xn;
  int cols;
  float eps;
};

struct ProgramElementwise {
  float* x;
  const float* bias;  // AddBias: [cols]
  int64_t count;      // AddBias: rows * cols
  int64_t cols;
  float cap;
};

struct ProgramInstr {
  ProgramOp op;
  union {
    ProgramEmbed embed;
    ProgramRmsNorm norm;
    ProgramGemv gemv;
    ProgramQkNormRope rope;
    ProgramAttn attn;
    ProgramResidualNorm residual;
    ProgramElementwise elementwise;
  };
};

// Whether a program can hold these ops (the host checks before recording; anything else runs as its own kernel).
bool program_gemv_supported(GgmlType type, int64_t cols);
bool program_attention_supported(int n_head, int n_head_kv, int head_dim);
bool program_norm_supported(int64_t cols);
bool program_rope_supported(int head_dim);
// Larger matrices (the output projection) run as their own GEMV kernel after the program.
constexpr int64_t kProgramMaxGemvRows = 65536;

// Key splits the attention partials use (the workspace holds max_splits x n_head x (head_dim + 2) floats).
int program_attention_max_splits(int n_head_kv);
size_t program_attention_workspace_floats(int n_head, int head_dim, int max_splits);

// Runs `count` instructions at `prog` (device memory) in one cooperative launch of one block per SM. Returns the
// launch's status (a capture that cannot take a cooperative launch reports it here). With `trace` (count + 1
// device words) the start time of every instruction and the end are stamped there (ns, the GPU's global timer).
cudaError_t launch_decode_program(const ProgramInstr* prog, int count, uint64_t* trace, cudaStream_t stream);

const char* program_op_name(ProgramOp op);

}  // namespace swrun::cuda
