// Tensor types: CPU dequantization against the gguf package's values (committed fixtures from
// tests/reference/make_quant_fixtures.py), fp16/bf16 conversions against arithmetic references, the quantizer
// (bytes equal to the gguf package's where it has one, error bounds everywhere), and the fused dot_row against
// dequantize + dot, on fresh random data every run; and the CUDA seam's tensor check on MXFP4 expert tensors.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "quant_random_blocks.h"
#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/cpu/dot.h"
#include "runtime/dequant.h"
#include "runtime/gguf_writer.h"

namespace swrun {
namespace {

using testing::quant_type_cases;
using testing::random_blocks;

// The committed fixtures, or a freshly generated set when SWRUN_QUANT_FIXTURES names its directory
// (tests/quant_fixtures.cmake does that with a random seed on every ctest run).
std::vector<uint8_t> read_fixture(const std::string& name) {
  const char* fresh = std::getenv("SWRUN_QUANT_FIXTURES");
  const std::string dir = fresh ? fresh : std::string(SWRUN_SOURCE_DIR) + "/tests/fixtures/quant";
  const std::string path = dir + "/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing fixture " + path + " (run tests/reference/make_quant_fixtures.py)");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> as_floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

std::string lower_name(GgmlType t) {
  std::string s = ggml_type_name(static_cast<uint32_t>(t));
  for (char& c : s) c = char(std::tolower(c));
  return s;
}

int64_t block_elems(GgmlType t) { return ggml_type_info(static_cast<uint32_t>(t)).block_elems; }

using testing::kAllTypes;  // every type dequantize_row and dot_row read (the CUDA tests take the same list)
using testing::rng;

// ---------------------------------------------------------------------------------------------------------------
// Dequantization vs the gguf package

TEST(Dequant, MatchesGgufPackageOnFixtures) {
  for (GgmlType type : kAllTypes) {
    SCOPED_TRACE(lower_name(type));
    const std::vector<uint8_t> blocks = read_fixture(lower_name(type) + ".blocks");
    const std::vector<float> expected = as_floats(read_fixture(lower_name(type) + ".f32"));
    const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(type));
    ASSERT_EQ(blocks.size(), ggml_row_bytes(info, int64_t(expected.size())));
    std::vector<float> got(expected.size(), NAN);
    dequantize_row(type, blocks.data(), got.data(), int64_t(got.size()));
    // Within fp32 rounding of the block's largest value: the gguf package rounds the scale product before
    // multiplying q, as we do; only an FMA-contracting compiler could differ, by an ulp.
    const int64_t be = std::max<int64_t>(info.block_elems, 1);
    int exact = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::isnan(expected[i])) {
        EXPECT_TRUE(std::isnan(got[i])) << "element " << i;
        ++exact;
        continue;
      }
      float block_max = 0.f;
      const size_t b0 = i / be * be;
      for (size_t j = b0; j < b0 + be; ++j) block_max = std::max(block_max, std::fabs(expected[j]));
      const float tol = std::isinf(expected[i]) ? 0.f : 2.f * FLT_EPSILON * block_max;
      if (std::isinf(expected[i])) {
        EXPECT_EQ(got[i], expected[i]) << "element " << i;
      } else {
        EXPECT_NEAR(got[i], expected[i], tol) << "element " << i;
      }
      exact += std::memcmp(&got[i], &expected[i], 4) == 0;
    }
    RecordProperty(lower_name(type) + "_bit_exact", exact);
  }
}

