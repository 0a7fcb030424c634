// The decode-step kernels against the CPU reference, on fresh random inputs every run (the seed is printed;
// failures name type, shape, position and the largest error): the quantized GEMV per format and per kernel
// variant (fp64 dot of the CPU-dequantized blocks), the embedding lookup from quantized rows (bit for bit), the
// chunked GEMM over a matrix kept only in its blocks, top-k/argmax on the device against
// swrun::top_candidates/argmax with ties, and the sampler drawing from device candidates against the CPU sampler
// with the same seed (also through a captured graph). Outputs are poisoned (NaN) first. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/gemv/gemv_quant.cuh"
#include "kernels/gemv/gemv_quant_variants.cuh"
#include "kernels/gemv/gemv_wide.cuh"
#include "kernels/norm/rmsnorm.cuh"
#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/dequant.h"
#include "runtime/sampler.h"
#include "tests/quant_random_blocks.h"

namespace swrun {
namespace {

using testing::rng;

constexpr GgmlType kGemvTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                   GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                   GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::MXFP4};

// Elements per block of `type` as random_blocks counts them (plain types: 32 values per "block").
int64_t random_block_elems(GgmlType type) {
  const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
  return info.block_elems == 1 ? 32 : info.block_elems;
}

void ok(cudaError_t status, const char* what) {
  ASSERT_EQ(status, cudaSuccess) << what << ": " << cudaGetErrorString(status);
}

// Copies and memsets on the legacy stream, finished before the backend's own (non-blocking) stream reads them.
void upload(void* dst, const void* src, size_t bytes) {
  ok(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "upload");
  ok(cudaDeviceSynchronize(), "upload");
}
void poison(void* dst, size_t bytes) {
  ok(cudaMemset(dst, 0xFF, bytes), "poison");
  ok(cudaDeviceSynchronize(), "poison");
}

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// A random n_out x cols matrix of `type`: its blocks on the device (padded as the GEMV reads them) and its
// CPU-dequantized values, the reference's weights.
struct RandomQuantMatrix {
  std::vector<float> w;
  DeviceBuffer blocks;
  RandomQuantMatrix(GgmlType type, int64_t cols, int64_t n_out)
      : RandomQuantMatrix(type, cols * n_out, testing::random_blocks(type, cols * n_out / random_block_elems(type),
                                                                     rng())) {}

 private:
  RandomQuantMatrix(GgmlType type, int64_t elems, const std::vector<uint8_t>& bytes)
      : w(static_cast<size_t>(elems)), blocks(cuda::gemv_quant_padded_bytes(bytes.size())) {
    dequantize_row(type, bytes.data(), w.data(), elems);
    upload(blocks.ptr, bytes.data(), bytes.size());
  }
};

class CudaDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  }
  std::vector<float> normal(size_t n, float sd = 1.f) {
    std::normal_distribution<float> d(0.f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng());
    return v;
  }
};

// x[r] . W[n] in fp64 over the CPU-dequantized weights, with the sum of |products| each error is measured against.
struct GemvReference {
  std::vector<double> sum, mag;  // [rows, n_out]
};
GemvReference gemv_reference(const std::vector<float>& w, const std::vector<float>& x, int rows, int64_t n_out,
                             int64_t cols) {
  GemvReference ref{std::vector<double>(size_t(rows * n_out)), std::vector<double>(size_t(rows * n_out))};
  for (int r = 0; r < rows; ++r)
    for (int64_t o = 0; o < n_out; ++o) {
      double sum = 0, mag = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const double p = double(x[r * cols + i]) * w[o * cols + i];
        sum += p;
        mag += std::fabs(p);
      }
      ref.sum[r * n_out + o] = sum;
      ref.mag[r * n_out + o] = mag;
    }
  return ref;
}

// Every output within 3e-5 of the sum of |products| of the reference (NaN, a row never written, fails), and the
// guard elements past them still NaN.
void expect_gemv_close(const std::vector<float>& got, const GemvReference& ref, const std::string& what) {
  int64_t bad = 0, worst_at = -1;
  double worst = 0;
  for (size_t i = 0; i < ref.sum.size(); ++i) {
    const double rel = std::fabs(got[i] - ref.sum[i]) / (ref.mag[i] + 1e-30);
    if (!(rel <= 3e-5) && bad++ < 3)
      ADD_FAILURE() << what << ": output " << i << " got " << got[i] << " want " << ref.sum[i]
                    << " (|err|/sum|p| " << rel << ")";
    if (!(rel <= worst)) worst = rel, worst_at = int64_t(i);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " wrong, worst relative error " << worst << " at " << worst_at;
  for (size_t i = ref.sum.size(); i < got.size(); ++i)
    ASSERT_TRUE(std::isnan(got[i])) << what << ": guard element " << i - ref.sum.size() << " overwritten";
}

// Runs one GEMV into a poisoned output with kGuard NaN elements after it and returns what it wrote.
template <typename Launch>
std::vector<float> gemv_output(int64_t out_count, const std::string& what, Launch&& launch) {
  constexpr int64_t kGuard = 32;
  DeviceBuffer od((out_count + kGuard) * 4);
  poison(od.ptr, (out_count + kGuard) * 4);
  launch(static_cast<float*>(od.ptr));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  std::vector<float> got(out_count + kGuard);
  EXPECT_EQ(cudaMemcpy(got.data(), od.ptr, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess) << what;
  return got;
}

// gemv_quant straight on device memory of exactly the padded size (so the sanitizer sees any read past it),
// against an fp64 dot of the CPU-dequantized weights with the fp32 activations.
TEST_F(CudaDecode, QuantGemvEveryFormatRowsAndShapes) {
  struct Shape { int64_t cols, n_out; };
  for (GgmlType type : kGemvTypes) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    const bool k_quant = info.block_elems == 256;
    // Rows of one block, rows longer than a warp's stage (several passes), odd output counts, and (for the
    // 32-element formats) lengths that are not a multiple of 256.
    const std::vector<Shape> shapes =
        k_quant ? std::vector<Shape>{{256, 1}, {1024, 37}, {2304, 9}, {4096, 130}, {2048, 1003}}
                : std::vector<Shape>{{32, 1}, {640, 37}, {2080, 9}, {8192, 13}, {96, 1003}};
    for (const Shape& sh : shapes) {
      const RandomQuantMatrix m(type, sh.cols, sh.n_out);
      for (int rows = 1; rows <= cuda::kGemvQuantMaxRows; ++rows) {
        const std::string what = std::string(info.name) + " cols " + std::to_string(sh.cols) + " n_out " +
                                 std::to_string(sh.n_out) + " rows " + std::to_string(rows);
        const std::vector<float> x = normal(size_t(rows * sh.cols));
        DeviceBuffer xd(x.size() * 4);
        upload(xd.ptr, x.data(), x.size() * 4);
        const std::vector<float> got = gemv_output(rows * sh.n_out, what, [&](float* out) {
          cuda::gemv_quant(type, m.blocks.ptr, static_cast<const float*>(xd.ptr), out, rows, sh.n_out, sh.cols,
                           nullptr);
        });
        expect_gemv_close(got, gemv_reference(m.w, x, rows, sh.n_out, sh.cols), what);
      }
    }
  }
}

// Every GEMV variant (forced), every format, every activation-row count, on shapes that reach each variant's
// cases: rows at every even byte offset (34-, 66- and 210-byte rows), a row of one span or one block, rows longer
// than a stage, row counts that leave the last 32-row tile and the last round of tiles partly empty, few rows over
// long rows (the lane-row variants split a row's spans over up to 8 warps) and rows of one span (no split). Each
// variant must also give the same bits on a second run, and the pipelined variant the bits of variant 1 (it runs
// the same per-lane sums).
TEST_F(CudaDecode, QuantGemvEveryVariantMatchesTheReference) {
  struct Shape { int64_t cols, n_out; };
  for (GgmlType type : kGemvTypes) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    const std::vector<Shape> shapes =
        info.block_elems == 256
            ? std::vector<Shape>{{256, 67}, {2048, 37}, {4352, 9}, {512, 1029}}
            : std::vector<Shape>{{32, 67}, {96, 1003}, {640, 37}, {2080, 9}, {640, 1029}};
    for (const Shape& sh : shapes) {
      const RandomQuantMatrix m(type, sh.cols, sh.n_out);
      for (int rows = 1; rows <= cuda::kGemvQuantMaxRows; ++rows) {
        const std::vector<float> x = normal(size_t(rows * sh.cols));
        DeviceBuffer xd(x.size() * 4);
        upload(xd.ptr, x.data(), x.size() * 4);
        const GemvReference ref = gemv_reference(m.w, x, rows, sh.n_out, sh.cols);
        std::vector<float> warp_bits;
        for (int v = 1; v <= cuda::kGemvVariantCount; ++v) {
          const auto variant = cuda::GemvVariant(v);
          if (!cuda::gemv_variant_applies(variant, type, sh.cols, rows)) continue;
          const std::string what = std::string(cuda::gemv_variant_name(variant)) + " " + info.name + " cols " +
                                   std::to_string(sh.cols) + " n_out " + std::to_string(sh.n_out) + " rows " +
                                   std::to_string(rows);
          auto run = [&](float* out) {
            cuda::gemv_quant_variant(variant, type, m.blocks.ptr, static_cast<const float*>(xd.ptr), out, rows,
                                     sh.n_out, sh.cols, nullptr);
          };
          const std::vector<float> got = gemv_output(rows * sh.n_out, what, run);
          expect_gemv_close(got, ref, what);
          if (rows == 1) {  // once per shape: the sanitizer runs this test too
            const std::vector<float> again = gemv_output(rows * sh.n_out, what, run);
            EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * 4), 0) << what << ": not deterministic";
          }
          if (variant == cuda::GemvVariant::Warp) warp_bits = got;
          if (variant == cuda::GemvVariant::WarpPipelined)
            EXPECT_EQ(std::memcmp(got.data(), warp_bits.data(), got.size() * 4), 0)
                << what << ": differs from variant 1";
        }
      }
    }
  }
}

