// The per-layer attention table every swrun mode prints on stderr once a model is set to a spec (ARCHITECTURE.md:
// the policy table is printed at start), so that a run's output says which layers were windowed.
#pragma once
#include <cstdio>
#include <string>

#include "models/model.h"

namespace swrun {

// `out`: stderr for a run (its stdout is the text), stdout for `swrun inspect`. A model with routed experts adds a
// line: which layers have them, how many, how many each token uses and their FFN width.
inline void print_attention_table(const ModelConfig& c, FILE* out = stderr) {
  std::fprintf(out, "attention per layer (%s, %d layers, %d q heads, %d kv heads, head_dim %d):\n",
               c.arch.c_str(), c.n_layer, c.n_head, c.n_head_kv, c.head_dim);
  std::fprintf(out, "  %-5s %-14s %-14s %-9s %-9s %-8s %-8s %s\n", "layer", "policy", "model declares", "rope base",
               "head_dim", "kv heads", "ffn", "kv cache");
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerConfig& lc = c.layers[l];
    const std::string kv = lc.kv_layer >= 0 ? "layer " + std::to_string(lc.kv_layer) + "'s" : "own";
    std::fprintf(out, "  %-5d %-14s %-14s %-9.0f %-9d %-8d %-8d %s\n", l, describe(lc.policy).c_str(),
                 describe(lc.declared).c_str(), lc.rope.freq_base, lc.head_dim, lc.n_head_kv, lc.ffn_dim, kv.c_str());
  }
  if (c.n_expert == 0) return;
  std::string layers;  // "0-3, 6"
  for (int l = 0; l < c.n_layer; ++l) {
    if (!c.layers[l].experts || (l > 0 && c.layers[l - 1].experts)) continue;
    int last = l;
    while (last + 1 < c.n_layer && c.layers[last + 1].experts) ++last;
    layers += (layers.empty() ? "" : ", ") + std::to_string(l) + (last > l ? "-" + std::to_string(last) : "");
  }
  std::fprintf(out, "mixture of experts on layers %s: %d experts, %d used per token, expert ffn %d\n", layers.c_str(),
               c.n_expert, c.n_expert_used, c.expert_ffn_dim);
}

}  // namespace swrun