TEST(Dequant, UnsupportedTypeNamesTheType) {
  uint8_t block[512] = {};
  float out[256];
  try {
    dequantize_row(GgmlType::Q2_K, block, out, 256);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q2_K"), std::string::npos) << e.what();
  }
  try {
    dequantize_row(static_cast<GgmlType>(99), block, out, 32);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("type#99"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dequantize_row(GgmlType::Q4_K, block, out, 128), Error);  // half a super-block
  EXPECT_THROW(dequantize_row(GgmlType::Q8_0, block, out, 33), Error);
}

// ---------------------------------------------------------------------------------------------------------------
// fp16 / bf16 conversions

// value = (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024: computed, not bit-shuffled.
double half_value(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  const double mag = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
  return sign ? -mag : mag;
}

TEST(Fp16, EveryHalfConvertsExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(uint16_t(h));
    const int exp = (h >> 10) & 31;
    if (exp == 31) {
      if (h & 0x3FF) {
        EXPECT_TRUE(std::isnan(f)) << h;
      } else {
        EXPECT_EQ(f, (h & 0x8000) ? -INFINITY : INFINITY) << h;
      }
      continue;
    }
    ASSERT_EQ(double(f), half_value(uint16_t(h))) << "half bits " << h;
    EXPECT_EQ(std::signbit(f), bool(h & 0x8000)) << h;
    ASSERT_EQ(fp32_to_fp16(f), h) << "round trip of half bits " << h;
  }
}

// Nearest half with ties to even, by arithmetic on doubles (exact: a float has 24 bits, the grid step is a power of 2).
double nearest_half(float f) {
  const double a = std::fabs(double(f));
  const int e = a == 0 ? -30 : std::ilogb(a);
  const double step = std::ldexp(1.0, std::max(e, -14) - 10);
  double r = std::nearbyint(a / step) * step;  // default rounding mode: to nearest even
  if (r > 65504.0) r = INFINITY;
  return std::copysign(r, double(f));
}

TEST(Fp16, RoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x7BFF; ++h) {  // midpoints and their neighbours between consecutive positive halves
    const float mid = float((half_value(uint16_t(h)) + half_value(uint16_t(h + 1))) / 2);
    for (float f : {mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY), -mid}) {
      ASSERT_EQ(double(fp16_to_fp32(fp32_to_fp16(f))), nearest_half(f)) << "f = " << f;
    }
  }
  std::uniform_real_distribution<float> exponent(-30.f, 17.f);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::ldexp(std::uniform_real_distribution<float>(1.f, 2.f)(rng()), int(exponent(rng()))) *
                    (rng()() & 1 ? 1.f : -1.f);
    ASSERT_EQ(double(fp16_to_fp32(fp32_to_fp16(f))), nearest_half(f)) << "f = " << f;
  }
  EXPECT_EQ(fp32_to_fp16(65519.f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(65520.f), 0x7C00);  // the tie above the largest half rounds to even: infinity
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xFC00);
  EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7C00);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.f, -25)), 0x0000);                           // tie to even zero
  EXPECT_EQ(fp32_to_fp16(std::nextafter(std::ldexp(1.f, -25), 1.f)), 0x0001);      // just above: smallest
  EXPECT_EQ(fp32_to_fp16(-0.f), 0x8000);
}

TEST(Bf16, ConvertsAndRoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_fp32(uint16_t(h));
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    ASSERT_EQ(bits, h << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(fp32_to_bf16(f), h);
    }
  }
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = uint32_t(rng()());
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(f))));
      continue;
    }
    const double a = std::fabs(double(f));
    const int e = a == 0 ? -200 : std::max(std::ilogb(a), -126);
    const double step = std::ldexp(1.0, e - 7);
    double r = std::nearbyint(a / step) * step;
    if (r > double(FLT_MAX)) r = INFINITY;
    ASSERT_EQ(double(bf16_to_fp32(fp32_to_bf16(f))), std::copysign(r, double(f))) << "f = " << f;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Quantization

TEST(Quantize, MatchesGgufPackageBytes) {
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                        GgmlType::F16, GgmlType::BF16, GgmlType::MXFP4}) {
    SCOPED_TRACE(lower_name(type));
    const std::vector<float> in = as_floats(read_fixture(lower_name(type) + ".quant_in.f32"));
    const std::vector<uint8_t> expected = read_fixture(lower_name(type) + ".quant_out.blocks");
    std::vector<uint8_t> got(expected.size(), 0xCD);
    quantize_row(type, in.data(), got.data(), int64_t(in.size()));
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(int(got[i]), int(expected[i])) << "byte " << i;
  }
}

