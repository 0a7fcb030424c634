// fp32 -> GGUF blocks with plain round-to-nearest, for synthetic test models. The 32-element types follow the
// gguf package's quantizers step for step (same bytes out); the K-quants use a simple min/max fit per sub-block
// (not ggml's search), which is accurate enough for models whose values are random anyway.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/common.h"
#include "runtime/dequant.h"
#include "runtime/gguf_writer.h"
#include "runtime/quant_blocks.h"

namespace swrun {

using namespace quant;

namespace {

void put_half(uint8_t* p, float v) { store_u16(p, fp32_to_fp16(v)); }

// The element of largest magnitude, with its sign (the first one on ties).
float signed_absmax(const float* x, int n) {
  float amax = 0.f, max = 0.f;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) { amax = std::fabs(x[j]); max = x[j]; }
  }
  return max;
}

float inverse_or_zero(float d) { return d != 0.f ? 1.f / d : 0.f; }

// Symmetric 4/5-bit: d = max / -levels/2 maps the extreme to q = 0, the rest rounds with trunc(v + 0.5).
template <int kLevels>
void fit_symmetric(const float* x, float* d, uint8_t* q) {
  const float max = signed_absmax(x, kLegacyBlock);
  *d = max / -float(kLevels / 2);
  const float id = inverse_or_zero(*d);
  for (int j = 0; j < kLegacyBlock; ++j) {
    const float v = std::trunc(x[j] * id + (float(kLevels / 2) + 0.5f));
    q[j] = uint8_t(std::clamp(v, 0.f, float(kLevels - 1)));
  }
}

template <int kLevels>
void fit_min_max(const float* x, float* d, float* min, uint8_t* q) {
  const auto [lo, hi] = std::minmax_element(x, x + kLegacyBlock);
  *min = *lo;
  *d = (*hi - *lo) / float(kLevels - 1);
  const float id = inverse_or_zero(*d);
  for (int j = 0; j < kLegacyBlock; ++j) {
    const float v = std::trunc((x[j] - *min) * id + 0.5f);
    q[j] = uint8_t(std::clamp(v, 0.f, float(kLevels - 1)));
  }
}

void pack_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] & 0x0F) | (q[j + 16] << 4));
}

void pack_fifth_bits(const uint8_t* q, uint8_t* qh) {
  uint32_t bits = 0;
  for (int j = 0; j < 32; ++j) bits |= uint32_t(q[j] >> 4) << j;
  for (int k = 0; k < 4; ++k) qh[k] = uint8_t(bits >> (8 * k));
}

void quantize_q4_0(const float* x, BlockQ4_0& b) {
  float d;
  uint8_t q[32];
  fit_symmetric<16>(x, &d, q);
  put_half(b.d, d);
  pack_nibbles(q, b.qs);
}

void quantize_q4_1(const float* x, BlockQ4_1& b) {
  float d, min;
  uint8_t q[32];
  fit_min_max<16>(x, &d, &min, q);
  put_half(b.d, d);
  put_half(b.m, min);
  pack_nibbles(q, b.qs);
}

void quantize_q5_0(const float* x, BlockQ5_0& b) {
  float d;
  uint8_t q[32];
  fit_symmetric<32>(x, &d, q);
  put_half(b.d, d);
  pack_fifth_bits(q, b.qh);
  pack_nibbles(q, b.qs);
}

void quantize_q5_1(const float* x, BlockQ5_1& b) {
  float d, min;
  uint8_t q[32];
  fit_min_max<32>(x, &d, &min, q);
  put_half(b.d, d);
  put_half(b.m, min);
  pack_fifth_bits(q, b.qh);
  pack_nibbles(q, b.qs);
}

void quantize_q8_0(const float* x, BlockQ8_0& b) {
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = inverse_or_zero(d);
  put_half(b.d, d);
  for (int j = 0; j < 32; ++j) b.qs[j] = int8_t(std::round(x[j] * id));  // halves away from zero, like ggml
}

