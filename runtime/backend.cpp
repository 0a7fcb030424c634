// What every backend shares.
#include "runtime/backend.h"

#include <cctype>
#include <utility>

#include "runtime/common.h"
#include "runtime/ggml_types.h"

namespace swrun {

void check_row_range(const Weight& w, int64_t first, int64_t count) {
  if (w.rows <= 1 || !w.impl) fail("weight '" + w.name + "' is not an uploaded matrix");
  if (first < 0 || count < 1 || first > w.rows - count)
    fail("rows " + std::to_string(first) + ".." + std::to_string(first + count - 1) + " are outside weight '" +
         w.name + "' of " + std::to_string(w.rows) + " rows");
}

void check_logit_rows(const char* op, Buffer src, int64_t rows, int vocab, const int32_t* targets) {
  if (rows < 1 || vocab < 1 || static_cast<size_t>(rows) * static_cast<size_t>(vocab) > src.count)
    fail(std::string(op) + ": " + std::to_string(rows) + " rows of " + std::to_string(vocab) +
         " logits do not fit a buffer of " + std::to_string(src.count) + " floats");
  for (int64_t r = 0; r < rows; ++r)
    if (targets[r] < 0 || targets[r] >= vocab)
      fail(std::string(op) + ": target token " + std::to_string(targets[r]) + " of row " + std::to_string(r) +
           " is outside the vocabulary of " + std::to_string(vocab));
}

void check_moe_shapes(const MoeFfn& f, int64_t dim, int64_t tokens) {
  auto bad = [&](const std::string& why) { fail("moe: " + why); };
  if (f.n_expert < 1 || f.n_used < 1 || f.n_used > f.n_expert || f.ffn < 1)
    bad(std::to_string(f.n_used) + " of " + std::to_string(f.n_expert) + " experts of width " + std::to_string(f.ffn));
  if (f.router.rows != f.n_expert || f.router.cols != dim) bad("router '" + f.router.name + "' is not [n_expert, dim]");
  if (f.gate_up.impl) {
    if (f.gate.impl || f.up.impl) bad("both a fused gate_up and separate gate/up experts");
    if (f.gate_up.rows != int64_t{f.n_expert} * 2 * f.ffn)
      bad("fused gate_up experts are not [n_expert * 2 * ffn, dim]");
  } else if (f.up.cols != dim || f.gate.rows != int64_t{f.n_expert} * f.ffn || f.up.rows != f.gate.rows) {
    bad("gate/up experts are not [n_expert * ffn, dim]");
  }
  if (f.down_scale.impl && (f.down_scale.rows != 1 || f.down_scale.cols != f.n_expert))
    bad("down_scale '" + f.down_scale.name + "' is not a vector of n_expert values");
  if (f.router_input.data && f.router_input.count < static_cast<size_t>(tokens * dim))
    bad("router_input holds fewer than tokens x dim values");
  if (f.down.cols != f.ffn || f.down.rows != int64_t{f.n_expert} * dim) bad("down experts are not [n_expert * dim, ffn]");
  auto check_bias = [&](const Weight& b, int64_t rows, int64_t cols) {
    if (b.impl && (b.rows != rows || b.cols != cols)) bad("bias '" + b.name + "' has the wrong shape");
  };
  check_bias(f.router_bias, 1, f.n_expert);
  check_bias(f.gate_bias, f.n_expert, f.ffn);
  check_bias(f.up_bias, f.n_expert, f.ffn);
  check_bias(f.down_bias, f.n_expert, dim);
}

int64_t check_device_tensor(const GgufTensor& t) {
  const GgmlTypeInfo ti = ggml_type_info(t.type_id);
  if (!ti.name || !ti.supported)
    fail("tensor '" + t.name + "': type " + ggml_type_name(t.type_id) + " is not supported by the CUDA backend");
  if (t.ne.empty() || t.ne[0] <= 0) fail("tensor '" + t.name + "': empty shape");
  int64_t elems = 1;
  for (int64_t d : t.ne) elems *= d;
  if (t.ne[0] % ti.block_elems != 0 || t.nbytes < ggml_row_bytes(ti, elems))
    fail("tensor '" + t.name + "': " + std::to_string(t.nbytes) + " bytes do not hold " + std::to_string(elems) +
         " elements of type " + ti.name);
  return elems;
}

namespace {

[[noreturn]] void fail_missing_features(const Backend& be, const BackendFeatures& needed) {
  const BackendFeatures has = be.features();
  std::string missing;
  auto note = [&](bool need, bool have, const char* what) {
    if (need && !have) missing += (missing.empty() ? "" : " / ") + std::string(what);
  };
  note(needed.attention_sinks, has.attention_sinks, "attention sinks");
  note(needed.mixture_of_experts, has.mixture_of_experts, "mixture of experts");
  note(needed.yarn_rope, has.yarn_rope, "YaRN RoPE");
  note(needed.gemma4_blocks, has.gemma4_blocks, "Gemma 4's blocks (per-layer head dims, shared KV, per-layer inputs)");
  note(needed.gemma4_moe, has.gemma4_moe, "Gemma 4's mixture of experts");
  fail(be.name() + " backend: " + missing + " not supported yet; use --backend cpu");
}

}  // namespace

void Backend::moe(Buffer, int64_t, const MoeFfn&, Buffer) {
  fail_missing_features(*this, BackendFeatures{.mixture_of_experts = true});
}

void Backend::scale(Buffer, size_t, float) { fail_missing_features(*this, BackendFeatures{.gemma4_blocks = true}); }

void Backend::copy_cols(Buffer, int64_t, int64_t, int64_t, int64_t, Buffer) {
  fail_missing_features(*this, BackendFeatures{.gemma4_blocks = true});
}

void require_features(const Backend& be, const BackendFeatures& needed) {
  const BackendFeatures has = be.features();
  if ((needed.attention_sinks && !has.attention_sinks) || (needed.mixture_of_experts && !has.mixture_of_experts) ||
      (needed.yarn_rope && !has.yarn_rope) || (needed.gemma4_blocks && !has.gemma4_blocks) ||
      (needed.gemma4_moe && !has.gemma4_moe))
    fail_missing_features(be, needed);
}

std::string kv_type_name(GgmlType t) {
  std::string name = ggml_type_name(uint32_t(t));
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

KvTypes parse_kv_types(const std::string& ctk, const std::string& ctv) {
  auto parse = [](const std::string& name, const char* flag) -> std::optional<GgmlType> {
    if (name.empty()) return std::nullopt;
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
                       GgmlType::Q5_0, GgmlType::Q5_1})
      if (name == kv_type_name(t)) return t;
    fail(std::string(flag) + ": '" + name + "' is not a KV cache type (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)");
  };
  return {parse(ctk, "-ctk"), parse(ctv, "-ctv")};
}

void require_bf16_kv(const Backend& be, const std::vector<KvLayerSpec>& layers) {
  for (const KvLayerSpec& s : layers)
    for (const auto& [type, flag] : {std::pair{s.types.k, "-ctk"}, std::pair{s.types.v, "-ctv"}})
      if (type && *type != GgmlType::BF16)
        fail(be.name() + " backend: " + flag + " " + kv_type_name(*type) +
             " not supported yet (its KV caches are bf16); use --backend cpu");
}

}  // namespace swrun
