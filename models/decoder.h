// What the decoder-only architectures share: activation buffers sized for a batch, KV-cache geometry from the
// per-layer policy, and the final norm + output projection on the rows whose logits are wanted.
#pragma once
#include <cmath>
#include <string>

#include "models/model.h"
#include "models/ops.h"

namespace swrun {

struct RunState {
  Buffer x, xn, q, k, v, att, proj, gate, up, logits;
  int max_batch = 0;
  int logits_rows = 0;  // rows `logits` can hold
};

class DecoderModel : public Model {
 public:
  void init_kv(int ctx, int max_batch) override;

 protected:
  DecoderModel(Backend& be, ModelConfig cfg, int max_batch);
  // Final norm and output projection for rows of s_.x selected by mode; copies logits to host.
  void finish(int n, LogitsMode mode, const Weight& out_norm, const Weight& output, float* logits);
  Weight tensor(const GgufFile& f, const std::string& name, std::initializer_list<int64_t> shape);
  Weight optional_tensor(const GgufFile& f, const std::string& name, std::initializer_list<int64_t> shape);
  void check_batch(int n) const;

  TracedOps ops_;
  RunState s_;
};

// Hyperparameters shared by the llama-like families, read as `<arch>.<key>`.
ModelConfig read_common_config(const GgufFile& f, const std::string& arch);

}  // namespace swrun

namespace swrun {
// `<arch>.rope.scaling.*`: linear scaling gives freq_scale = 1/factor; other kinds are an Error.
float read_rope_freq_scale(const GgufFile& f, const std::string& arch);
}  // namespace swrun
