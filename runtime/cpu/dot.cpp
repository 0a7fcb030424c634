// Fused quantized-row dot products for the CPU matmul. The kernels (dot_kernels.inc) use GCC/Clang vector
// extensions and are compiled twice: for the baseline ISA and, on x86-64, for AVX2+FMA, which is chosen once
// at start-up when the running CPU has it. Target attributes, unlike per-file flags, keep AVX2 code out of
// any inline function the linker could share with the rest of the program.
#include "runtime/cpu/dot.h"

#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "runtime/common.h"
#include "runtime/dequant.h"
#include "runtime/quant_blocks.h"

// 32-byte vectors only pass between always-inlined functions here, so the ABI change GCC and Clang warn about
// (AVX vectors without AVX enabled) never reaches a real call.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace swrun {

using namespace quant;

namespace {

typedef float f32x8 __attribute__((vector_size(32)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef int8_t i8x16 __attribute__((vector_size(16)));
typedef uint32_t u32x4 __attribute__((vector_size(16)));

inline __attribute__((always_inline)) float half_at(const uint8_t* p) { return half_bits_to_float(load_u16(p)); }

[[noreturn]] void fail_block_size(GgmlType type, int64_t n) {
  const uint32_t id = static_cast<uint32_t>(type);
  fail("dot_row: " + std::to_string(n) + " elements is not a multiple of the " + ggml_type_name(id) +
       " block size " + std::to_string(ggml_type_info(id).block_elems));
}

[[noreturn]] void fail_unsupported(GgmlType type) {
  fail("tensor type " + ggml_type_name(static_cast<uint32_t>(type)) + " is not supported (cannot dot with it)");
}

namespace baseline {
#define SWRUN_DOT_TARGET
#define SWRUN_DOT_AVX2 0
#include "runtime/cpu/dot_kernels.inc"
#undef SWRUN_DOT_TARGET
#undef SWRUN_DOT_AVX2
}  // namespace baseline

struct Kernels {
  float (*dot_row)(GgmlType, const void*, const float*, int64_t);
  float (*dot_f32)(const float*, const float*, int64_t);
};

#if defined(__x86_64__)
namespace avx2 {
#define SWRUN_DOT_TARGET __attribute__((target("avx2,fma")))
#define SWRUN_DOT_AVX2 1
#include "runtime/cpu/dot_kernels.inc"
#undef SWRUN_DOT_TARGET
#undef SWRUN_DOT_AVX2
}  // namespace avx2

// Chosen on first use (not in a static initializer, so a caller in another one cannot see it unset).
const Kernels& kernels() {
  static const Kernels chosen = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return Kernels{avx2::dot_row_kernel, avx2::dot_f32_kernel};
    }
    return Kernels{baseline::dot_row_kernel, baseline::dot_f32_kernel};
  }();
  return chosen;
}
#else
const Kernels& kernels() {
  static const Kernels chosen{baseline::dot_row_kernel, baseline::dot_f32_kernel};
  return chosen;
}
#endif

}  // namespace

float dot_row(GgmlType type, const void* row, const float* x, int64_t n) { return kernels().dot_row(type, row, x, n); }
float dot_f32(const float* a, const float* b, int64_t n) { return kernels().dot_f32(a, b, n); }

}  // namespace swrun