// Worst error per element relative to the largest magnitude in its block (super-block for K types), and the
// RMS of that relative error, for standard-normal data. The worst-case bounds follow from each format's step
// (Q4_0: one full step at the clipped end, amax/8; Q4_1: half a step of range/15; ...) plus the fp16 rounding
// of the scales, and for the K types the 6-bit (Q6_K: 8-bit) rounding of the sub-block scales and mins; the
// RMS bounds sit about 10% above the measured values, so a biased or sloppier rounding shows. MXFP4 (gguf-py's
// exponent choice) puts the block maximum at 8-16 half-scales and clips above the top code 12: at most 1/4 off.
struct ErrorBound {
  GgmlType type;
  double max_rel;
  double rms_rel;
};

TEST(Quantize, RoundTripErrorWithinFormatBounds) {
  const ErrorBound bounds[] = {
      {GgmlType::F32, 0.0, 0.0},        {GgmlType::F16, 4.9e-4, 2e-4},    {GgmlType::BF16, 3.95e-3, 1.5e-3},
      {GgmlType::Q8_0, 0.0045, 0.0025}, {GgmlType::Q4_0, 0.126, 0.04},    {GgmlType::Q5_0, 0.063, 0.02},
      {GgmlType::Q4_1, 0.07, 0.036},    {GgmlType::Q5_1, 0.035, 0.018},   {GgmlType::Q4_K, 0.09, 0.03},
      {GgmlType::Q5_K, 0.057, 0.015},   {GgmlType::Q6_K, 0.021, 0.0075},  {GgmlType::MXFP4, 0.26, 0.055},
  };
  for (const ErrorBound& b : bounds) {
    SCOPED_TRACE(lower_name(b.type));
    const int64_t n = 64 * 256;
    std::vector<float> x(n);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng());
    const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(b.type));
    std::vector<uint8_t> q(ggml_row_bytes(info, n));
    quantize_row(b.type, x.data(), q.data(), n);
    std::vector<float> y(n, NAN);
    dequantize_row(b.type, q.data(), y.data(), n);
    const int64_t be = std::max<int64_t>(block_elems(b.type), 32);
    double worst = 0, sum_sq = 0;
    for (int64_t i0 = 0; i0 < n; i0 += be) {
      float amax = 0.f;
      for (int64_t i = i0; i < i0 + be; ++i) amax = std::max(amax, std::fabs(x[i]));
      for (int64_t i = i0; i < i0 + be; ++i) {
        const double rel = std::fabs(double(y[i]) - x[i]) / amax;
        worst = std::max(worst, rel);
        sum_sq += rel * rel;
      }
    }
    const double rms = std::sqrt(sum_sq / n);
    EXPECT_LE(worst, b.max_rel);
    EXPECT_LE(rms, b.rms_rel);
    if (b.type != GgmlType::F32) {
      EXPECT_GT(rms, 0.0);  // the data really went through the quantizer
    }
  }
}

// MXFP4 is not here: with 2 mantissa bits per element a constant such as -3.25 is 8% off by design (its error
// bounds are in RoundTripErrorWithinFormatBounds).
TEST(Quantize, ConstantAndZeroBlocksSurvive) {
  for (GgmlType type : kAllTypes) {
    if (type == GgmlType::MXFP4) continue;
    SCOPED_TRACE(lower_name(type));
    const int64_t n = 256;
    const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(type));
    std::vector<uint8_t> q(ggml_row_bytes(info, n));
    std::vector<float> y(n);
    for (float c : {0.f, 1.5f, -3.25f}) {
      std::vector<float> x(n, c);
      quantize_row(type, x.data(), q.data(), n);
      dequantize_row(type, q.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], c, 0.02 * std::fabs(c)) << "c = " << c << " i = " << i;
    }
  }
}

