// CPU dequantization of GGUF blocks. The arithmetic follows the gguf package's reference order (the scale
// products are rounded to fp32 before they multiply q), so results match its values bit for bit where the
// compiler does not contract into FMA.
#include "runtime/dequant.h"

#include <cstring>

#include "runtime/common.h"
#include "runtime/quant_blocks.h"

namespace swrun {

using namespace quant;

float fp16_to_fp32(uint16_t h) { return half_bits_to_float(h); }

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7FFFFFFF;
  if (abs > 0x7F800000) return uint16_t(sign | 0x7E00 | ((abs >> 13) & 0x3FF));  // quiet NaN
  if (abs >= 0x477FF000) return uint16_t(sign | 0x7C00);  // rounds past 65504 (or is inf)
  if (abs >= 0x38800000) {  // normal half: drop 13 mantissa bits, round to nearest even
    const uint32_t rounded = abs + 0xFFF + ((abs >> 13) & 1);
    return uint16_t(sign | ((rounded - 0x38000000) >> 13));
  }
  if (abs < 0x33000000) return sign;  // below half the smallest subnormal (ties go to the even zero)
  // Subnormal half: make the implicit bit explicit and shift right by the exponent deficit, rounding to even.
  const uint32_t exp = abs >> 23;
  const uint32_t mant = (abs & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - exp;  // 14 .. 24
  const uint32_t half_ulp = 1u << (shift - 1);
  const uint32_t rest = mant & ((1u << shift) - 1);
  uint32_t q = mant >> shift;
  if (rest > half_ulp || (rest == half_ulp && (q & 1))) ++q;
  return uint16_t(sign | q);
}

float bf16_to_fp32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return uint16_t((x >> 16) | 0x40);  // keep NaN a (quiet) NaN
  return uint16_t((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

namespace {

float half_at(const uint8_t* p) { return half_bits_to_float(load_u16(p)); }

void dequant_q4_0(const BlockQ4_0& b, float* y) {
  const float d = half_at(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float((b.qs[j] & 0x0F) - 8);
    y[j + 16] = d * float((b.qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const BlockQ4_1& b, float* y) {
  const float d = half_at(b.d), m = half_at(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(b.qs[j] & 0x0F) + m;
    y[j + 16] = d * float(b.qs[j] >> 4) + m;
  }
}

// The fifth bit of element j is bit j of the little-endian qh word.
void dequant_q5_0(const BlockQ5_0& b, float* y) {
  const float d = half_at(b.d);
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
    const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * float(lo - 16);
    y[j + 16] = d * float(hi - 16);
  }
}

void dequant_q5_1(const BlockQ5_1& b, float* y) {
  const float d = half_at(b.d), m = half_at(b.m);
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
    const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * float(lo) + m;
    y[j + 16] = d * float(hi) + m;
  }
}

void dequant_q8_0(const BlockQ8_0& b, float* y) {
  const float d = half_at(b.d);
  for (int j = 0; j < 32; ++j) y[j] = float(b.qs[j]) * d;
}

// Sub-blocks 2g and 2g+1 share the 32 bytes qs[32g ..]: low nibbles for the first, high for the second.
void dequant_q4_k(const BlockQ4_K& b, float* y) {
  const float d = half_at(b.d), dmin = half_at(b.dmin);
  for (int sub = 0; sub < 8; ++sub) {
    uint8_t sc, m;
    k_scale_min(b.scales, sub, &sc, &m);
    const float scale = d * float(sc), offset = dmin * float(m);
    const uint8_t* qs = b.qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) y[32 * sub + l] = scale * float((qs[l] >> shift) & 0x0F) - offset;
  }
}

// As Q4_K, plus the fifth bit of sub-block i in bit i of qh[l].
void dequant_q5_k(const BlockQ5_K& b, float* y) {
  const float d = half_at(b.d), dmin = half_at(b.dmin);
  for (int sub = 0; sub < 8; ++sub) {
    uint8_t sc, m;
    k_scale_min(b.scales, sub, &sc, &m);
    const float scale = d * float(sc), offset = dmin * float(m);
    const uint8_t* qs = b.qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[l] >> shift) & 0x0F) | (((b.qh[l] >> sub) & 1) << 4);
      y[32 * sub + l] = scale * float(q) - offset;
    }
  }
}

// Two halves of 128 elements. In half h, element r takes its low nibble from ql[64h + r % 64] (nibble r / 64)
// and its top two bits from qh[32h + r % 32] (bit pair r / 32); each run of 16 elements has its own scale.
// One pass over l yields elements l, l+32, l+64, l+96, which share a qh byte.
void dequant_q6_k(const BlockQ6_K& b, float* y) {
  const float d = half_at(b.d);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    float* out = y + 128 * h;
    for (int l0 = 0; l0 < 32; l0 += 16) {
      float scale[4];
      for (int k = 0; k < 4; ++k) scale[k] = d * float(b.scales[8 * h + (l0 + 32 * k) / 16]);
      for (int l = l0; l < l0 + 16; ++l) {
        out[l] = scale[0] * float(((ql[l] & 0x0F) | ((qh[l] & 0x03) << 4)) - 32);
        out[l + 32] = scale[1] * float(((ql[l + 32] & 0x0F) | ((qh[l] & 0x0C) << 2)) - 32);
        out[l + 64] = scale[2] * float(((ql[l] >> 4) | (qh[l] & 0x30)) - 32);
        out[l + 96] = scale[3] * float(((ql[l + 32] >> 4) | ((qh[l] & 0xC0) >> 2)) - 32);
      }
    }
  }
}

