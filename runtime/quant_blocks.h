// Byte layouts of the GGUF/ggml quantized blocks, shared by the CPU dequantizer, the quantizer, the CPU dot
// products and the CUDA dequant kernels so that every reader agrees on one definition.
// Members are bytes only: blocks sit at any even offset inside a mapped file, and multi-byte fields are
// little-endian, so they are assembled explicitly instead of being read through wider types.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SWRUN_HOST_DEVICE __host__ __device__
#else
#define SWRUN_HOST_DEVICE
#endif

namespace swrun::quant {

constexpr int kLegacyBlock = 32;  // elements per Q4_0 .. Q8_0 block
constexpr int kSuperBlock = 256;  // elements per K-quant super-block (QK_K)

struct BlockQ4_0 { uint8_t d[2]; uint8_t qs[16]; };                          // d * (q - 8)
struct BlockQ4_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qs[16]; };            // d * q + m
struct BlockQ5_0 { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; };           // d * (q - 16)
struct BlockQ5_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint8_t d[2]; int8_t qs[32]; };                           // d * q
// K-quants: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes: d*sc*q - dmin*m.
struct BlockQ4_K { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
// Q6_K: 16 sub-blocks of 16 with int8 scales: d * sc * (q - 32).
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; };
// MXFP4 (OCP microscaling): one E8M0 exponent e for 32 E2M1 values, nibbles laid out as Q4_0's (element j in the
// low nibble of qs[j], element j + 16 in the high one). Value 2^(e-127) * e2m1(q).
struct BlockMXFP4 { uint8_t e; uint8_t qs[16]; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockMXFP4) == 17);

// The 16 E2M1 codes (sign bit 3, then 2 exponent bits and 1 mantissa bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6) doubled, so
// that they are integers; the block scale is halved to match (mxfp4_half_scale).
constexpr int8_t kMxfp4DoubledValues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// 2^(e-128), half the E8M0 scale 2^(e-127), for every byte (ggml reads 0xFF as 2^127 too, not as NaN). e < 2 gives
// an fp32 subnormal, built from its mantissa bit; the rest a normal float with exponent field e - 1.
SWRUN_HOST_DEVICE inline float mxfp4_half_scale(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t(0x00200000) << e : uint32_t(e - 1) << 23;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

SWRUN_HOST_DEVICE inline uint16_t load_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
SWRUN_HOST_DEVICE inline uint32_t load_u32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
SWRUN_HOST_DEVICE inline void store_u16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); }

// fp16 bits -> fp32, exact for every input (host code; kernels use the CUDA intrinsics). The 15 magnitude
// bits moved into float position encode value * 2^-112 for normal and subnormal halves alike, so one multiply
// by 2^112 restores the value; only inf/NaN need their exponent set by hand.
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t bits = uint32_t(h & 0x7FFF) << 13;
  float f;
  if ((h & 0x7C00) == 0x7C00) {
    bits |= sign | 0x7F800000;  // inf, or NaN with its payload
    std::memcpy(&f, &bits, 4);
    return f;
  }
  std::memcpy(&f, &bits, 4);
  f *= 0x1p112f;
  return sign ? -f : f;
}

// Scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. Bytes 0-3 hold the low 6 bits of scales 0-3 and
// bytes 4-7 those of mins 0-3; scales/mins 4-7 keep their low nibbles in bytes 8-11 and their top two bits in
// the spare high bits of bytes 0-7.
SWRUN_HOST_DEVICE inline void k_scale_min(const uint8_t* s, int j, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = uint8_t((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
    *min = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

}  // namespace swrun::quant