// Q4_K/Q5_K: each sub-block of 32 gets range [min(0, lo), hi] split into kLevels steps; the 8 scales and
// mins are then stored as 6-bit multiples of the super-block's d and dmin, and q is fitted to the stored values.
template <int kLevels>
void fit_k_quant(const float* x, uint8_t* d_out, uint8_t* dmin_out, uint8_t* scales, uint8_t* q) {
  float sub_scale[8], sub_min[8];
  for (int s = 0; s < 8; ++s) {
    const auto [lo, hi] = std::minmax_element(x + 32 * s, x + 32 * s + 32);
    const float min = std::min(0.f, *lo);
    sub_scale[s] = (*hi - min) / float(kLevels - 1);
    sub_min[s] = -min;
  }
  const float d = fp16_to_fp32(fp32_to_fp16(*std::max_element(sub_scale, sub_scale + 8) / 63.f));
  const float dmin = fp16_to_fp32(fp32_to_fp16(*std::max_element(sub_min, sub_min + 8) / 63.f));
  store_u16(d_out, fp32_to_fp16(d));
  store_u16(dmin_out, fp32_to_fp16(dmin));
  uint8_t sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = uint8_t(std::clamp(std::round(sub_scale[s] * inverse_or_zero(d)), 0.f, 63.f));
    m[s] = uint8_t(std::clamp(std::round(sub_min[s] * inverse_or_zero(dmin)), 0.f, 63.f));
    const float scale = d * float(sc[s]), offset = dmin * float(m[s]);
    const float inv = inverse_or_zero(scale);
    for (int l = 0; l < 32; ++l) {
      q[32 * s + l] = uint8_t(std::clamp(std::round((x[32 * s + l] + offset) * inv), 0.f, float(kLevels - 1)));
    }
  }
  for (int j = 0; j < 4; ++j) {
    scales[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    scales[j + 8] = uint8_t((sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4));
  }
}

void pack_k_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) qs[32 * g + l] = uint8_t((q[64 * g + l] & 0x0F) | ((q[64 * g + 32 + l] & 0x0F) << 4));
  }
}

void quantize_q4_k(const float* x, BlockQ4_K& b) {
  uint8_t q[256];
  fit_k_quant<16>(x, b.d, b.dmin, b.scales, q);
  pack_k_nibbles(q, b.qs);
}

void quantize_q5_k(const float* x, BlockQ5_K& b) {
  uint8_t q[256];
  fit_k_quant<32>(x, b.d, b.dmin, b.scales, q);
  pack_k_nibbles(q, b.qs);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int s = 0; s < 8; ++s) {
    for (int l = 0; l < 32; ++l) b.qh[l] |= uint8_t((q[32 * s + l] >> 4) << s);
  }
}

// Q6_K: symmetric per 16 elements (q - 32 in -31 .. 31), scales stored as int8 multiples of d.
void quantize_q6_k(const float* x, BlockQ6_K& b) {
  float sub_scale[16];
  float max_scale = 0.f;
  for (int s = 0; s < 16; ++s) {
    float amax = 0.f;
    for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * s + l]));
    sub_scale[s] = amax / 31.f;
    max_scale = std::max(max_scale, sub_scale[s]);
  }
  const float d = fp16_to_fp32(fp32_to_fp16(max_scale / 127.f));
  store_u16(b.d, fp32_to_fp16(d));
  uint8_t q[256];
  for (int s = 0; s < 16; ++s) {
    b.scales[s] = int8_t(std::clamp(std::round(sub_scale[s] * inverse_or_zero(d)), 0.f, 127.f));
    const float inv = inverse_or_zero(d * float(b.scales[s]));
    for (int l = 0; l < 16; ++l) {
      q[16 * s + l] = uint8_t(std::clamp(std::round(x[16 * s + l] * inv) + 32.f, 0.f, 63.f));
    }
  }
  // Inverse of the layout read by the dequantizer: see dequant.cpp.
  std::memset(b.ql, 0, sizeof b.ql);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int h = 0; h < 2; ++h) {
    for (int r = 0; r < 128; ++r) {
      const uint8_t v = q[128 * h + r];
      b.ql[64 * h + r % 64] |= uint8_t((v & 0x0F) << (4 * (r / 64)));
      b.qh[32 * h + r % 32] |= uint8_t((v >> 4) << (2 * (r / 32)));
    }
  }
}

