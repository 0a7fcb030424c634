// The per-layer attention table every swrun mode prints on stderr once a model is set to a spec (ARCHITECTURE.md:
// the policy table is printed at start), so that a run's output says which layers were windowed.
#pragma once
#include <cstdio>

#include "models/model.h"

namespace swrun {

inline void print_attention_table(const ModelConfig& c) {
  std::fprintf(stderr, "attention per layer (%s, %d layers, %d q heads, %d kv heads, head_dim %d):\n",
               c.arch.c_str(), c.n_layer, c.n_head, c.n_head_kv, c.head_dim);
  std::fprintf(stderr, "  %-5s %-14s %-14s %s\n", "layer", "policy", "model declares", "rope base");
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerConfig& lc = c.layers[l];
    std::fprintf(stderr, "  %-5d %-14s %-14s %.0f\n", l, describe(lc.policy).c_str(), describe(lc.declared).c_str(),
                 lc.rope.freq_base);
  }
}

}  // namespace swrun
