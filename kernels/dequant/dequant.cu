// GPU dequantization: one kernel per type family (plain, 32-element blocks, 256-element K blocks), templated on
// the block decoder and the output type. The arithmetic mirrors runtime/dequant.cpp operation for operation, with
// explicit _rn intrinsics so nvcc cannot contract d*q - m into an FMA: the CPU and GPU results are identical.
#include "kernels/dequant/dequant.cuh"

#include <algorithm>
#include <string>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/cuda_check.h"
#include "runtime/common.h"
#include "runtime/quant_blocks.h"

namespace swrun::cuda {

using namespace quant;

namespace {

__device__ __forceinline__ float half_at(const uint8_t* p) { return __half2float(__ushort_as_half(load_u16(p))); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// Threads walk the work items with a grid stride, so any n fits a capped grid.
#define SWRUN_GRID_STRIDE_LOOP(i, count) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (count); i += int64_t(gridDim.x) * blockDim.x)

// ---- plain types: one element per work item

template <GgmlType kType, typename Out>
__global__ void dequant_plain(const uint8_t* src, Out* dst, int64_t n) {
  SWRUN_GRID_STRIDE_LOOP(i, n) {
    float v;
    if constexpr (kType == GgmlType::F32) {
      v = reinterpret_cast<const float*>(src)[i];
    } else if constexpr (kType == GgmlType::F16) {
      v = half_at(src + 2 * i);
    } else {
      v = __uint_as_float(uint32_t(load_u16(src + 2 * i)) << 16);
    }
    store(dst + i, v);
  }
}

// ---- 32-element blocks: work item (block, j) yields element j (low nibble of byte j) and j + 16 (high nibble)

struct DecodeQ4_0 {
  using Block = BlockQ4_0;
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    const float d = half_at(b.d);
    lo = __fmul_rn(d, float((b.qs[j] & 0x0F) - 8));
    hi = __fmul_rn(d, float((b.qs[j] >> 4) - 8));
  }
};

struct DecodeQ4_1 {
  using Block = BlockQ4_1;
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    const float d = half_at(b.d), m = half_at(b.m);
    lo = __fadd_rn(__fmul_rn(d, float(b.qs[j] & 0x0F)), m);
    hi = __fadd_rn(__fmul_rn(d, float(b.qs[j] >> 4)), m);
  }
};

// Bit j of the little-endian qh word is the fifth bit of element j.
__device__ __forceinline__ void q5_pair(const uint8_t* qs, const uint8_t* qh_bytes, int j, int& lo, int& hi) {
  const uint32_t qh = load_u32(qh_bytes);
  lo = (qs[j] & 0x0F) | int(((qh >> j) & 1) << 4);
  hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
}

struct DecodeQ5_0 {
  using Block = BlockQ5_0;
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    int ql, qh;
    q5_pair(b.qs, b.qh, j, ql, qh);
    const float d = half_at(b.d);
    lo = __fmul_rn(d, float(ql - 16));
    hi = __fmul_rn(d, float(qh - 16));
  }
};

struct DecodeQ5_1 {
  using Block = BlockQ5_1;
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    int ql, qh;
    q5_pair(b.qs, b.qh, j, ql, qh);
    const float d = half_at(b.d), m = half_at(b.m);
    lo = __fadd_rn(__fmul_rn(d, float(ql)), m);
    hi = __fadd_rn(__fmul_rn(d, float(qh)), m);
  }
};

struct DecodeQ8_0 {
  using Block = BlockQ8_0;
  __device__ static void at(const Block& b, int j, float& lo, float& hi) {
    const float d = half_at(b.d);
    lo = __fmul_rn(float(b.qs[j]), d);
    hi = __fmul_rn(float(b.qs[j + 16]), d);
  }
};

template <typename Decoder, typename Out>
__global__ void dequant_legacy(const typename Decoder::Block* blocks, Out* dst, int64_t n_blocks) {
  SWRUN_GRID_STRIDE_LOOP(item, n_blocks * 16) {
    const int64_t b = item / 16;
    const int j = int(item % 16);
    float lo, hi;
    Decoder::at(blocks[b], j, lo, hi);
    store(dst + 32 * b + j, lo);
    store(dst + 32 * b + j + 16, hi);
  }
}

// ---- 256-element K blocks: 64 work items per block, 4 elements each

// Q4_K/Q5_K item t: bytes e = 2*(t%16), e+1 of group g = t/16, whose low nibbles are sub-block 2g and high
// nibbles sub-block 2g+1 (Q5_K: fifth bits in bits 2g, 2g+1 of qh[e]).
template <typename Block, bool kFifthBitPlane, typename Out>
__device__ void k_4_5_item(const Block& b, int t, Out* out) {
  const int g = t / 16, e0 = 2 * (t % 16);
  const float d = half_at(b.d), dmin = half_at(b.dmin);
  uint8_t sc_lo, m_lo, sc_hi, m_hi;
  k_scale_min(b.scales, 2 * g, &sc_lo, &m_lo);
  k_scale_min(b.scales, 2 * g + 1, &sc_hi, &m_hi);
  const float scale_lo = __fmul_rn(d, float(sc_lo)), offset_lo = __fmul_rn(dmin, float(m_lo));
  const float scale_hi = __fmul_rn(d, float(sc_hi)), offset_hi = __fmul_rn(dmin, float(m_hi));
  for (int e = e0; e < e0 + 2; ++e) {
    const uint8_t byte = b.qs[32 * g + e];
    int lo = byte & 0x0F, hi = byte >> 4;
    if constexpr (kFifthBitPlane) {
      lo |= ((b.qh[e] >> (2 * g)) & 1) << 4;
      hi |= ((b.qh[e] >> (2 * g + 1)) & 1) << 4;
    }
    store(out + 64 * g + e, __fsub_rn(__fmul_rn(scale_lo, float(lo)), offset_lo));
    store(out + 64 * g + 32 + e, __fsub_rn(__fmul_rn(scale_hi, float(hi)), offset_hi));
  }
}

