// CudaBackend::moe: gpt-oss's mixture-of-experts FFN (kernels/moe). The expert choice never leaves the device:
// routing, the chosen experts' GEMVs (a few rows) or the grouping and grouped GEMMs (many rows) all read it there,
// so a decode step with MoE layers is captured as one graph like any other.
#include <string>

#include "kernels/elementwise/vec.cuh"
#include "kernels/moe/moe.cuh"
#include "runtime/common.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/device_bytes.h"

namespace swrun::cuda {

// A weight the MoE kernels read as the file's blocks (the router, the experts); anything else is an Error.
const uint8_t* CudaBackend::moe_blocks(const Weight& w) const {
  const DeviceWeight& d = device_weight(w, "moe");
  if (d.fp32 || !d.raw)
    fail("moe: weight '" + w.name + "' (" + ggml_type_name(uint32_t(w.type)) + ", rows of " + std::to_string(w.cols) +
         ") is not kept in blocks the expert kernels decode");
  return static_cast<const uint8_t*>(d.raw);
}

// An expert bias [n_expert, cols] as fp32 on the device (null when absent): an F32 matrix keeps the file's floats
// (its rows are whole 32-element blocks), a single expert's may have been uploaded as a vector.
const float* CudaBackend::moe_bias(const Weight& w) const {
  if (!w.impl) return nullptr;
  const DeviceWeight& d = device_weight(w, "moe");
  if (d.fp32) return static_cast<const float*>(d.data);
  if (w.type != GgmlType::F32 || !d.raw)
    fail("moe: bias '" + w.name + "' must be F32 with rows of a multiple of 32 values, not " +
         ggml_type_name(uint32_t(w.type)) + " rows of " + std::to_string(w.cols));
  return static_cast<const float*>(d.raw);
}

void CudaBackend::moe(Buffer x, int64_t rows, const MoeFfn& f, Buffer out) {
  // Gemma 4's experts (BackendFeatures::gemma4_moe, which this backend lacks) never reach here through a model.
  if (f.act != MoeAct::SwigluOai || f.gate_up.impl || f.down_scale.impl || f.router_input.data)
    fail("moe: only gpt-oss's experts (clamped SwiGLU, separate gate and up, no scales) run on the CUDA backend");
  const int64_t dim = f.gate.cols;
  check_moe_shapes(f, dim, rows);
  if (f.up.type != f.gate.type)
    fail("moe: gate experts '" + f.gate.name + "' and up experts '" + f.up.name + "' must share a type");
  MoeDeviceFfn d;
  d.router_type = f.router.type;
  d.gate_type = f.gate.type;
  d.down_type = f.down.type;
  d.router = moe_blocks(f.router);
  d.router_bias = device_vector(&f.router_bias, f.n_expert, "moe");
  d.gate = moe_blocks(f.gate);
  d.up = moe_blocks(f.up);
  d.down = moe_blocks(f.down);
  d.gate_bias = moe_bias(f.gate_bias);
  d.up_bias = moe_bias(f.up_bias);
  d.down_bias = moe_bias(f.down_bias);
  d.n_expert = f.n_expert;
  d.n_used = f.n_used;
  d.ffn = f.ffn;
  d.dim = dim;
  d.alpha = f.alpha;
  d.limit = f.limit;
  const bool grouped = rows > device_bytes::kMoeGemvMaxRows;
  if (const std::string why = moe_unsupported(d, grouped); !why.empty()) fail("moe: " + why);
  const size_t n = size_t(rows) * size_t(dim);
  if (!x.data || x.count < n || !out.data || out.count < n)
    fail("moe: " + std::to_string(rows) + " rows of " + std::to_string(dim) + " floats do not fit the buffers");
  if (!aligned_to(x.data, 16)) fail("moe: the input rows must be 16-byte aligned");
  if (rows <= 0 || !launching()) return;
  const device_bytes::MoeScratchLayout l = device_bytes::moe_scratch_layout(rows, f.n_expert, f.n_used, f.ffn, dim);
  auto* base = static_cast<uint8_t*>(moe_scratch_.ensure(mem_, l.total));
  auto* ids = reinterpret_cast<int32_t*>(base + l.ids);
  auto* weights = reinterpret_cast<float*>(base + l.weights);
  moe_route(d, x.data, rows, ids, weights, stream_);
  if (!grouped) {
    moe_decode(d, x.data, rows, ids, weights, reinterpret_cast<float*>(base + l.hidden), out.data, stream_);
  } else {
    MoeGroupScratch s;
    s.pair_of = reinterpret_cast<int32_t*>(base + l.pair_of);
    s.offsets = reinterpret_cast<int32_t*>(base + l.offsets);
    s.tile_offsets = reinterpret_cast<int32_t*>(base + l.tile_offsets);
    s.hidden = reinterpret_cast<__nv_bfloat16*>(base + l.hidden);
    s.expert_out = reinterpret_cast<float*>(base + l.expert_out);
    moe_prefill(d, x.data, rows, ids, weights, s, out.data, stream_);
  }
}

}  // namespace swrun::cuda