// Enough rows that every block of every variant loops over several rounds of rows or tiles (its pipelines cross
// from one row or tile to the next), short rows so the reference stays cheap. The Q4_K case gives the stream
// variants (10, 11) ~10 steps per warp that start and end inside tiles (5 passes a tile), so most tiles are
// finished by the last of two or three warps.
TEST_F(CudaDecode, QuantGemvEveryVariantOverManyRows) {
  struct Case { GgmlType type; int64_t cols, n_out; };
  for (const Case& c : {Case{GgmlType::Q8_0, 32, 262143}, Case{GgmlType::Q6_K, 256, 200003},
                        Case{GgmlType::Q4_K, 4352, 20003}}) {
    const RandomQuantMatrix m(c.type, c.cols, c.n_out);
    for (int rows : {1, 8}) {
      const std::vector<float> x = normal(size_t(rows * c.cols));
      DeviceBuffer xd(x.size() * 4);
      upload(xd.ptr, x.data(), x.size() * 4);
      const GemvReference ref = gemv_reference(m.w, x, rows, c.n_out, c.cols);
      for (int v = 1; v <= cuda::kGemvVariantCount; ++v) {
        const auto variant = cuda::GemvVariant(v);
        if (!cuda::gemv_variant_applies(variant, c.type, c.cols, rows)) continue;
        const std::string what = std::string(cuda::gemv_variant_name(variant)) + " " +
                                 ggml_type_name(uint32_t(c.type)) + " n_out " + std::to_string(c.n_out) + " rows " +
                                 std::to_string(rows);
        expect_gemv_close(gemv_output(rows * c.n_out, what,
                                      [&](float* out) {
                                        cuda::gemv_quant_variant(variant, c.type, m.blocks.ptr,
                                                                 static_cast<const float*>(xd.ptr), out, rows,
                                                                 c.n_out, c.cols, nullptr);
                                      }),
                          ref, what);
      }
    }
  }
}

// gemv_wide's kernels through the entry points the decode step uses: a layer's q/k/v as three segments of one
// launch (the stream kernels walk their tiles across segment ends) and the gated gate/up pair, each kernel against
// the fp64 dots, deterministic.
TEST_F(CudaDecode, WideKernelsOverSegmentsAndGatedPairs) {
  auto weights = [](const RandomQuantMatrix& m) { return static_cast<const uint8_t*>(m.blocks.ptr); };
  const int64_t cols = 4352;  // 17 blocks: 136 units, 5 passes (the last one partly empty)
  const int64_t n_out[3] = {301, 38, 5};
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K}) {
    const RandomQuantMatrix m[3] = {{type, cols, n_out[0]}, {type, cols, n_out[1]}, {type, cols, n_out[2]}};
    const std::vector<float> x = normal(size_t(cols));
    DeviceBuffer xd(x.size() * 4);
    upload(xd.ptr, x.data(), x.size() * 4);
    const auto* xp = static_cast<const float*>(xd.ptr);
    const GemvReference ref[3] = {gemv_reference(m[0].w, x, 1, n_out[0], cols),
                                  gemv_reference(m[1].w, x, 1, n_out[1], cols),
                                  gemv_reference(m[2].w, x, 1, n_out[2], cols)};
    for (cuda::GemvWideKernel k : {cuda::GemvWideKernel::Staged, cuda::GemvWideKernel::Stream8,
                                   cuda::GemvWideKernel::Stream4}) {
      const std::string what = std::string(ggml_type_name(uint32_t(type))) + " kernel " + std::to_string(int(k));
      ASSERT_TRUE(cuda::gemv_wide_supported(type, cols, k)) << what;
      const int64_t total = n_out[0] + n_out[1] + n_out[2];
      auto multi = [&](float* out) {
        const cuda::GemvWideSeg segs[3] = {{weights(m[0]), out, n_out[0]},
                                           {weights(m[1]), out + n_out[0], n_out[1]},
                                           {weights(m[2]), out + n_out[0] + n_out[1], n_out[2]}};
        cuda::gemv_wide(type, segs, 3, xp, cols, nullptr, k);
      };
      const std::vector<float> got = gemv_output(total, what + " q/k/v", multi);
      int64_t at = 0;
      for (int i = 0; i < 3; ++i) {
        expect_gemv_close(std::vector<float>(got.begin() + at, got.begin() + at + n_out[i]), ref[i],
                          what + " segment " + std::to_string(i));
        at += n_out[i];
      }
      const std::vector<float> again = gemv_output(total, what + " q/k/v", multi);
      EXPECT_EQ(std::memcmp(got.data(), again.data(), size_t(total) * 4), 0) << what << ": not deterministic";

      // gate = segment 0's matrix, up = a second one of the same shape
      const RandomQuantMatrix up(type, cols, n_out[0]);
      const GemvReference ref_up = gemv_reference(up.w, x, 1, n_out[0], cols);
      const std::vector<float> gated = gemv_output(n_out[0], what + " gated", [&](float* out) {
        cuda::gemv_wide_gated(type, weights(m[0]), weights(up), xp, out, n_out[0], cols,
                              cuda::GatedActKind::Silu, nullptr, k);
      });
      for (int64_t o = 0; o < n_out[0]; ++o) {
        const double g = ref[0].sum[size_t(o)], u = ref_up.sum[size_t(o)];
        const double silu = g / (1 + std::exp(-g));
        // each dot within 3e-5 of its products' magnitude (expect_gemv_close); silu' <= 1.1
        const double bound = 3e-5 * (1.1 * ref[0].mag[size_t(o)] * std::fabs(u) + std::fabs(silu) * ref_up.mag[size_t(o)]) + 1e-30;
        EXPECT_LE(std::fabs(gated[size_t(o)] - silu * u), bound) << what << " gated output " << o;
      }
    }
  }
}