struct DecodeQ4_K {
  using Block = BlockQ4_K;
  template <typename Out>
  __device__ static void at(const Block& b, int t, Out* out) { k_4_5_item<Block, false>(b, t, out); }
};

struct DecodeQ5_K {
  using Block = BlockQ5_K;
  template <typename Out>
  __device__ static void at(const Block& b, int t, Out* out) { k_4_5_item<Block, true>(b, t, out); }
};

// Q6_K item t: half h = t/32, l = t%32 yields elements l, l+32, l+64, l+96 of the half, which share qh[32h+l]
// (bit pairs 0..3) and take the low/high nibbles of ql[64h+l] and ql[64h+32+l]. Each 16 elements share a scale.
struct DecodeQ6_K {
  using Block = BlockQ6_K;
  template <typename Out>
  __device__ static void at(const Block& b, int t, Out* out) {
    const int h = t / 32, l = t % 32;
    const float d = half_at(b.d);
    const uint8_t ql_a = b.ql[64 * h + l], ql_b = b.ql[64 * h + 32 + l], qh = b.qh[32 * h + l];
    const int q[4] = {(ql_a & 0x0F) | ((qh & 0x03) << 4), (ql_b & 0x0F) | (((qh >> 2) & 0x03) << 4),
                      (ql_a >> 4) | (((qh >> 4) & 0x03) << 4), (ql_b >> 4) | (((qh >> 6) & 0x03) << 4)};
    for (int k = 0; k < 4; ++k) {
      const int r = l + 32 * k;
      const float scale = __fmul_rn(d, float(b.scales[8 * h + r / 16]));
      store(out + 128 * h + r, __fmul_rn(scale, float(q[k] - 32)));
    }
  }
};

template <typename Decoder, typename Out>
__global__ void dequant_k(const typename Decoder::Block* blocks, Out* dst, int64_t n_blocks) {
  SWRUN_GRID_STRIDE_LOOP(item, n_blocks * 64) {
    const int64_t b = item / 64;
    Decoder::at(blocks[b], int(item % 64), dst + 256 * b);
  }
}

constexpr unsigned kThreads = 256;
constexpr int64_t kMaxGrid = int64_t(1) << 20;

unsigned grid_for_items(int64_t items) {
  return static_cast<unsigned>(std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxGrid));
}

template <typename Out>
void launch_dequant(GgmlType type, const void* src, Out* dst, int64_t n, cudaStream_t stream) {
  const uint32_t id = static_cast<uint32_t>(type);
  const GgmlTypeInfo info = ggml_type_info(id);
  if (n < 0 || (info.name != nullptr && n % info.block_elems != 0)) {
    fail("CUDA dequantize: " + std::to_string(n) + " elements do not fill whole " + ggml_type_name(id) + " blocks");
  }
  if (n == 0) return;
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  const int64_t nb32 = n / kLegacyBlock, nb256 = n / kSuperBlock;
  switch (type) {
    case GgmlType::F32:
      dequant_plain<GgmlType::F32><<<grid_for_items(n), kThreads, 0, stream>>>(bytes, dst, n);
      break;
    case GgmlType::F16:
      dequant_plain<GgmlType::F16><<<grid_for_items(n), kThreads, 0, stream>>>(bytes, dst, n);
      break;
    case GgmlType::BF16:
      dequant_plain<GgmlType::BF16><<<grid_for_items(n), kThreads, 0, stream>>>(bytes, dst, n);
      break;
#define SWRUN_LEGACY_CASE(T)                                                                   \
  case GgmlType::T:                                                                            \
    dequant_legacy<Decode##T><<<grid_for_items(nb32 * 16), kThreads, 0, stream>>>(             \
        static_cast<const Block##T*>(src), dst, nb32);                                         \
    break;
      SWRUN_LEGACY_CASE(Q4_0)
      SWRUN_LEGACY_CASE(Q4_1)
      SWRUN_LEGACY_CASE(Q5_0)
      SWRUN_LEGACY_CASE(Q5_1)
      SWRUN_LEGACY_CASE(Q8_0)
#undef SWRUN_LEGACY_CASE
#define SWRUN_K_CASE(T)                                                                        \
  case GgmlType::T:                                                                            \
    dequant_k<Decode##T><<<grid_for_items(nb256 * 64), kThreads, 0, stream>>>(                 \
        static_cast<const Block##T*>(src), dst, nb256);                                        \
    break;
      SWRUN_K_CASE(Q4_K)
      SWRUN_K_CASE(Q5_K)
      SWRUN_K_CASE(Q6_K)
#undef SWRUN_K_CASE
    default:
      fail("tensor type " + ggml_type_name(id) + " is not supported by the CUDA dequantizer");
  }
  check_launch("dequantize");
}

}  // namespace

void dequantize_to_bf16(GgmlType type, const void* dev_src, void* dev_dst_bf16, int64_t n, cudaStream_t stream) {
  launch_dequant(type, dev_src, static_cast<__nv_bfloat16*>(dev_dst_bf16), n, stream);
}

void dequantize_to_f32(GgmlType type, const void* dev_src, void* dev_dst_f32, int64_t n, cudaStream_t stream) {
  launch_dequant(type, dev_src, static_cast<float*>(dev_dst_f32), n, stream);
}

}  // namespace swrun::cuda
