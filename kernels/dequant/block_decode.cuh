// Device decoders of GGUF blocks, shared by every kernel that reads quantized weights: the load-time
// dequantizer (dequant.cu), the quantized GEMV of decode steps (kernels/gemv/gemv_quant.cu) and the embedding
// lookup from the quantized table. The arithmetic mirrors runtime/dequant.cpp operation for operation, with
// explicit _rn intrinsics so nvcc cannot contract d*q - m into an FMA: every reader sees the values the CPU
// reference dequantizes, bit for bit.
//
// A decoder splits a block of kElems elements (kBytes bytes) into kItems work items; item(block, t, emit)
// calls emit(i, value) for each element i (index inside the block) that item t yields. The plain types (F32,
// F16, BF16) are read as blocks of 32 elements so the same kernels serve them.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "runtime/ggml_types.h"
#include "runtime/quant_blocks.h"

namespace swrun::cuda {

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(quant::load_u16(p)));
}

// ---- plain types as 32-element blocks: item t yields elements t and t + 16

template <GgmlType kType>
struct DecodePlain {
  static constexpr int kElems = 32, kItems = 16;
  static constexpr int kBytes = kType == GgmlType::F32 ? 128 : 64;
  __device__ static float value(const uint8_t* p, int i) {
    if constexpr (kType == GgmlType::F32) return __uint_as_float(quant::load_u32(p + 4 * i));
    else if constexpr (kType == GgmlType::F16) return half_at(p + 2 * i);
    else return __uint_as_float(uint32_t(quant::load_u16(p + 2 * i)) << 16);
  }
  template <typename Emit>
  __device__ static void item(const uint8_t* block, int t, Emit&& emit) {
    emit(t, value(block, t));
    emit(t + 16, value(block, t + 16));
  }
};

// ---- 32-element blocks: item j yields element j (low nibble of byte j) and j + 16 (high nibble)

template <typename Derived, typename BlockT>
struct LegacyDecoder {
  using Block = BlockT;
  static constexpr int kElems = quant::kLegacyBlock, kItems = 16, kBytes = sizeof(Block);
  template <typename Emit>
  __device__ static void item(const uint8_t* block, int j, Emit&& emit) {
    float lo, hi;
    Derived::at(*reinterpret_cast<const Block*>(block), j, lo, hi);
    emit(j, lo);
    emit(j + 16, hi);
  }
};

struct DecodeQ4_0 : LegacyDecoder<DecodeQ4_0, quant::BlockQ4_0> {
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    const float d = half_at(b.d);
    lo = __fmul_rn(d, float((b.qs[j] & 0x0F) - 8));
    hi = __fmul_rn(d, float((b.qs[j] >> 4) - 8));
  }
};

struct DecodeQ4_1 : LegacyDecoder<DecodeQ4_1, quant::BlockQ4_1> {
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    const float d = half_at(b.d), m = half_at(b.m);
    lo = __fadd_rn(__fmul_rn(d, float(b.qs[j] & 0x0F)), m);
    hi = __fadd_rn(__fmul_rn(d, float(b.qs[j] >> 4)), m);
  }
};

// Bit j of the little-endian qh word is the fifth bit of element j.
__device__ __forceinline__ void q5_pair(const uint8_t* qs, const uint8_t* qh_bytes, int j, int& lo, int& hi) {
  const uint32_t qh = quant::load_u32(qh_bytes);
  lo = (qs[j] & 0x0F) | int(((qh >> j) & 1) << 4);
  hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
}

struct DecodeQ5_0 : LegacyDecoder<DecodeQ5_0, quant::BlockQ5_0> {
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    int ql, qh;
    q5_pair(b.qs, b.qh, j, ql, qh);
    const float d = half_at(b.d);
    lo = __fmul_rn(d, float(ql - 16));
    hi = __fmul_rn(d, float(qh - 16));
  }
};

struct DecodeQ5_1 : LegacyDecoder<DecodeQ5_1, quant::BlockQ5_1> {
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    int ql, qh;
    q5_pair(b.qs, b.qh, j, ql, qh);
    const float d = half_at(b.d), m = half_at(b.m);
    lo = __fadd_rn(__fmul_rn(d, float(ql)), m);
    hi = __fadd_rn(__fmul_rn(d, float(qh)), m);
  }
};

struct DecodeQ8_0 : LegacyDecoder<DecodeQ8_0, quant::BlockQ8_0> {
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    const float d = half_at(b.d);
    lo = __fmul_rn(float(b.qs[j]), d);
    hi = __fmul_rn(float(b.qs[j + 16]), d);
  }
};

// MXFP4: item j yields element j (low nibble of qs[j]) and j + 16 (high nibble), each the doubled E2M1 value
// times half the E8M0 scale, as runtime/dequant.cpp computes it (the product is exact but for fp32 underflow and
// overflow, which both sides round alike). The doubled magnitudes 0, 1, 2, 3, 4, 6, 8, 12 are bytes of two words
// picked with one PRMT by the code's low three bits; bit 3 is the sign (a negative zero stays +0, the CPU's int 0).
struct DecodeMXFP4 {
  using Block = quant::BlockMXFP4;
  static constexpr int kElems = 32, kItems = 16, kBytes = sizeof(Block);
  __device__ static float value(float half_scale, unsigned code) {
    const int magnitude = int(__byte_perm(0x03020100u, 0x0C080604u, code & 7));
    return __fmul_rn(half_scale, float(code & 8 ? -magnitude : magnitude));
  }
  template <typename Emit>
  __device__ static void item(const uint8_t* block, int j, Emit&& emit) {
    const Block& b = *reinterpret_cast<const Block*>(block);
    const float half_scale = quant::mxfp4_half_scale(b.e);
    const unsigned q = b.qs[j];
    emit(j, value(half_scale, q & 0x0F));
    emit(j + 16, value(half_scale, q >> 4));
  }
};