// MXFP4 as the gguf package quantizes it: the exponent puts the largest magnitude in [4, 8) times half the scale
// (the top doubled E2M1 values are 8 and 12), and each element takes the nearest doubled value (the first code
// on ties). The package wraps exponents outside 0..255 (|x| beyond 2^-125 .. 2^130); we clamp them instead.
void quantize_mxfp4(const float* x, BlockMXFP4& b) {
  float amax = 0.f;
  for (int j = 0; j < kLegacyBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  b.e = amax > 0.f ? uint8_t(std::clamp(std::floor(std::log2(amax)) - 2.f + 127.f, 0.f, 255.f)) : 0;
  const float half_scale = mxfp4_half_scale(b.e);
  uint8_t q[kLegacyBlock];
  for (int j = 0; j < kLegacyBlock; ++j) {
    float best_err = INFINITY;
    for (uint8_t code = 0; code < 16; ++code) {
      const float err = std::fabs(half_scale * float(kMxfp4DoubledValues[code]) - x[j]);
      if (err < best_err) {
        best_err = err;
        q[j] = code;
      }
    }
  }
  pack_nibbles(q, b.qs);
}

template <typename Block, void (*encode)(const float*, Block&)>
void quantize_blocks(const float* src, void* dst, int64_t n, int block_elems) {
  Block* blocks = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / block_elems; ++i) encode(src + i * block_elems, blocks[i]);
}

}  // namespace

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(type));
  if (info.name != nullptr && n % info.block_elems != 0) {
    fail("quantize: " + std::to_string(n) + " elements is not a multiple of the " + info.name + " block size " +
         std::to_string(info.block_elems));
  }
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) store_u16(static_cast<uint8_t*>(dst) + 2 * i, fp32_to_fp16(src[i]));
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) store_u16(static_cast<uint8_t*>(dst) + 2 * i, fp32_to_bf16(src[i]));
      return;
    case GgmlType::Q4_0: return quantize_blocks<BlockQ4_0, quantize_q4_0>(src, dst, n, kLegacyBlock);
    case GgmlType::Q4_1: return quantize_blocks<BlockQ4_1, quantize_q4_1>(src, dst, n, kLegacyBlock);
    case GgmlType::Q5_0: return quantize_blocks<BlockQ5_0, quantize_q5_0>(src, dst, n, kLegacyBlock);
    case GgmlType::Q5_1: return quantize_blocks<BlockQ5_1, quantize_q5_1>(src, dst, n, kLegacyBlock);
    case GgmlType::Q8_0: return quantize_blocks<BlockQ8_0, quantize_q8_0>(src, dst, n, kLegacyBlock);
    case GgmlType::Q4_K: return quantize_blocks<BlockQ4_K, quantize_q4_k>(src, dst, n, kSuperBlock);
    case GgmlType::Q5_K: return quantize_blocks<BlockQ5_K, quantize_q5_k>(src, dst, n, kSuperBlock);
    case GgmlType::Q6_K: return quantize_blocks<BlockQ6_K, quantize_q6_k>(src, dst, n, kSuperBlock);
    case GgmlType::MXFP4: return quantize_blocks<BlockMXFP4, quantize_mxfp4>(src, dst, n, kLegacyBlock);
    default:
      fail("tensor type " + ggml_type_name(static_cast<uint32_t>(type)) + " is not supported (cannot quantize to it)");
  }
}

}  // namespace swrun
