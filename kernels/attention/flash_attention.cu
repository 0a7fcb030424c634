// Host side of the flash kernels: argument checks, tile/grid choice, the TMA's tensor maps, split-K sizing for decode.
#include <algorithm>
#include <cmath>
#include <string>

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/attention/attention.h"
#include "kernels/attention/flash_kernel.cuh"
#include "kernels/attention/flash_kernel_ws.cuh"
#include "kernels/common/cuda_check.h"
#include "kernels/common/device_limits.h"
#include "runtime/common.h"

namespace swrun::cuda {
namespace {

using attn::FlashConfig;
using attn::FlashParams;
using attn::WsConfig;

struct TileShape {
  int block_m, block_n;
};

// The one-kernel path's tile (flash_kernel.cuh).
TileShape tile_shape(int head_dim) {
  switch (head_dim) {
    case 64: return {FlashConfig<64>::kBlockM, FlashConfig<64>::kBlockN};
    case 128: return {FlashConfig<128>::kBlockM, FlashConfig<128>::kBlockN};
    default: return {FlashConfig<256>::kBlockM, FlashConfig<256>::kBlockN};
  }
}

// The warp-specialized kernel exists only as sm_90a machine code, which runs on compute capability 9.0 alone;
// elsewhere (the compute_90 PTX JIT) the one-kernel path runs.
bool sm90a_device() {
#ifdef SWRUN_ATTN_MMA_SYNC_ONLY
  return false;
#else
  static const bool cc90 = [] {
    int dev = 0, major = 0, minor = 0;
    check_cuda(cudaGetDevice(&dev), "flash_attention: cudaGetDevice");
    check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "flash_attention: CC");
    check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "flash_attention: CC");
    return major == 9 && minor == 0;
  }();
  return cc90;
#endif
}

// Whether a call runs the warp-specialized kernel (flash_kernel_ws.cuh): always at head_dim 128, at 256 and 64
// when ws_d256 / ws_d64 asks for it.
bool warp_specialized(const FlashAttnArgs& a) {
  const bool wanted = a.head_dim == 128 || (a.head_dim == 256 && a.ws_d256) || (a.head_dim == 64 && a.ws_d64);
  return wanted && sm90a_device() && !a.fresh.q;  // fresh rows: the plain kernel stages them
}

// The tile of the kernel that runs the call; the block's rows (queries_per_block) must match it.
TileShape kernel_tile(const FlashAttnArgs& a) {
  if (!warp_specialized(a)) return tile_shape(a.head_dim);
  switch (a.head_dim) {
    case 64: return {WsConfig<64>::kBlockM, WsConfig<64>::kBlockN};
    case 128: return {WsConfig<128>::kBlockM, WsConfig<128>::kBlockN};
    default: return {WsConfig<256>::kBlockM, WsConfig<256>::kBlockN};
  }
}