// Bad arguments are one clear error, whichever variant is forced.
TEST_F(CudaDecode, QuantGemvVariantRejectsBadArguments) {
  DeviceBuffer wd(4096), xd(4096), od(4096);
  const auto* x = static_cast<const float*>(xd.ptr);
  auto* out = static_cast<float*>(od.ptr);
  for (int v = 1; v <= cuda::kGemvVariantCount; ++v) {
    const auto variant = cuda::GemvVariant(v);
    EXPECT_THROW(cuda::gemv_quant_variant(variant, GgmlType::Q4_K, wd.ptr, x, out, 1, 1, 100, nullptr), Error);
    EXPECT_THROW(cuda::gemv_quant_variant(variant, GgmlType::Q8_0, wd.ptr, x, out, 9, 1, 32, nullptr), Error);
    EXPECT_THROW(cuda::gemv_quant_variant(variant, GgmlType::Q8_0, static_cast<uint8_t*>(wd.ptr) + 2, x, out, 1, 1,
                                          32, nullptr),
                 Error);
  }
}

GgufTensor tensor_of(const std::string& name, GgmlType type, std::vector<int64_t> ne, const std::vector<uint8_t>& b) {
  GgufTensor t;
  t.name = name;
  t.type_id = uint32_t(type);
  t.ne = std::move(ne);
  t.data = b.data();
  t.nbytes = b.size();
  return t;
}

// The token table keeps only its blocks on the device; lookups dequantize them exactly as the CPU does.
TEST_F(CudaDecode, EmbeddingFromQuantizedRowsBitForBit) {
  for (GgmlType type : kGemvTypes) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(type));
    SCOPED_TRACE(info.name);
    const int64_t cols = info.block_elems == 256 ? 512 : 640, vocab = 301;
    const std::vector<uint8_t> bytes = testing::random_blocks(type, cols * vocab / random_block_elems(type), rng());
    auto be = make_cuda_backend(0);
    const size_t before = be->weight_bytes();
    const Weight table = be->upload(tensor_of("token_embd.weight", type, {cols, vocab}, bytes));
    EXPECT_EQ(be->weight_bytes() - before, cuda::gemv_quant_padded_bytes(bytes.size()))
        << "the token table must be held in its blocks only";
    const int n = 9;
    std::vector<int32_t> tokens(n);
    for (auto& t : tokens) t = int32_t(rng()() % vocab);
    tokens[0] = int32_t(vocab - 1);  // the last row: its blocks end at the end of the tensor
    be->begin_batch(tokens.data(), 0, n);
    Buffer out = be->alloc(size_t(n) * cols);
    poison(out.data, out.count * 4);
    const float scale = 25.298221f;
    be->embed(table, scale, out);
    std::vector<float> got(out.count);
    be->read(out, 0, out.count, got.data());
    be->synchronize();
    const size_t row_bytes = ggml_row_bytes(info, cols);
    std::vector<float> want(static_cast<size_t>(cols));
    int64_t bad = 0;
    for (int t = 0; t < n; ++t) {
      dequantize_row(type, bytes.data() + row_bytes * tokens[t], want.data(), cols);
      for (int64_t c = 0; c < cols; ++c) {
        const float w = want[c] * scale;
        if (std::memcmp(&w, &got[t * cols + c], 4) != 0 && bad++ < 3)
          ADD_FAILURE() << "token " << tokens[t] << " column " << c << ": got " << got[t * cols + c] << " want " << w;
      }
    }
    EXPECT_EQ(bad, 0);
  }
}

// Many rows against the token table (all-position logits): bf16 slices dequantized in chunks through cuBLAS,
// here over more rows than one chunk holds; a few rows take the quantized GEMV.
TEST_F(CudaDecode, MatmulAgainstQuantizedOnlyTable) {
  const int64_t cols = 256, n_out = 70001;  // 17.9M elements: two 16M-element chunks
  const GgmlType type = GgmlType::Q8_0;
  const std::vector<uint8_t> bytes = testing::random_blocks(type, cols * n_out / 32, rng());
  std::vector<float> w(size_t(cols * n_out));
  dequantize_row(type, bytes.data(), w.data(), cols * n_out);
  auto be = make_cuda_backend(0);
  const Weight table = be->upload(tensor_of("output.weight", type, {cols, n_out}, bytes));
  for (int64_t rows : {12, 3}) {
    const std::vector<float> x = normal(size_t(rows * cols));
    Buffer xd = be->alloc(x.size()), out = be->alloc(size_t(rows * n_out));
    upload(xd.data, x.data(), x.size() * 4);
    poison(out.data, out.count * 4);
    be->matmul(xd, table, rows, out);
    std::vector<float> got(out.count);
    be->read(out, 0, out.count, got.data());
    be->synchronize();
    // cuBLAS sees bf16 operands; the GEMV fp32 ones.
    const bool gemm = rows > cuda::kGemvQuantMaxRows;
    auto round = [&](float v) { return gemm ? double(bf16_to_fp32(fp32_to_bf16(v))) : double(v); };
    int64_t bad = 0;
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < n_out; ++o) {
        double sum = 0, mag = 0;
        for (int64_t i = 0; i < cols; ++i) {
          const double p = round(x[r * cols + i]) * round(w[o * cols + i]);
          sum += p;
          mag += std::fabs(p);
        }
        const double rel = std::fabs(got[r * n_out + o] - sum) / (mag + 1e-30);
        worst = std::max(worst, std::isnan(rel) ? 1e9 : rel);
        if (!(rel <= (gemm ? 2e-3 : 1e-5)) && bad++ < 3)
          ADD_FAILURE() << "rows " << rows << ": row " << r << " out " << o << " got " << got[r * n_out + o]
                        << " want " << sum;
      }
    EXPECT_EQ(bad, 0) << "rows " << rows << ": worst relative error " << worst;
  }
}