TEST(Quantize, BadInputIsAnError) {
  float x[256] = {};
  uint8_t q[512];
  EXPECT_THROW(quantize_row(GgmlType::Q6_K, x, q, 32), Error);
  EXPECT_THROW(quantize_row(GgmlType::Q4_0, x, q, 31), Error);
  try {
    quantize_row(GgmlType::IQ2_XXS, x, q, 256);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Fused dot products

TEST(DotRow, EqualsDequantizeThenDot) {
  for (GgmlType type : kAllTypes) {
    SCOPED_TRACE(lower_name(type));
    const int64_t be = std::max<int64_t>(block_elems(type), 32);
    for (int64_t blocks : {1, 2, 3, 8}) {
      const int64_t n = be * blocks;
      const std::vector<uint8_t> row = random_blocks(type, blocks, rng());
      std::vector<float> w(n);
      dequantize_row(type, row.data(), w.data(), n);
      // x starts one float past an aligned address: the kernels must not assume alignment.
      std::vector<float> storage(n + 1);
      float* x = storage.data() + 1;
      std::normal_distribution<float> normal;
      for (int64_t i = 0; i < n; ++i) x[i] = normal(rng());
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += double(w[i]) * x[i];
        mag += std::fabs(double(w[i]) * x[i]);
      }
      const float got = dot_row(type, row.data(), x, n);
      EXPECT_NEAR(got, ref, 1e-5 * mag + 1e-30) << "n = " << n;
    }
  }
}

TEST(DotRow, DetectsAWrongElement) {
  // Guards the comparison above: one flipped quant bit must move the dot by more than its tolerance.
  const int64_t n = 256;
  std::vector<uint8_t> row = random_blocks(GgmlType::Q8_0, n / 32, rng());
  const uint16_t one = fp32_to_fp16(1.f);
  for (int b = 0; b < n / 32; ++b) std::memcpy(row.data() + 34 * b, &one, 2);
  std::vector<float> x(n, 1.f);
  const float before = dot_row(GgmlType::Q8_0, row.data(), x.data(), n);
  row[2 + 5] ^= 0x10;  // element 5 changes by 16
  const float after = dot_row(GgmlType::Q8_0, row.data(), x.data(), n);
  EXPECT_NEAR(std::fabs(after - before), 16.f, 1e-3f);
}

TEST(DotRow, BadInputIsAnError) {
  uint8_t row[512] = {};
  float x[256] = {};
  EXPECT_THROW(dot_row(GgmlType::Q4_K, row, x, 32), Error);
  EXPECT_THROW(dot_row(GgmlType::Q5_0, row, x, 48), Error);
  try {
    dot_row(GgmlType::Q3_K, row, x, 256);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q3_K"), std::string::npos) << e.what();
  }
}

TEST(DotF32, MatchesDoubleReferenceForAllTails) {
  for (int64_t n : {0, 1, 7, 8, 9, 31, 32, 33, 100, 640, 2048}) {
    std::vector<float> a(n + 1), b(n + 1);
    std::normal_distribution<float> normal;
    for (auto& v : a) v = normal(rng());
    for (auto& v : b) v = normal(rng());
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += double(a[i + 1]) * b[i];
      mag += std::fabs(double(a[i + 1]) * b[i]);
    }
    EXPECT_NEAR(dot_f32(a.data() + 1, b.data(), n), ref, 1e-5 * mag + 1e-30) << "n = " << n;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The CUDA seam

// The CUDA backend (and the memory plan that models it) reads MXFP4 experts, 3-D tensors of whole blocks per row:
// the tensor check counts their elements, and still refuses bytes that do not hold them.
TEST(CudaSeam, DeviceTensorCheckTakesMxfp4Experts) {
  std::vector<uint8_t> blocks(17 * 2 * 3 * 4);
  GgufTensor t{"blk.0.ffn_gate_exps.weight", uint32_t(GgmlType::MXFP4), {64, 3, 4}, 0, blocks.data(), blocks.size()};
  EXPECT_EQ(check_device_tensor(t), 64 * 3 * 4);
  t.nbytes -= 1;
  EXPECT_THROW(check_device_tensor(t), Error);
  t.nbytes += 1;
  t.ne = {48, 3, 4};  // rows of a block and a half
  EXPECT_THROW(check_device_tensor(t), Error);
}

}  // namespace
}  // namespace swrun
