// The memory plan: what a run keeps on the GPU (weights, KV cache of dense layers and sliding rings, activations,
// workspace), computed before anything is allocated. The model is built exactly as a real run builds it
// (load_model + Model::init_kv) on a planning backend that allocates nothing and only counts, with the CUDA
// backend's byte rules (runtime/device_bytes.h); only the file's header and tensor table are read, never its
// tensor data, so no GPU is needed. `swrun fit` prints a plan; the CLI picks the default ubatch from it and
// refuses a run that does not fit before loading anything.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/attn_policy.h"
#include "runtime/gguf.h"

namespace swrun {

// One model on one backend.
struct MemoryRequest {
  int ctx = 4096;          // tokens the KV cache holds
  int batch = 512;         // the largest batch forward() runs: min(ubatch, longest prefill)
  AttnSpec attn;           // --attn
  KvTypes kv_types;        // -ctk / -ctv
  size_t memory_bytes = 0; // the GPU's memory
  bool all_logits = false; // logits of every position of a batch (the --ab quality pass)
  bool base_rows = false;  // a batch of logits scored against KL base rows, or compressed into them (perplexity)
  std::vector<AttnSpec> kv_specs;  // the caches also hold these specs (Model::init_kv_for_specs); empty: attn alone
};

// One line of the plan's detail: `group` is the total it counts in ("weights", "kv", "activations", "workspace").
struct MemoryPart {
  std::string group, name;
  size_t bytes = 0;
  std::string detail;
};

struct MemoryPlan {
  MemoryRequest request;
  ModelConfig config;  // as the model resolves it (the policy of every layer after --attn)
  size_t weights = 0, kv_dense = 0, kv_rings = 0, activations = 0, workspace = 0;
  size_t total = 0;            // the sum of the above: what the backend's tracked peak should reach
  size_t context_reserve = 0;  // the CUDA context's own memory: not in total, kept back from the budget
  size_t budget = 0;           // memory_bytes - context_reserve
  bool fits = false;           // total <= budget
  int dense_layers = 0, ring_layers = 0;
  int32_t ring_capacity = 0;   // rows of the largest sliding ring
  std::vector<MemoryPart> parts;  // the detail; bytes sum to total
  size_t kv() const { return kv_dense + kv_rings; }
};

// Plans one model for the request. Throws Error for what would fail a real load too (unknown architecture, a bad
// --attn for this model, a context or batch below 1).
MemoryPlan plan_memory(const GgufFile& f, const MemoryRequest& r);

// A run's job, for picking its ubatch: what it loads and how long its context and prefills get.
struct MemoryJob {
  int ctx = 4096;            // the largest context the run gives the KV cache
  int longest_prefill = 0;   // tokens of its longest prefill: the batch is min(ubatch, this) (0: ctx)
  int min_ctx = 1;           // the smallest context that could still run it (the prompt), for the -c hint
  std::vector<AttnSpec> specs = {AttnSpec{}};
  KvTypes kv_types;          // -ctk / -ctv
  bool side_by_side = false; // one backend per spec, all at once (--ab); else one backend running them in turn
  bool shared_kv = false;    // in turn over one set of caches sized for every spec (perplexity: init_kv_for_specs)
  bool all_logits = false;
  bool base_rows = false;  // MemoryRequest::base_rows
  size_t memory_bytes = 0;
  std::string ctx_flag = "-c";  // the flag that sets the context ("" where none does: bench)
};

struct JobPlan {
  int ubatch = 0;
  std::vector<MemoryPlan> plans;  // one per spec
  size_t total = 0;   // what is on the device at the peak: the plans' sum side by side, else their largest
  size_t budget = 0;
  bool fits = false;
  // The largest activations + workspace of one backend (what the ubatch scales).
  size_t transient() const;
};

JobPlan plan_job(const GgufFile& f, const MemoryJob& job, int ubatch);

// Activations + workspace a default ubatch may take: big chunks pay off on small models (Gemma 3 270M's 32K
// prompt in one chunk of 32768 takes ~1.4 GiB), while a 27B model stays at 4096 (~1.5 GiB), near llama.cpp's
// peak.
constexpr size_t kDefaultUbatchTransientBytes = size_t(5) << 29;  // 2.5 GiB

// The default ubatch on a GPU: the largest power of two from 32768 down to 512 whose plan fits the budget and
// keeps activations + workspace within kDefaultUbatchTransientBytes (512 when only the budget holds). The
// returned plan has fits == false when not even 512 fits.
JobPlan plan_default_ubatch(const GgufFile& f, const MemoryJob& job);

// One line for a plan that does not fit: the part that crosses the budget, how much more it needs, and the flag
// that would help ("-c N" / "-b N" with values that fit), e.g. "does not fit: the KV cache (dense 10 layers x
// 131072, rings 52 layers x 5120: 12.03 GiB) needs 3.20 GiB more than the budget of 23.00 GiB (24.00 GiB less
// 1.00 GiB for the CUDA context; total 26.20 GiB); try -c 65536".
std::string not_fit_message(const GgufFile& f, const MemoryJob& job, const JobPlan& plan);

// "80G", "24", "23.5GiB", "512M": memory in GiB unless suffixed (M/MiB, G/GiB, T/TiB); throws Error naming `flag`.
size_t parse_memory_size(const std::string& text, const std::string& flag);

}  // namespace swrun
