// Fresh random GGUF blocks for the dequant tests (CPU and CUDA): random bytes everywhere, then every fp16 scale
// field (and MXFP4's exponent byte) overwritten with a finite value (mixed signs, several decades, some zeros and
// subnormals) so the dequantized values are finite while every packed bit still varies.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "runtime/dequant.h"
#include "runtime/ggml_types.h"

namespace swrun::testing {

// One seed per test binary run, printed so a failure can be replayed.
inline std::mt19937_64& rng() {
  static std::mt19937_64 gen = [] {
    const uint64_t seed = std::random_device{}();
    std::printf("random seed %llu\n", static_cast<unsigned long long>(seed));
    return std::mt19937_64(seed);
  }();
  return gen;
}

// Every type both backends read.
inline constexpr GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                         GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                         GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::MXFP4};

// The quantized types under test with the byte offsets of their fp16 scale fields (ggml block structs).
struct QuantTypeCase {
  GgmlType type;
  std::vector<int> scale_offsets;
};

inline const std::vector<QuantTypeCase>& quant_type_cases() {
  static const std::vector<QuantTypeCase> cases = {
      {GgmlType::Q4_0, {0}},    {GgmlType::Q4_1, {0, 2}}, {GgmlType::Q5_0, {0}},    {GgmlType::Q5_1, {0, 2}},
      {GgmlType::Q8_0, {0}},    {GgmlType::Q4_K, {0, 2}}, {GgmlType::Q5_K, {0, 2}}, {GgmlType::Q6_K, {208}},
  };
  return cases;
}

inline uint16_t random_sane_half(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> kind(0, 19);
  const int k = kind(rng);
  if (k == 0) return 0;
  if (k == 1) return uint16_t(std::uniform_int_distribution<int>(1, 0x3FF)(rng) | (rng() & 1 ? 0x8000 : 0));
  const float magnitude = std::pow(10.f, std::uniform_real_distribution<float>(-4.f, 1.f)(rng));
  return fp32_to_fp16(rng() & 1 ? -magnitude : magnitude);
}

// An E8M0 block exponent keeping values finite and their sums far from overflow: mostly scales 2^-27 .. 2^27,
// sometimes the fp32-subnormal half scales of e = 0 and 1.
inline uint8_t random_sane_e8m0(std::mt19937_64& rng) {
  const int k = std::uniform_int_distribution<int>(0, 19)(rng);
  if (k < 2) return uint8_t(k);
  return uint8_t(std::uniform_int_distribution<int>(100, 154)(rng));
}

inline float random_value(std::mt19937_64& rng) {
  const float magnitude = std::pow(10.f, std::uniform_real_distribution<float>(-6.f, 6.f)(rng));
  return rng() & 1 ? -magnitude : magnitude;
}

// n_blocks blocks of a quantized type, or n_blocks * 32 values of a plain type (F32/F16/BF16 get finite values).
inline std::vector<uint8_t> random_blocks(GgmlType type, int64_t n_blocks, std::mt19937_64& rng) {
  const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(type));
  std::vector<uint8_t> bytes(size_t(n_blocks) * info.block_bytes * (info.block_elems == 1 ? 32 : 1));
  for (auto& b : bytes) b = uint8_t(rng());
  if (type == GgmlType::F32) {
    std::normal_distribution<float> normal;
    for (size_t i = 0; i < bytes.size() / 4; ++i) {
      const float v = normal(rng);
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    }
  } else if (type == GgmlType::F16) {
    for (size_t i = 0; i < bytes.size() / 2; ++i) {
      if ((bytes[2 * i + 1] & 0x7C) == 0x7C) bytes[2 * i + 1] &= 0xBF;  // inf/NaN exponent -> finite
    }
  } else if (type == GgmlType::BF16) {
    // Random bits would reach 1e38 and overflow any sum; keep magnitudes moderate, with some subnormals.
    for (size_t i = 0; i < bytes.size() / 2; ++i) {
      uint16_t h = uint16_t(bytes[2 * i] & 0x7F);
      if (bytes[2 * i + 1] & 0x0F) {
        h = fp32_to_bf16(random_value(rng));
      }
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  if (type == GgmlType::MXFP4) {
    for (int64_t b = 0; b < n_blocks; ++b) bytes[b * info.block_bytes] = random_sane_e8m0(rng);
  }
  for (const auto& c : quant_type_cases()) {
    if (c.type != type) continue;
    for (int64_t b = 0; b < n_blocks; ++b) {
      for (int off : c.scale_offsets) {
        const uint16_t h = random_sane_half(rng);
        std::memcpy(bytes.data() + b * info.block_bytes + off, &h, 2);
      }
    }
  }
  return bytes;
}

}  // namespace swrun::testing
