// Rotary position embedding in place on x [n, heads, head_dim] (fp32) for positions *pos0 + t, t < n.
// Normal style rotates pairs (2i, 2i+1), NeoX style pairs (i, i + head_dim/2); pair i turns by
// (pos * freq_scale) * freq_base^(-2i/head_dim) / freq_factors[i] (freq_factors: head_dim/2 device floats, or null),
// and cos/sin are multiplied by attn_factor (LongRoPE); with YaRN (RopeYarn) the angle and the magnitude are YaRN's.
// pos0 is read on the device so captured graphs replay at the step's position.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace swrun::cuda {

enum class RopeKind { Normal, NeoX };

// YaRN (RopeParams::yarn, gpt-oss), as the CPU backend computes it: pair i's angle mixes the interpolated angle
// (position * freq_scale) and the original one, the original weighted by 1 - clamp((i - low) / max(0.001, high -
// low), 0, 1); cos and sin are multiplied by attn_factor * (1 + 0.1 ln(1 / freq_scale)). Off: plain RoPE.
struct RopeYarn {
  bool enabled = false;
  float low = 0.f, high = 0.f;  // pair indices where the ramp starts and ends
};

// head_dim must be a multiple of 4 and x 16-byte aligned (throws Error otherwise).
void rope_f32(float* x, int n, int heads, int head_dim, const int32_t* pos0, float freq_base, float freq_scale,
              const float* freq_factors, float attn_factor, RopeKind kind, cudaStream_t stream,
              const RopeYarn& yarn = {});

constexpr int kNormRopeMaxHeadDim = 1024;

// Where norm_rope_f32 also stages the attention's inputs (what stage_attention_bf16 would write, the same values):
// the rotated q as bf16 into q16 [n, q_heads, head_dim], the rotated k and the given v [n, k_heads, head_dim] as
// bf16 into cache rows (pos0 + t) % capacity of k_cache / v_cache [capacity, k_heads, head_dim].
struct AttnStage {
  __nv_bfloat16* q16 = nullptr;
  const float* v = nullptr;
  __nv_bfloat16* k_cache = nullptr;
  __nv_bfloat16* v_cache = nullptr;
  int32_t capacity = 0;
};

// q [n, q_heads, head_dim] and k [n, k_heads, head_dim] in one launch: each head row RMSNorm-ed with eps and its
// norm weight (q_norm / k_norm [head_dim]; none when null), then rotated as rope_f32 rotates it. The norm is
// computed as rmsnorm_f32 computes it. head_dim a multiple of 4 up to kNormRopeMaxHeadDim, buffers 16-byte aligned.
// With `stage`, the attention's inputs are staged in the same launch (AttnStage) instead of q and k being written
// back: the attention reads only the staged copies (Backend::attention leaves q and k as scratch).
void norm_rope_f32(float* q, float* k, const float* q_norm, const float* k_norm, int n, int q_heads, int k_heads,
                   int head_dim, float eps, const int32_t* pos0, float freq_base, float freq_scale,
                   const float* freq_factors, float attn_factor, RopeKind kind, cudaStream_t stream,
                   const AttnStage* stage = nullptr, const RopeYarn& yarn = {});

}  // namespace swrun::cuda