// The fused gate/up GEMV (CUDA gated_matmul, rows <= 8) against the unfused ops on the same backend: each dot is
// the same arithmetic, so only the activation's rounding may differ. 12 rows take the unfused default.
TEST_F(CudaDecode, GatedMatmulFusedEqualsUnfused) {
  struct Case { GgmlType type; int64_t cols, n_out; };
  // (2304 and 4352 columns: past the rows the warp variants stage, one activation row takes the wide variant)
  for (Case c : {Case{GgmlType::Q5_0, 640, 2051}, Case{GgmlType::Q4_K, 1024, 300}, Case{GgmlType::Q6_K, 512, 77},
                 Case{GgmlType::Q8_0, 96, 1}, Case{GgmlType::F16, 64, 33}, Case{GgmlType::Q4_K, 2304, 301},
                 Case{GgmlType::Q6_K, 4352, 77}, Case{GgmlType::Q8_0, 2080, 6}}) {
    const GgmlTypeInfo info = ggml_type_info(uint32_t(c.type));
    const int64_t blocks = c.cols * c.n_out / random_block_elems(c.type);
    const std::vector<uint8_t> gate_bytes = testing::random_blocks(c.type, blocks, rng());
    const std::vector<uint8_t> up_bytes = testing::random_blocks(c.type, blocks, rng());
    auto be = make_cuda_backend(0);
    const Weight wg = be->upload(tensor_of("blk.0.ffn_gate.weight", c.type, {c.cols, c.n_out}, gate_bytes));
    const Weight wu = be->upload(tensor_of("blk.0.ffn_up.weight", c.type, {c.cols, c.n_out}, up_bytes));
    for (int64_t rows : {1, 3, 8, 12}) {
      for (GatedAct act : {GatedAct::GeluTanh, GatedAct::Silu}) {
        const std::string what = std::string(info.name) + " cols " + std::to_string(c.cols) + " n_out " +
                                 std::to_string(c.n_out) + " rows " + std::to_string(rows) +
                                 (act == GatedAct::Silu ? " silu" : " gelu");
        // Small activations keep the products in the range where both activations bend.
        const std::vector<float> x = normal(size_t(rows * c.cols), 1e-2f);
        const size_t count = size_t(rows * c.n_out);
        Buffer xd = be->alloc(x.size()), gate = be->alloc(count), up = be->alloc(count);
        Buffer ref_gate = be->alloc(count), ref_up = be->alloc(count);
        upload(xd.data, x.data(), x.size() * 4);
        poison(gate.data, count * 4);
        be->gated_matmul(xd, wg, wu, rows, act, gate, up);
        be->matmul(xd, wg, rows, ref_gate);
        be->matmul(xd, wu, rows, ref_up);
        be->gated_act(ref_gate, ref_up, count, act);
        std::vector<float> got(count), want(count);
        be->read(gate, 0, count, got.data());
        be->read(ref_gate, 0, count, want.data());
        be->synchronize();
        size_t bad = 0, worst_at = 0;
        double worst = 0;
        for (size_t i = 0; i < count; ++i) {
          const double err = std::fabs(double(got[i]) - want[i]) / std::max(std::fabs(double(want[i])), 1e-3);
          if (!(err <= 1e-5) && bad++ < 3)
            ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
          if (!(err <= worst)) worst = err, worst_at = i;
        }
        EXPECT_EQ(bad, 0u) << what << ": worst relative error " << worst << " at " << worst_at;
      }
    }
  }
}

// Several projections in one launch (CUDA matmuls: q, k, v of mixed types) against one matmul each on the same
// backend: every row's dot is the same code, so with several activation rows the results must be identical; with
// one, a launch may split each row between more warps than the other (the split follows the launch's rows: RowParts
// in gemv_quant.cu), which moves the rounding of the parts' sum, so they agree to 1e-5 of the output's scale;
// 12 rows take the default.
TEST_F(CudaDecode, MatmulsInOneLaunchMatchSeparateMatmuls) {
  struct Mat { GgmlType type; int64_t n_out; };
  struct Case { int64_t cols; std::vector<Mat> mats; };
  for (const Case& c : {Case{640, {{GgmlType::Q5_0, 1024}, {GgmlType::Q5_0, 256}, {GgmlType::Q8_0, 256}}},
                        Case{512, {{GgmlType::Q4_K, 37}, {GgmlType::Q6_K, 5}, {GgmlType::F16, 300}}},
                        Case{256, {{GgmlType::Q5_K, 3}, {GgmlType::BF16, 70}}}, Case{96, {{GgmlType::Q4_1, 9}}},
                        Case{2304, {{GgmlType::Q4_K, 301}, {GgmlType::Q6_K, 5}, {GgmlType::Q4_K, 38}}}}) {
    auto be = make_cuda_backend(0);
    std::vector<Weight> ws;
    std::string what = "cols " + std::to_string(c.cols);
    for (const Mat& m : c.mats) {
      const std::vector<uint8_t> bytes = testing::random_blocks(m.type, c.cols * m.n_out / random_block_elems(m.type), rng());
      ws.push_back(be->upload(tensor_of("blk.0.attn_q.weight", m.type, {c.cols, m.n_out}, bytes)));
      what += std::string(" ") + ggml_type_name(uint32_t(m.type)) + "x" + std::to_string(m.n_out);
    }
    for (int64_t rows : {1, 4, 8, 12}) {
      const std::vector<float> x = normal(size_t(rows * c.cols));
      Buffer xd = be->alloc(x.size());
      upload(xd.data, x.data(), x.size() * 4);
      std::vector<const Weight*> wp;
      std::vector<Buffer> fused, separate;
      for (const Weight& w : ws) {
        wp.push_back(&w);
        fused.push_back(be->alloc(size_t(rows * w.rows)));
        separate.push_back(be->alloc(size_t(rows * w.rows)));
        poison(fused.back().data, fused.back().count * 4);
      }
      be->matmuls(xd, rows, wp.data(), fused.data(), int(ws.size()));
      for (size_t i = 0; i < ws.size(); ++i) be->matmul(xd, ws[i], rows, separate[i]);
      for (size_t i = 0; i < ws.size(); ++i) {
        std::vector<float> got(fused[i].count), want(separate[i].count);
        be->read(fused[i], 0, got.size(), got.data());
        be->read(separate[i], 0, want.size(), want.data());
        be->synchronize();
        double mean_square = 0;
        for (float v : want) mean_square += double(v) * v;
        const double scale = std::sqrt(mean_square / double(want.size())), tolerance = rows == 1 ? 1e-5 : 0.0;
        size_t differ = 0, first = 0;
        for (size_t j = 0; j < got.size(); ++j)
          if (!(std::fabs(double(got[j]) - want[j]) <= tolerance * std::max(std::fabs(double(want[j])), scale)) &&
              differ++ == 0)
            first = j;
        EXPECT_EQ(differ, 0u) << what << " rows " << rows << ": matrix " << i << " differs at " << differ
                              << " outputs, first " << first << ": " << got[first] << " vs " << want[first];
      }
    }
  }
}