// The doubled E2M1 value times half the scale: each product is a small integer times a power of two, exact in fp32.
void dequant_mxfp4(const BlockMXFP4& b, float* y) {
  const float half_scale = mxfp4_half_scale(b.e);
  for (int j = 0; j < 16; ++j) {
    y[j] = half_scale * float(kMxfp4DoubledValues[b.qs[j] & 0x0F]);
    y[j + 16] = half_scale * float(kMxfp4DoubledValues[b.qs[j] >> 4]);
  }
}

template <typename Block, void (*decode)(const Block&, float*)>
void dequant_blocks(const void* src, float* dst, int64_t n, int block_elems) {
  const Block* blocks = static_cast<const Block*>(src);
  for (int64_t i = 0; i < n / block_elems; ++i) decode(blocks[i], dst + i * block_elems);
}

}  // namespace

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(type));
  if (info.name != nullptr && n % info.block_elems != 0) {
    fail("dequantize: " + std::to_string(n) + " elements is not a multiple of the " + info.name + " block size " +
         std::to_string(info.block_elems));
  }
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case GgmlType::F16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(load_u16(p + 2 * i));
      return;
    }
    case GgmlType::BF16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(p + 2 * i));
      return;
    }
    case GgmlType::Q4_0: return dequant_blocks<BlockQ4_0, dequant_q4_0>(src, dst, n, kLegacyBlock);
    case GgmlType::Q4_1: return dequant_blocks<BlockQ4_1, dequant_q4_1>(src, dst, n, kLegacyBlock);
    case GgmlType::Q5_0: return dequant_blocks<BlockQ5_0, dequant_q5_0>(src, dst, n, kLegacyBlock);
    case GgmlType::Q5_1: return dequant_blocks<BlockQ5_1, dequant_q5_1>(src, dst, n, kLegacyBlock);
    case GgmlType::Q8_0: return dequant_blocks<BlockQ8_0, dequant_q8_0>(src, dst, n, kLegacyBlock);
    case GgmlType::Q4_K: return dequant_blocks<BlockQ4_K, dequant_q4_k>(src, dst, n, kSuperBlock);
    case GgmlType::Q5_K: return dequant_blocks<BlockQ5_K, dequant_q5_k>(src, dst, n, kSuperBlock);
    case GgmlType::Q6_K: return dequant_blocks<BlockQ6_K, dequant_q6_k>(src, dst, n, kSuperBlock);
    case GgmlType::MXFP4: return dequant_blocks<BlockMXFP4, dequant_mxfp4>(src, dst, n, kLegacyBlock);
    default:
      fail("tensor type " + ggml_type_name(static_cast<uint32_t>(type)) + " is not supported (cannot dequantize it)");
  }
}

}  // namespace swrun