// ---- 256-element K blocks: 64 items per block, 4 elements each

// Q4_K/Q5_K item t: bytes e = 2*(t%16), e+1 of group g = t/16, whose low nibbles are sub-block 2g and high
// nibbles sub-block 2g+1 (Q5_K: fifth bits in bits 2g, 2g+1 of qh[e]).
template <typename BlockT, bool kFifthBitPlane>
struct DecodeK45 {
  using Block = BlockT;
  static constexpr int kElems = quant::kSuperBlock, kItems = 64, kBytes = sizeof(Block);
  template <typename Emit>
  __device__ static void item(const uint8_t* block, int t, Emit&& emit) {
    const Block& b = *reinterpret_cast<const Block*>(block);
    const int g = t / 16, e0 = 2 * (t % 16);
    const float d = half_at(b.d), dmin = half_at(b.dmin);
    uint8_t sc_lo, m_lo, sc_hi, m_hi;
    quant::k_scale_min(b.scales, 2 * g, &sc_lo, &m_lo);
    quant::k_scale_min(b.scales, 2 * g + 1, &sc_hi, &m_hi);
    const float scale_lo = __fmul_rn(d, float(sc_lo)), offset_lo = __fmul_rn(dmin, float(m_lo));
    const float scale_hi = __fmul_rn(d, float(sc_hi)), offset_hi = __fmul_rn(dmin, float(m_hi));
#pragma unroll
    for (int e = e0; e < e0 + 2; ++e) {
      const uint8_t byte = b.qs[32 * g + e];
      int lo = byte & 0x0F, hi = byte >> 4;
      if constexpr (kFifthBitPlane) {
        lo |= ((b.qh[e] >> (2 * g)) & 1) << 4;
        hi |= ((b.qh[e] >> (2 * g + 1)) & 1) << 4;
      }
      emit(64 * g + e, __fsub_rn(__fmul_rn(scale_lo, float(lo)), offset_lo));
      emit(64 * g + 32 + e, __fsub_rn(__fmul_rn(scale_hi, float(hi)), offset_hi));
    }
  }
};

using DecodeQ4_K = DecodeK45<quant::BlockQ4_K, false>;
using DecodeQ5_K = DecodeK45<quant::BlockQ5_K, true>;

// Q6_K item t: half h = t/32, l = t%32 yields elements l, l+32, l+64, l+96 of the half, which share qh[32h+l]
// (bit pairs 0..3) and take the low/high nibbles of ql[64h+l] and ql[64h+32+l]. Each 16 elements share a scale.
struct DecodeQ6_K {
  using Block = quant::BlockQ6_K;
  static constexpr int kElems = quant::kSuperBlock, kItems = 64, kBytes = sizeof(Block);
  template <typename Emit>
  __device__ static void item(const uint8_t* block, int t, Emit&& emit) {
    const Block& b = *reinterpret_cast<const Block*>(block);
    const int h = t / 32, l = t % 32;
    const float d = half_at(b.d);
    const uint8_t ql_a = b.ql[64 * h + l], ql_b = b.ql[64 * h + 32 + l], qh = b.qh[32 * h + l];
    const int q[4] = {(ql_a & 0x0F) | ((qh & 0x03) << 4), (ql_b & 0x0F) | (((qh >> 2) & 0x03) << 4),
                      (ql_a >> 4) | (((qh >> 4) & 0x03) << 4), (ql_b >> 4) | (((qh >> 6) & 0x03) << 4)};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int r = l + 32 * k;
      const float scale = __fmul_rn(d, float(b.scales[8 * h + r / 16]));
      emit(128 * h + r, __fmul_rn(scale, float(q[k] - 32)));
    }
  }
};

// Calls f.template operator()<Decoder>() with the decoder of `type`; returns false for a type without one.
// Host code picks kernels with it; device code picks a decoder per row with it.
#pragma nv_exec_check_disable
template <typename F>
__host__ __device__ bool with_block_decoder(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::F32: f.template operator()<DecodePlain<GgmlType::F32>>(); return true;
    case GgmlType::F16: f.template operator()<DecodePlain<GgmlType::F16>>(); return true;
    case GgmlType::BF16: f.template operator()<DecodePlain<GgmlType::BF16>>(); return true;
    case GgmlType::Q4_0: f.template operator()<DecodeQ4_0>(); return true;
    case GgmlType::Q4_1: f.template operator()<DecodeQ4_1>(); return true;
    case GgmlType::Q5_0: f.template operator()<DecodeQ5_0>(); return true;
    case GgmlType::Q5_1: f.template operator()<DecodeQ5_1>(); return true;
    case GgmlType::Q8_0: f.template operator()<DecodeQ8_0>(); return true;
    case GgmlType::MXFP4: f.template operator()<DecodeMXFP4>(); return true;
    case GgmlType::Q4_K: f.template operator()<DecodeQ4_K>(); return true;
    case GgmlType::Q5_K: f.template operator()<DecodeQ5_K>(); return true;
    case GgmlType::Q6_K: f.template operator()<DecodeQ6_K>(); return true;
    default: return false;
  }
}

// Elements per decoder block of `type` (0 when no decoder reads it): rows must hold whole blocks.
inline int block_decoder_elems(GgmlType type) {
  int elems = 0;
  with_block_decoder(type, [&]<typename D>() { elems = D::kElems; });
  return elems;
}

}  // namespace swrun::cuda