void check_args(const FlashAttnArgs& a, const char* fn) {
  auto bad = [&](const std::string& what) { fail(std::string(fn) + ": " + what); };
  const bool fresh = a.fresh.q != nullptr;
  if ((!a.q && !fresh) || !a.k || !a.v || !a.o) bad("null q/k/v/o pointer");
  if (a.n_q < 0) bad("n_q " + std::to_string(a.n_q) + " < 0");
  if (a.head_dim != 64 && a.head_dim != 128 && a.head_dim != 256)
    bad("head_dim " + std::to_string(a.head_dim) + " not supported (64, 128 or 256)");
  if (a.n_head <= 0 || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0)
    bad("n_head " + std::to_string(a.n_head) + " is not a positive multiple of n_head_kv " +
        std::to_string(a.n_head_kv));
  if (a.q_stride < int64_t{a.n_head} * a.head_dim || a.o_stride < int64_t{a.n_head} * a.head_dim ||
      a.kv_stride < int64_t{a.n_head_kv} * a.head_dim)
    bad("row stride smaller than heads * head_dim");
  // cp.async moves 16-byte chunks: every row and head must start 16-byte aligned.
  if (a.q_stride % 8 || a.kv_stride % 8 || a.o_stride % 2)
    bad("row strides must be multiples of 8 elements (q, k, v) and 2 (o)");
  for (const void* p : {a.q, a.k, a.v})
    if (reinterpret_cast<uintptr_t>(p) % 16) bad("q/k/v must be 16-byte aligned");
  if (fresh) {
    for (const void* p : {static_cast<const void*>(a.fresh.q), static_cast<const void*>(a.fresh.k),
                          static_cast<const void*>(a.fresh.v), static_cast<const void*>(a.fresh.q_norm),
                          static_cast<const void*>(a.fresh.k_norm)})
      if (reinterpret_cast<uintptr_t>(p) % 16) bad("fresh rows and norms must be 16-byte aligned");
    if (!a.fresh.k || !a.fresh.v) bad("fresh rows need k and v");
    if (a.n_q != 1) bad("fresh rows are one decode position (n_q " + std::to_string(a.n_q) + ")");
    if (!(a.fresh.freq_base > 0.f)) bad("fresh rows: freq_base must be positive");
    if (a.fresh.yarn.enabled && !(a.fresh.freq_scale > 0.f)) bad("fresh rows: YaRN needs a positive freq_scale");
  }
  if (reinterpret_cast<uintptr_t>(a.o) % 8) bad("o must be 8-byte aligned");
  if (a.o16 && (!a.o_fp32 || reinterpret_cast<uintptr_t>(a.o16) % 4)) bad("o16 needs an fp32 o and 4-byte alignment");
  if (a.capacity <= 0) bad("capacity " + std::to_string(a.capacity) + " <= 0");
  if (a.left < 0 || a.right < 0) bad("negative window");
  if (!a.q_pos0_dev && a.q_pos0 < 0) bad("q_pos0 < 0");
  if (!valid_softcap(a.softcap))
    bad("softcap " + std::to_string(a.softcap) + " must be 0 (none) or positive and finite");
  if (reinterpret_cast<uintptr_t>(a.sinks) % 4) bad("sinks must be 4-byte aligned");
}

// Keys one call can see: the ring must still hold the oldest of them.
void check_ring(const FlashAttnArgs& a, int64_t kv_len, const char* fn) {
  const int64_t needed = std::min<int64_t>(kv_len, int64_t{a.left} + a.n_q);
  if (needed > a.capacity)
    fail(std::string(fn) + ": the window needs " + std::to_string(needed) + " cached keys but capacity is " +
         std::to_string(a.capacity));
}

constexpr int kMaxQueryTiles = 65535;  // gridDim.y

// Packing the q heads of one KV head into a block reuses each K/V tile for all of them. At few queries it
// fills rows that would be empty. At many queries the K/V traffic per row and the block count stay the same,
// but a block's rows span group times fewer positions, so a sliding window's key span per block shrinks
// (Gemma 3, W 512, d 256: 10 key tiles of 64 per block -> 9, masked ones 4 -> 2); that is variant 14
// (FlashAttnArgs::pack_gqa), kept only where the grid still fits.
int heads_per_block(const FlashAttnArgs& a) {
  const int group = a.n_head / a.n_head_kv, block_m = kernel_tile(a).block_m;
  if (block_m % group != 0) return 1;
  if (a.n_q < block_m) return group;
  const int64_t packed_tiles = (int64_t{a.n_q} + block_m / group - 1) / (block_m / group);
  return a.pack_gqa && packed_tiles <= kMaxQueryTiles ? group : 1;
}

}  // namespace

void use_fastest_variant(FlashAttnArgs& a) {
  a.ws_d256 = true;
  // Variant 16 (bench/attention_notes.md, H200): on windows of a few key tiles a persistent grid hides each block's
  // prologue and epilogue behind the next: Gemma 3 (W 512) 0.209 -> 0.200 ms at 32K, llama64 (W 1024, d 64) 1.027
  // -> 0.900 ms (the one-kernel d 64 path: 1.010). Mistral's 4096-key window measured within noise and a dense
  // causal grid slower (3.52 -> 3.77 ms, Gemma 3 32K): the hardware's own block order balances it better.
  a.persistent = a.left < 2048;
  // Variant 15: dense llama64 32K 13.39 -> 10.18 ms, 131K 217.9 -> 160.1 ms; a 1024-key window on its own
  // unchanged (1.001 vs 1.010 ms): a block's few key tiles leave nothing to overlap, until the grid is persistent.
  a.ws_d64 = a.left >= 4096 || a.persistent;
  const TileShape t = kernel_tile(a);
  a.pack_gqa = t.block_m > t.block_n;
}

