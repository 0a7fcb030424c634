// GPU dequantization vs the CPU reference (runtime/dequant), on fresh random blocks every run. Outputs are
// poisoned before each launch and followed by a guard region that must stay untouched. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/dequant/dequant.cuh"
#include "quant_random_blocks.h"
#include "runtime/common.h"
#include "runtime/dequant.h"

namespace swrun {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device"

void ok(cudaError_t status, const char* what) { ASSERT_EQ(status, cudaSuccess) << what << ": " << cudaGetErrorString(status); }

using testing::kAllTypes;
using testing::rng;

constexpr int64_t kGuard = 64;  // elements after the output that no kernel may write

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  ~DeviceBuffer() { cudaFree(ptr); }
};

// Runs one dequantization into a poisoned buffer; returns the output plus guard as raw 32- or 16-bit words.
template <typename Word>
std::vector<Word> run_on_gpu(GgmlType type, const std::vector<uint8_t>& blocks, int64_t n, bool bf16) {
  DeviceBuffer src(blocks.size()), dst((n + kGuard) * sizeof(Word));
  EXPECT_EQ(cudaMemcpy(src.ptr, blocks.data(), blocks.size(), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemset(dst.ptr, 0xFF, (n + kGuard) * sizeof(Word)), cudaSuccess);  // NaN in both formats
  if (bf16) {
    cuda::dequantize_to_bf16(type, src.ptr, dst.ptr, n, nullptr);
  } else {
    cuda::dequantize_to_f32(type, src.ptr, dst.ptr, n, nullptr);
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<Word> out(n + kGuard);
  EXPECT_EQ(cudaMemcpy(out.data(), dst.ptr, out.size() * sizeof(Word), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

TEST(CudaDequant, MatchesCpuBitForBit) {
  SKIP_WITHOUT_GPU();
  for (GgmlType type : kAllTypes) {
    const GgmlTypeInfo info = ggml_type_info(static_cast<uint32_t>(type));
    SCOPED_TRACE(info.name);
    // One block, an odd count, and enough blocks for many thread blocks.
    for (int64_t n_blocks : {1, 7, 3001}) {
      const std::vector<uint8_t> blocks = testing::random_blocks(type, n_blocks, rng());
      const int64_t n = int64_t(blocks.size() / info.block_bytes) * info.block_elems;
      std::vector<float> expected(n);
      dequantize_row(type, blocks.data(), expected.data(), n);

      const std::vector<uint32_t> f32 = run_on_gpu<uint32_t>(type, blocks, n, false);
      const std::vector<uint16_t> bf16 = run_on_gpu<uint16_t>(type, blocks, n, true);
      int64_t f32_bad = 0, bf16_bad = 0;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t want;
        std::memcpy(&want, &expected[i], 4);
        if (f32[i] != want && f32_bad++ < 5) ADD_FAILURE() << "f32 element " << i << ": " << f32[i] << " vs " << want;
        const uint16_t want16 = fp32_to_bf16(expected[i]);
        if (bf16[i] != want16 && bf16_bad++ < 5) ADD_FAILURE() << "bf16 element " << i << ": " << bf16[i] << " vs " << want16;
      }
      EXPECT_EQ(f32_bad, 0) << "n = " << n;
      EXPECT_EQ(bf16_bad, 0) << "n = " << n;
      for (int64_t i = n; i < n + kGuard; ++i) {
        ASSERT_EQ(f32[i], 0xFFFFFFFFu) << "f32 guard element " << i - n << " overwritten";
        ASSERT_EQ(bf16[i], 0xFFFFu) << "bf16 guard element " << i - n << " overwritten";
      }
    }
  }
}

// MXFP4 at every scale byte, gguf-py's reading included: E8M0 0 and 1 (fp32-subnormal half scales), 254 and 255
// (255 read as 2^128, not NaN, so 12 * 2^127 overflows to inf on both sides), each with every code byte: the
// 16 x 16 nibble pairs cover every E2M1 value, both zeros, in both halves of the block.
TEST(CudaDequant, Mxfp4EveryScaleAndCodeBitForBit) {
  SKIP_WITHOUT_GPU();
  const GgmlTypeInfo info = ggml_type_info(uint32_t(GgmlType::MXFP4));
  std::vector<uint8_t> blocks;
  for (int e = 0; e < 256; ++e)
    for (int first = 0; first < 256; first += 16) {  // 16 blocks per scale: qs bytes first .. first + 15
      blocks.push_back(uint8_t(e));
      for (int j = 0; j < 16; ++j) blocks.push_back(uint8_t(first + j));
    }
  const int64_t n = int64_t(blocks.size() / info.block_bytes) * info.block_elems;
  std::vector<float> expected(n);
  dequantize_row(GgmlType::MXFP4, blocks.data(), expected.data(), n);
  const std::vector<uint32_t> f32 = run_on_gpu<uint32_t>(GgmlType::MXFP4, blocks, n, false);
  const std::vector<uint16_t> bf16 = run_on_gpu<uint16_t>(GgmlType::MXFP4, blocks, n, true);
  int64_t bad = 0, infinite = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t want;
    std::memcpy(&want, &expected[i], 4);
    infinite += std::isinf(expected[i]);
    if ((f32[i] != want || bf16[i] != fp32_to_bf16(expected[i])) && bad++ < 5)
      ADD_FAILURE() << "element " << i << " (scale byte " << i / 512 << "): f32 " << f32[i] << " vs " << want
                    << ", bf16 " << bf16[i] << " vs " << fp32_to_bf16(expected[i]);
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GT(infinite, 0) << "scale byte 255 must overflow the largest codes, as on the CPU";
  EXPECT_EQ(expected[0], 0.f);
  EXPECT_GT(std::fabs(expected[1]), 0.f) << "scale byte 0 keeps its subnormal half scale";
}

TEST(CudaDequant, BadInputIsAnError) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer buf(4096);
  try {
    cuda::dequantize_to_bf16(GgmlType::Q3_K, buf.ptr, buf.ptr, 256, nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q3_K"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuda::dequantize_to_f32(GgmlType::Q4_K, buf.ptr, buf.ptr, 100, nullptr), Error);
  EXPECT_THROW(cuda::dequantize_to_f32(GgmlType::Q8_0, buf.ptr, buf.ptr, -32, nullptr), Error);
  EXPECT_NO_THROW(cuda::dequantize_to_f32(GgmlType::Q8_0, buf.ptr, buf.ptr, 0, nullptr));
  ok(cudaDeviceSynchronize(), "sync");
}

}  // namespace
}  // namespace swrun