// Largest |got - want| over max(|want|, floor), with where it is (NaN counts as infinitely far).
struct WorstError {
  double err = 0;
  size_t at = 0;
};
WorstError worst_error(const std::vector<float>& got, const std::vector<float>& want, double floor) {
  WorstError w;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(double(got[i]) - want[i]) / std::max(std::fabs(double(want[i])), floor);
    if (!(err <= w.err)) w = {std::isnan(err) ? INFINITY : err, i};
  }
  return w;
}

// The fused residual step (post-norm, residual add, next pre-norm in one pass) against the unfused ops on the
// same backend (Backend::residual_norm called non-virtually): same reductions in the same order, so the results
// agree to the last bit or nearly; row widths cover the warp-per-row and block-per-row layouts.
TEST_F(CudaDecode, ResidualNormFusedEqualsUnfused) {
  const uint64_t seed = rng()();
  for (int64_t width : {640, 12, 2048, 5120}) {
    for (int64_t rows : {1, 7}) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool post = variant & 1, next = variant & 2;
        const std::string what = "width " + std::to_string(width) + " rows " + std::to_string(rows) +
                                 (post ? " post-norm" : "") + (next ? " next-norm" : "") + " seed " +
                                 std::to_string(seed);
        auto be = make_cuda_backend(0);
        const std::vector<float> w_post = normal(size_t(width)), w_next = normal(size_t(width));
        const Weight wp = be->upload(tensor_of("post", GgmlType::F32, {width},
                                               {reinterpret_cast<const uint8_t*>(w_post.data()),
                                                reinterpret_cast<const uint8_t*>(w_post.data() + width)}));
        const Weight wn = be->upload(tensor_of("next", GgmlType::F32, {width},
                                               {reinterpret_cast<const uint8_t*>(w_next.data()),
                                                reinterpret_cast<const uint8_t*>(w_next.data() + width)}));
        const size_t count = size_t(rows * width);
        const std::vector<float> x = normal(count, 3.f), y = normal(count, 0.5f);
        Buffer x1 = be->alloc(count), y1 = be->alloc(count), xn1 = be->alloc(count);
        Buffer x2 = be->alloc(count), y2 = be->alloc(count), xn2 = be->alloc(count);
        for (Buffer b : {x1, x2}) upload(b.data, x.data(), count * 4);
        for (Buffer b : {y1, y2}) upload(b.data, y.data(), count * 4);
        for (Buffer b : {xn1, xn2}) poison(b.data, count * 4);
        be->residual_norm(y1, post ? &wp : nullptr, x1, next ? &wn : nullptr, rows, width, 1e-6f, xn1);
        be->Backend::residual_norm(y2, post ? &wp : nullptr, x2, next ? &wn : nullptr, rows, width, 1e-6f, xn2);
        for (auto [fused, unfused, name] : {std::tuple{x1, x2, "x"}, std::tuple{xn1, xn2, "xn"}}) {
          std::vector<float> got(count), want(count);
          be->read(fused, 0, count, got.data());
          be->read(unfused, 0, count, want.data());
          be->synchronize();
          if (std::string(name) == "xn" && !next) {
            for (float v : got) ASSERT_TRUE(std::isnan(v)) << what << ": xn written without a next norm";
            continue;
          }
          // Relative to the terms' scale (x ~ 3, normed rows ~ 1), not to the sum alone: a sum that cancels to a
          // small value keeps the few-ulp rounding of its O(1) terms.
          const WorstError w = worst_error(got, want, 1.0);
          EXPECT_LE(w.err, 1e-6) << what << ": " << name << " worst relative error at " << w.at << ": got "
                                 << got[w.at] << " want " << want[w.at];
        }
      }
    }
  }
}