namespace {

FlashParams make_params(const FlashAttnArgs& a) {
  FlashParams p{};
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.q_stride = a.q_stride;
  p.kv_stride = a.kv_stride;
  p.o_stride = a.o_stride;
  p.n_q = a.n_q;
  p.n_head = a.n_head;
  p.group = a.n_head / a.n_head_kv;
  p.heads_per_block = heads_per_block(a);
  p.queries_per_block = kernel_tile(a).block_m / p.heads_per_block;
  p.n_split = 1;
  p.q_pos0 = a.q_pos0;
  p.q_pos0_dev = a.q_pos0_dev;
  p.capacity = a.capacity;
  p.left = a.left;
  p.right = a.right;
  if (a.softcap > 0.f) {  // the kernel caps the scores into log2 units itself (FlashParams::cap_log2)
    p.scale_log2 = 1.f;
    p.cap_exp2 = 2.f * static_cast<float>(M_LOG2E) * a.scale / a.softcap;
    p.cap_log2 = a.softcap * static_cast<float>(M_LOG2E);
  } else {
    p.scale_log2 = a.scale * static_cast<float>(M_LOG2E);
  }
  p.sinks = a.sinks;
  p.o_fp32 = a.o_fp32;
  p.o16 = a.o16;
  p.persistent = a.persistent && warp_specialized(a);  // set again by flash_attention_decode: no split-K there
  const FlashAttnArgs::FreshRows& f = a.fresh;
  // The cache the kernel reads is the one it writes the new position's rows into.
  p.fresh = {f.q, f.k, f.v, f.q_norm, f.k_norm, const_cast<void*>(a.k), const_cast<void*>(a.v), f.eps,
             rope_freq(f.freq_base, a.head_dim, f.freq_factors, f.attn_factor, f.freq_scale, f.yarn), f.neox};
  return p;
}

// The driver's tensor-map encoder, reached through the runtime so that nothing links libcuda itself.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const auto encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    check_cuda(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found),
               "flash_attention: cuTensorMapEncodeTiled");
    if (found != cudaDriverEntryPointSuccess || !fn) fail("flash_attention: the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// A 3-D tensor of 16-bit elements (column, head, row) with the given row stride, 128-byte swizzle, box = one
// 64-column block of `heads` heads x `rows` rows: a tile lands as wgmma reads it.
CUtensorMap encode_map(AttnDtype dtype, const void* base, int head_dim, int n_heads, int64_t n_rows,
                       int64_t row_stride, int heads, int rows) {
  const cuuint64_t elem = 2;  // bf16 and fp16
  const cuuint64_t dims[3] = {cuuint64_t(head_dim), cuuint64_t(n_heads), cuuint64_t(n_rows)};
  const cuuint64_t strides[2] = {head_dim * elem, cuuint64_t(row_stride) * elem};
  const cuuint32_t box[3] = {64, cuuint32_t(heads), cuuint32_t(rows)};
  const cuuint32_t steps[3] = {1, 1, 1};
  CUtensorMap map;
  const CUresult r = tensor_map_encoder()(
      &map, dtype == AttnDtype::BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
      const_cast<void*>(base), dims, strides, box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) fail("flash_attention: cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
  return map;
}

// The warp-specialized kernel's tensor maps (its WsMaps parameter; sets p.tma): Q (column, head, position; a box is
// a block's rows: heads_per_block heads x its positions) and the K and V caches (column, KV head, ring slot; a box is
// a key tile).
attn::WsMaps encode_maps(const FlashAttnArgs& a, FlashParams& p) {
  const int block_n = kernel_tile(a).block_n;
  attn::WsMaps maps;
  maps.q = encode_map(a.dtype, a.q, a.head_dim, a.n_head, a.n_q, a.q_stride, p.heads_per_block, p.queries_per_block);
  maps.k = encode_map(a.dtype, a.k, a.head_dim, a.n_head_kv, a.capacity, a.kv_stride, 1, block_n);
  maps.v = encode_map(a.dtype, a.v, a.head_dim, a.n_head_kv, a.capacity, a.kv_stride, 1, block_n);
  p.tma = true;
  return maps;
}

dim3 grid_of(const FlashParams& p) {
  const int q_tiles = (p.n_q + p.queries_per_block - 1) / p.queries_per_block;
  if (q_tiles > kMaxQueryTiles) fail("flash_attention: n_q " + std::to_string(p.n_q) + " too large for one call");
  if (p.persistent) {  // a block per SM (one fits at a time), none without an item
    const int64_t items = int64_t{p.n_head / p.heads_per_block} * q_tiles;
    return dim3(static_cast<unsigned>(std::min<int64_t>(items, sm_count())));
  }
  return dim3(p.n_head / p.heads_per_block, q_tiles, p.n_split);
}

template <typename T, bool kSoftcap, bool kSinks>
void launch_typed(const FlashParams& p, const attn::WsMaps& maps, int head_dim, bool ws, cudaStream_t stream,
                  bool combine) {
  const dim3 grid = grid_of(p);
  switch (head_dim) {
    case 64:
      if (ws)
        attn::launch_flash_ws<T, 64, kSoftcap, kSinks>(p, maps, grid, stream);
      else
        attn::launch_flash<T, 64, kSoftcap, kSinks>(p, grid, stream);
      if (combine) attn::launch_combine<T, 64, kSinks>(p, stream);
      break;
    case 128:
      if (ws)
        attn::launch_flash_ws<T, 128, kSoftcap, kSinks>(p, maps, grid, stream);
      else
        attn::launch_flash<T, 128, kSoftcap, kSinks>(p, grid, stream);
      if (combine) attn::launch_combine<T, 128, kSinks>(p, stream);
      break;
    default:
      if (ws)
        attn::launch_flash_ws<T, 256, kSoftcap, kSinks>(p, maps, grid, stream);
      else
        attn::launch_flash<T, 256, kSoftcap, kSinks>(p, grid, stream);
      if (combine) attn::launch_combine<T, 256, kSinks>(p, stream);
      break;
  }
}

template <typename T, bool kSinks>
void launch_capped_or_not(const FlashAttnArgs& a, const FlashParams& p, const attn::WsMaps& maps, cudaStream_t stream,
                          bool combine) {
  const bool ws = warp_specialized(a);
  if (a.softcap > 0.f)
    launch_typed<T, true, kSinks>(p, maps, a.head_dim, ws, stream, combine);
  else
    launch_typed<T, false, kSinks>(p, maps, a.head_dim, ws, stream, combine);
}

template <typename T>
void launch_sinks_or_not(const FlashAttnArgs& a, const FlashParams& p, const attn::WsMaps& maps, cudaStream_t stream,
                         bool combine) {
  if (a.sinks)
    launch_capped_or_not<T, true>(a, p, maps, stream, combine);
  else
    launch_capped_or_not<T, false>(a, p, maps, stream, combine);
}

// maps: the TMA's tensor maps where p.tma, else not read.
void launch(const FlashAttnArgs& a, const FlashParams& p, const attn::WsMaps& maps, cudaStream_t stream) {
  const bool combine = p.n_split > 1;
  if (a.dtype == AttnDtype::BF16)
    launch_sinks_or_not<__nv_bfloat16>(a, p, maps, stream, combine);
  else
    launch_sinks_or_not<__half>(a, p, maps, stream, combine);
}

// The split count depends only on static shapes and max_kv_len, never on the runtime position, so a captured
// graph stays valid.
int decode_splits(const FlashAttnArgs& a, int32_t max_kv_len) {
  const int64_t span = std::min<int64_t>(max_kv_len, int64_t{a.left} + a.n_q + a.right);
  const int block_n = tile_shape(a.head_dim).block_n;
  const int64_t max_tiles = (span + block_n - 1) / block_n + 1;
  const FlashParams p = make_params(a);
  const int64_t blocks = int64_t{a.n_head / p.heads_per_block} * ((a.n_q + p.queries_per_block - 1) / p.queries_per_block);
  const int sms = sm_count();
  // At most one wave of blocks; a span of 4 key tiles or fewer in one block (no combine), up to 16 tiles one tile
  // per split, longer spans two. Measured on an H200, Gemma 3 270M tg128 at depth 0 / 4096 / 32768 (tok/s): up
  // to two waves, 1 tile each: 1347 / 1261 / 1075; at least 4 tiles per split everywhere: 1425 / 1221 / 1126; 4
  // tiles per split on spans up to 16 tiles (the sliding layers too: their windows fill and want the splits
  // back) and one wave: 1436 / 1194 / 1120; one wave, 1 tile each but one block up to 4 tiles: 1434 / 1259 / 1183
  // (@ d8192: 1152); this rule: 1421 / 1280 / 1160-1191 (@ d8192: 1237-1267).
  const int64_t wave = (sms + blocks - 1) / blocks;
  const int64_t splits = max_tiles <= 4 ? 1 : max_tiles <= 16 ? max_tiles : (max_tiles + 1) / 2;
  return static_cast<int>(std::clamp<int64_t>(std::min(wave, splits), 1, attn::kMaxSplits));
}

}  // namespace

void flash_attention(const FlashAttnArgs& a, cudaStream_t stream) {
  check_args(a, "flash_attention");
  if (a.fresh.q) fail("flash_attention: fresh rows are for flash_attention_decode");
  if (a.n_q == 0) return;
  if (!a.q_pos0_dev) check_ring(a, int64_t{a.q_pos0} + a.n_q, "flash_attention");
  FlashParams p = make_params(a);
  const attn::WsMaps maps = warp_specialized(a) ? encode_maps(a, p) : attn::WsMaps{};
  launch(a, p, maps, stream);
}

size_t flash_decode_workspace_bytes(const FlashAttnArgs& a, int32_t max_kv_len) {
  const int splits = decode_splits(a, max_kv_len);
  if (splits == 1) return 0;
  return static_cast<size_t>(splits) * a.n_q * a.n_head * (a.head_dim + 2) * sizeof(float);
}

bool flash_decode_stages_fresh_rows(const FlashAttnArgs& a) {
  FlashAttnArgs without = a;
  without.fresh = {};
  return !warp_specialized(without);
}

void flash_attention_decode(const FlashAttnArgs& a, int32_t max_kv_len, void* workspace, cudaStream_t stream) {
  check_args(a, "flash_attention_decode");
  if (a.n_q == 0) return;
  if (max_kv_len < a.n_q) fail("flash_attention_decode: max_kv_len " + std::to_string(max_kv_len) + " < n_q");
  if (!a.q_pos0_dev && int64_t{a.q_pos0} + a.n_q > max_kv_len)
    fail("flash_attention_decode: q_pos0 + n_q exceeds max_kv_len " + std::to_string(max_kv_len));
  check_ring(a, a.q_pos0_dev ? max_kv_len : int64_t{a.q_pos0} + a.n_q, "flash_attention_decode");
  FlashParams p = make_params(a);
  p.n_split = decode_splits(a, max_kv_len);
  p.persistent = false;  // the persistent grid has no splits
  p.settled_rows = true;
  if (p.n_split > 1) {
    if (!workspace) fail("flash_attention_decode: null workspace");
    p.partial_acc = static_cast<float*>(workspace);
    p.partial_ml = reinterpret_cast<float2*>(p.partial_acc + static_cast<size_t>(p.n_split) * a.n_q * a.n_head * a.head_dim);
  }
  launch(a, p, attn::WsMaps{}, stream);  // decode: cp.async (one position; no maps per graph node)
}

}  // namespace swrun::cuda