std::vector<float> download(const void* src, size_t count) {
  std::vector<float> v(count);
  EXPECT_EQ(cudaMemcpy(v.data(), src, count * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// The residual step folded into the GEMV that reads its xn (gemv_quant_gated / gemv_quant_multi with a
// GemvResidualFold) against the step's own launch (residual_norm_f32) followed by the plain GEMV: x and xn agree
// to rounding (the fold reduces the norms over its block), and so do the products. Two steps in a row, the second
// on the first's residual, check that the blocks' arrival counter is back at 0; grids from 1 to a few hundred
// blocks, and one over the re-read budget (launched unfolded inside the call).
TEST_F(CudaDecode, ResidualStepFoldedIntoGemvEqualsItsOwnLaunch) {
  struct Case { GgmlType type; int64_t cols, n_out; bool gated, post; };
  const uint64_t seed = rng()();
  DeviceBuffer arrivals(sizeof(int));
  ok(cudaMemset(arrivals.ptr, 0, sizeof(int)), "arrivals");
  for (Case c : {Case{GgmlType::Q5_0, 640, 2048, true, true}, Case{GgmlType::Q8_0, 640, 1024, false, true},
                 Case{GgmlType::Q4_K, 2048, 512, false, false}, Case{GgmlType::Q6_K, 2048, 7, true, true},
                 Case{GgmlType::Q8_0, 32, 1, true, false}, Case{GgmlType::Q4_0, 2048, 8192, true, true}}) {
    const std::string what = std::string(ggml_type_name(uint32_t(c.type))) + " cols " + std::to_string(c.cols) +
                             " n_out " + std::to_string(c.n_out) + (c.gated ? " gated" : " q/k/v") +
                             (c.post ? " post-norm" : "") + " seed " + std::to_string(seed);
    const int64_t n = c.cols;
    // q, k, v as in a layer: n_out rows, then a quarter each (at least one row).
    const int64_t kv_rows = std::max<int64_t>(1, c.n_out / 4);
    const RandomQuantMatrix m0(c.type, n, c.n_out), m1(c.type, n, c.gated ? c.n_out : kv_rows),
        m2(c.type, n, c.gated ? 1 : kv_rows);
    const int64_t outs = c.gated ? c.n_out : c.n_out + 2 * kv_rows;
    const std::vector<float> w_post = normal(size_t(n)), w_next = normal(size_t(n)), x0 = normal(size_t(n), 3.f);
    DeviceBuffer wp(n * 4), wn(n * 4);
    upload(wp.ptr, w_post.data(), n * 4);
    upload(wn.ptr, w_next.data(), n * 4);
    struct Path {
      DeviceBuffer y, x, xn, out;
      explicit Path(int64_t n, int64_t outs) : y(n * 4), x(n * 4), xn(n * 4), out(outs * 4) {}
    } folded(n, outs), own(n, outs);
    upload(folded.x.ptr, x0.data(), n * 4);
    upload(own.x.ptr, x0.data(), n * 4);
    for (int step = 0; step < 2; ++step) {
      const std::vector<float> y = normal(size_t(n), 0.5f);
      for (Path* p : {&folded, &own}) {
        upload(p->y.ptr, y.data(), n * 4);
        poison(p->xn.ptr, n * 4);
        poison(p->out.ptr, outs * 4);
      }
      const float* post = c.post ? static_cast<const float*>(wp.ptr) : nullptr;
      const auto* next = static_cast<const float*>(wn.ptr);
      auto gemv = [&](Path& p, const cuda::GemvResidualFold* fold) {
        const auto* xn = static_cast<const float*>(p.xn.ptr);
        auto* out = static_cast<float*>(p.out.ptr);
        if (c.gated) {
          cuda::gemv_quant_gated(c.type, m0.blocks.ptr, m1.blocks.ptr, xn, out, 1, c.n_out, n,
                                 cuda::GatedActKind::GeluTanh, nullptr, fold);
        } else {
          cuda::GemvMultiArgs a{};
          a.count = 3;
          const RandomQuantMatrix* ms[] = {&m0, &m1, &m2};
          for (int i = 0; i < 3; ++i) {
            a.w[i] = static_cast<const uint8_t*>(ms[i]->blocks.ptr);
            a.n_out[i] = i == 0 ? c.n_out : kv_rows;
            a.out[i] = out + (i == 0 ? 0 : c.n_out + (i - 1) * kv_rows);
            a.type[i] = c.type;
          }
          cuda::gemv_quant_multi(a, xn, 1, n, nullptr, fold);
        }
      };
      const cuda::GemvResidualFold fold{static_cast<const float*>(folded.y.ptr), post,
                                        static_cast<float*>(folded.x.ptr), next, static_cast<float*>(folded.xn.ptr),
                                        1e-6f, static_cast<int*>(arrivals.ptr)};
      gemv(folded, &fold);
      cuda::residual_norm_f32(static_cast<const float*>(own.y.ptr), post, static_cast<float*>(own.x.ptr), next,
                              static_cast<float*>(own.xn.ptr), 1, n, 1e-6f, nullptr);
      gemv(own, nullptr);
      ok(cudaDeviceSynchronize(), what.c_str());
      const std::string at = what + " step " + std::to_string(step);
      for (auto [name, a, b] :
           {std::tuple{"x", folded.x.ptr, own.x.ptr}, std::tuple{"xn", folded.xn.ptr, own.xn.ptr}}) {
        // A few ulps of the O(1) terms per step; the second step inherits the first's.
        const WorstError w = worst_error(download(a, size_t(n)), download(b, size_t(n)), 1.0);
        EXPECT_LE(w.err, 4e-6) << at << ": " << name << " worst relative error at " << w.at;
      }
      // Products relative to their typical size: xn differs in the last bits, and a product near 0 keeps that.
      const std::vector<float> got = download(folded.out.ptr, size_t(outs));
      const std::vector<float> want = download(own.out.ptr, size_t(outs));
      double typical = 0;
      for (float v : want) typical += std::fabs(v) / double(outs);
      const WorstError w = worst_error(got, want, std::max(typical, 1e-30));  // a lone product may be 0
      EXPECT_LE(w.err, 2e-5) << at << ": product " << w.at << " got " << got[w.at] << " want " << want[w.at];
      int left = -1;
      ok(cudaMemcpy(&left, arrivals.ptr, sizeof(int), cudaMemcpyDeviceToHost), "arrivals");
      EXPECT_EQ(left, 0) << at << ": arrival counter not back at 0";
    }
  }
}

// A fold the GEMV cannot take is one clear error: rows wider than kGemvFoldMaxCols, several activation rows, or an
// input that is not the step's xn.
TEST_F(CudaDecode, ResidualFoldRejectsWhatItCannotTake) {
  const int64_t wide = 2 * cuda::kGemvFoldMaxCols;
  DeviceBuffer w(size_t(wide) * 8 * 2), v(size_t(wide) * 4 * 8), out(4096);
  auto* f = static_cast<float*>(v.ptr);
  DeviceBuffer arrivals(sizeof(int));
  const cuda::GemvResidualFold fold{f, nullptr, f + wide, f + 2 * wide, f + 3 * wide, 1e-6f,
                                    static_cast<int*>(arrivals.ptr)};
  auto gated = [&](const float* x, int rows, int64_t cols) {
    cuda::gemv_quant_gated(GgmlType::Q8_0, w.ptr, w.ptr, x, static_cast<float*>(out.ptr), rows, 1, cols,
                           cuda::GatedActKind::Silu, nullptr, &fold);
  };
  EXPECT_THROW(gated(fold.xn, 1, wide), Error);
  EXPECT_THROW(gated(fold.xn, 2, 64), Error);
  EXPECT_THROW(gated(f + 4 * wide, 1, 64), Error);
}

// A decode step's residual step waits for the op after it: a GEMV of its xn (CUDA matmuls, gated_matmul) folds it;
// anything else (here a read of the residual) launches it first. Both against the step run on its own.
TEST_F(CudaDecode, ResidualStepHeldForTheNextGemv) {
  const int64_t n = 640, n_out = 256;
  const std::vector<uint8_t> bytes = testing::random_blocks(GgmlType::Q8_0, n * n_out / 32, rng());
  const std::vector<float> w_post = normal(size_t(n)), w_next = normal(size_t(n)), x0 = normal(size_t(n), 3.f),
                           y0 = normal(size_t(n), 0.5f);
  auto be = make_cuda_backend(0);
  auto vec = [&](const char* name, const std::vector<float>& v) {
    return be->upload(tensor_of(name, GgmlType::F32, {int64_t(v.size())},
                                {reinterpret_cast<const uint8_t*>(v.data()),
                                 reinterpret_cast<const uint8_t*>(v.data() + v.size())}));
  };
  const Weight wp = vec("post", w_post), wn = vec("next", w_next);
  const Weight wq = be->upload(tensor_of("blk.0.attn_q.weight", GgmlType::Q8_0, {n, n_out}, bytes));
  const int32_t token = 0;
  be->begin_batch(&token, 0, 1);
  struct Step {
    Buffer y, x, xn, out;
  };
  auto step = [&] {
    Step s{be->alloc(n), be->alloc(n), be->alloc(n), be->alloc(n_out)};
    upload(s.y.data, y0.data(), n * 4);
    upload(s.x.data, x0.data(), n * 4);
    poison(s.xn.data, n * 4);
    poison(s.out.data, n_out * 4);
    return s;
  };
  auto fetch = [&](Buffer b) {
    std::vector<float> v(b.count);
    be->read(b, 0, b.count, v.data());
    be->synchronize();
    return v;
  };
  const Weight* ws[] = {&wq};
  Step own = step();  // its own launch: the host waits between the step and the GEMV
  be->residual_norm(own.y, &wp, own.x, &wn, 1, n, 1e-6f, own.xn);
  be->synchronize();
  be->matmuls(own.xn, 1, ws, &own.out, 1);
  const std::vector<float> want_x = fetch(own.x), want_out = fetch(own.out);

  Step held = step();
  be->residual_norm(held.y, &wp, held.x, &wn, 1, n, 1e-6f, held.xn);
  ok(cudaDeviceSynchronize(), "held");
  EXPECT_EQ(download(held.x.data, size_t(n)), x0) << "the residual step ran before the op after it";
  be->matmuls(held.xn, 1, ws, &held.out, 1);
  EXPECT_LE(worst_error(fetch(held.x), want_x, 1.0).err, 1e-6) << "folded: x";
  const std::vector<float> got_out = fetch(held.out);
  double typical = 0;
  for (float v : want_out) typical += std::fabs(v) / double(n_out);
  EXPECT_LE(worst_error(got_out, want_out, typical).err, 2e-5) << "folded: products";

  Step read_next = step();
  be->residual_norm(read_next.y, &wp, read_next.x, &wn, 1, n, 1e-6f, read_next.xn);
  const std::vector<float> got_x = fetch(read_next.x);
  EXPECT_EQ(std::memcmp(got_x.data(), want_x.data(), size_t(n) * 4), 0) << "a read after the step: x";
}

// The fused per-head q/k norm + RoPE against the unfused ops (rmsnorm, rope) on the same backend, at a late
// position (the angle is formed in double by both) for both rotation styles, with and without norm weights.
TEST_F(CudaDecode, QkNormRopeFusedEqualsUnfused) {
  struct Case { int n_head, n_head_kv, head_dim; RopeStyle style; bool q_norm, k_norm; int n; int32_t pos0; };
  for (Case c : {Case{4, 1, 256, RopeStyle::NeoX, true, true, 1, 70001}, Case{4, 1, 256, RopeStyle::NeoX, true, true, 5, 3},
                 Case{8, 2, 128, RopeStyle::Normal, false, false, 3, 4099}, Case{2, 2, 64, RopeStyle::NeoX, true, false, 2, 17},
                 Case{3, 1, 1024, RopeStyle::Normal, false, true, 1, 511},
                 Case{32, 8, 128, RopeStyle::NeoX, true, true, 37, 100003}}) {
    const std::string what = std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " heads of " +
                             std::to_string(c.head_dim) + (c.style == RopeStyle::NeoX ? " neox" : " normal") +
                             " n " + std::to_string(c.n) + " pos0 " + std::to_string(c.pos0);
    auto be = make_cuda_backend(0);
    const std::vector<float> gq = normal(size_t(c.head_dim)), gk = normal(size_t(c.head_dim));
    auto vec = [&](const char* name, const std::vector<float>& v) {
      return be->upload(tensor_of(name, GgmlType::F32, {int64_t(v.size())},
                                  {reinterpret_cast<const uint8_t*>(v.data()),
                                   reinterpret_cast<const uint8_t*>(v.data() + v.size())}));
    };
    const Weight wq = vec("q_norm", gq), wk = vec("k_norm", gk);
    const size_t nq = size_t(c.n) * c.n_head * c.head_dim, nk = size_t(c.n) * c.n_head_kv * c.head_dim;
    const std::vector<float> q = normal(nq, 2.f), k = normal(nk, 2.f);
    Buffer q1 = be->alloc(nq), k1 = be->alloc(nk), q2 = be->alloc(nq), k2 = be->alloc(nk);
    for (Buffer b : {q1, q2}) upload(b.data, q.data(), nq * 4);
    for (Buffer b : {k1, k2}) upload(b.data, k.data(), nk * 4);
    std::vector<int32_t> tokens(size_t(c.n), 0);
    be->begin_batch(tokens.data(), c.pos0, c.n);
    const RopeParams rp{c.n_head_kv == 1 ? 1e6f : 10000.f, c.n == 5 ? 0.25f : 1.f, c.style};
    be->qk_norm_rope(q1, k1, c.q_norm ? &wq : nullptr, c.k_norm ? &wk : nullptr, c.n, c.n_head, c.n_head_kv,
                     c.head_dim, 1e-6f, rp);
    be->Backend::qk_norm_rope(q2, k2, c.q_norm ? &wq : nullptr, c.k_norm ? &wk : nullptr, c.n, c.n_head, c.n_head_kv,
                              c.head_dim, 1e-6f, rp);
    for (auto [fused, unfused, count, name] : {std::tuple{q1, q2, nq, "q"}, std::tuple{k1, k2, nk, "k"}}) {
      std::vector<float> got(count), want(count);
      be->read(fused, 0, count, got.data());
      be->read(unfused, 0, count, want.data());
      be->synchronize();
      double worst = 0;
      size_t worst_at = 0;
      for (size_t i = 0; i < count; ++i) {
        const double err = std::fabs(double(got[i]) - want[i]) / std::max(std::fabs(double(want[i])), 1e-3);
        if (!(err <= worst)) worst = err, worst_at = i;
      }
      EXPECT_LE(worst, 1e-6) << what << ": " << name << " worst relative error at " << worst_at << ": got "
                             << got[worst_at] << " want " << want[worst_at];
    }
  }
}

// Logits with many exact ties (small integers), NaN and -inf entries, or continuous values.
// A q/k norm + RoPE followed by the attention on the same q and k is launched with the attention's staging folded
// in (bf16 q, the new cache rows): the same bits as the separate staging kernel, in the output and in the cache the
// next step reads. Layer 0 takes the folded path; layer 1 is forced apart by reading q in between.
TEST_F(CudaDecode, NormRopeWithAttentionStagingEqualsSeparateStaging) {
  for (const auto& [n_head, n_head_kv, head_dim] : {std::tuple{4, 1, 256}, std::tuple{8, 2, 128}, std::tuple{4, 4, 64}}) {
    const std::string what = std::to_string(n_head) + "/" + std::to_string(n_head_kv) + "x" + std::to_string(head_dim);
    auto be = make_cuda_backend(0);
    const std::vector<float> g = normal(size_t(head_dim));
    const Weight norm = be->upload(tensor_of("q_norm", GgmlType::F32, {int64_t(head_dim)},
                                             {reinterpret_cast<const uint8_t*>(g.data()),
                                              reinterpret_cast<const uint8_t*>(g.data() + g.size())}));
    const int ctx = 16;
    be->init_kv({{ctx, n_head_kv, head_dim}, {ctx, n_head_kv, head_dim}});
    const size_t qd = size_t(n_head) * head_dim, kvd = size_t(n_head_kv) * head_dim;
    Buffer q[2] = {be->alloc(ctx * qd), be->alloc(ctx * qd)}, k[2] = {be->alloc(ctx * kvd), be->alloc(ctx * kvd)};
    Buffer v = be->alloc(ctx * kvd), out[2] = {be->alloc(ctx * qd), be->alloc(ctx * qd)};
    const RopeParams rope{10000.f, 1.f, RopeStyle::NeoX};
    const AttnParams p{n_head, n_head_kv, head_dim, 1.f / std::sqrt(float(head_dim)), AttnPolicy::dense()};
    int32_t pos = 0;
    for (int n : {5, 1, 1}) {
      const std::vector<float> qh = normal(n * qd, 2.f), kh = normal(n * kvd, 2.f), vh = normal(n * kvd);
      std::vector<int32_t> tokens(size_t(n), 0);
      be->begin_batch(tokens.data(), pos, n);
      std::vector<float> q_seen(n * qd);
      for (int layer = 0; layer < 2; ++layer) {
        upload(q[layer].data, qh.data(), qh.size() * 4);
        upload(k[layer].data, kh.data(), kh.size() * 4);
        upload(v.data, vh.data(), vh.size() * 4);
        poison(out[layer].data, n * qd * 4);
        be->qk_norm_rope(q[layer], k[layer], &norm, &norm, n, n_head, n_head_kv, head_dim, 1e-6f, rope);
        if (layer == 1) be->read(q[layer], 0, n * qd, q_seen.data());
        be->attention(layer, q[layer], k[layer], v, out[layer], p);
      }
      std::vector<float> got[2] = {std::vector<float>(n * qd), std::vector<float>(n * qd)};
      for (int layer = 0; layer < 2; ++layer) be->read(out[layer], 0, n * qd, got[layer].data());
      be->synchronize();
      for (float f : got[0]) ASSERT_TRUE(std::isfinite(f)) << what << " pos " << pos;
      EXPECT_EQ(got[0], got[1]) << what << ": folded and separate staging differ at pos " << pos;
      pos += n;
    }
  }
}

std::vector<float> tricky_logits(int vocab, int kind) {
  std::vector<float> v(static_cast<size_t>(vocab));
  std::normal_distribution<float> normal(0.f, 3.f);
  for (float& x : v) x = kind == 0 ? std::floor(normal(rng())) : normal(rng());
  if (kind == 2) {
    for (int i = 0; i < vocab / 50 + 1; ++i) v[rng()() % vocab] = NAN;
    for (int i = 0; i < vocab / 50 + 1; ++i) v[rng()() % vocab] = -INFINITY;
  }
  return v;
}

TEST_F(CudaDecode, TopKAndArgmaxMatchTheCpuOrderWithTies) {
  auto be = make_cuda_backend(0);
  auto cpu = make_cpu_backend(1);
  // 1000003 entries take three levels of candidates at k = 64, 262144 two, 4096 and fewer one.
  for (int vocab : {262144, 1000003, 4097, 4096, 2049, 64, 1}) {
    Buffer logits = be->alloc(size_t(vocab));
    for (int kind = 0; kind < 3; ++kind) {
      const std::vector<float> host = tricky_logits(vocab, kind);
      upload(logits.data, host.data(), host.size() * 4);
      for (int k : {1, 2, 40, kMaxDeviceTopK}) {
        if (k > vocab) continue;
        const std::string what = "vocab " + std::to_string(vocab) + " kind " + std::to_string(kind) + " k " +
                                 std::to_string(k);
        std::vector<int32_t> ids(k, 12345), want_ids(k);
        std::vector<float> values(k), want_values(k);
        be->top_k(logits, size_t(vocab), k, ids.data(), values.data());
        be->synchronize();
        const int found = top_candidates(host.data(), vocab, k, want_ids.data(), want_values.data());
        for (int i = 0; i < k; ++i) {
          if (i < found) {
            ASSERT_EQ(ids[i], want_ids[i]) << what << ": candidate " << i << " (value " << values[i] << " vs "
                                           << want_values[i] << ")";
            ASSERT_EQ(values[i], want_values[i]) << what << ": candidate " << i;
          } else {
            ASSERT_EQ(ids[i], -1) << what << ": slot " << i << " beyond the " << found << " non-NaN entries";
          }
        }
        if (k == 1) ASSERT_EQ(ids[0], argmax(host.data(), vocab)) << what;
        // The CPU backend's top_k is the same function.
        std::vector<int32_t> cpu_ids(k);
        std::vector<float> cpu_values(k);
        Buffer cpu_logits = cpu->alloc(size_t(vocab));
        std::copy(host.begin(), host.end(), cpu_logits.data);
        cpu->top_k(cpu_logits, size_t(vocab), k, cpu_ids.data(), cpu_values.data());
        ASSERT_EQ(cpu_ids, ids) << what;
      }
    }
  }
  // Every entry NaN: no candidates, and greedy falls back to 0 as argmax() does.
  Buffer nan_logits = be->alloc(100);
  poison(nan_logits.data, 400);
  std::vector<int32_t> ids(3);
  std::vector<float> values(3);
  be->top_k(nan_logits, 100, 3, ids.data(), values.data());
  be->synchronize();
  EXPECT_EQ(ids, std::vector<int32_t>(3, -1));
  Sampler greedy(SamplerParams{0.f, 40, 1.f, 0});
  EXPECT_EQ(greedy.sample_top(ids.data(), values.data(), 3), 0);
}

// Same seed, same logits: the sampler drawing from device candidates picks exactly the CPU sampler's tokens,
// step after step (the rng streams stay in lockstep), with the candidates reduced inside a captured graph.
TEST_F(CudaDecode, SamplingFromDeviceCandidatesEqualsCpuSampler) {
  struct Case { float temp; int top_k; float top_p; };
  for (Case c : {Case{0.8f, 40, 0.95f}, Case{1.5f, kMaxDeviceTopK, 1.f}, Case{0.3f, 5, 0.5f}, Case{0.f, 40, 1.f}}) {
    const int vocab = 262144;
    const uint64_t seed = rng()();
    const std::string what = "temp " + std::to_string(c.temp) + " top_k " + std::to_string(c.top_k) + " top_p " +
                             std::to_string(c.top_p) + " seed " + std::to_string(seed);
    Sampler cpu_sampler(SamplerParams{c.temp, c.top_k, c.top_p, seed});
    Sampler gpu_sampler(SamplerParams{c.temp, c.top_k, c.top_p, seed});
    const int k = gpu_sampler.candidates_needed(vocab);
    ASSERT_EQ(k, c.temp == 0 ? 1 : c.top_k) << what;
    auto be = make_cuda_backend(0);
    Buffer logits = be->alloc(size_t(vocab));
    std::vector<int32_t> ids(k);
    std::vector<float> values(k);
    int graph_steps = 0;
    for (int step = 0; step < 200; ++step) {
      // Ties every few steps; flat logits (high temperature) make the draw, not the argmax, decide.
      std::vector<float> host = tricky_logits(vocab, step % 3 == 0 ? 0 : 1);
      for (float& v : host) v *= 0.3f;
      upload(logits.data, host.data(), host.size() * 4);
      const int32_t token = 0;
      graph_steps += be->run_captured(k, [&] {
        be->begin_batch(&token, step, 1);
        be->top_k(logits, size_t(vocab), k, ids.data(), values.data());
        be->synchronize();
      });
      const int32_t want = cpu_sampler.sample(host.data(), vocab);
      const int32_t got = gpu_sampler.sample_top(ids.data(), values.data(), k);
      ASSERT_EQ(got, want) << what << ": step " << step << " (best device candidate " << ids[0] << ")";
    }
    EXPECT_GT(graph_steps, 100) << what << ": the steps did not run from a CUDA graph";
  }
}

}  // namespace
}  // namespace swrun
