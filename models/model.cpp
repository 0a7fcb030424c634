#include "models/model.h"

#include <map>

#include "runtime/common.h"

namespace swrun {

using Loader = std::unique_ptr<Model> (*)(const GgufFile&, Backend&, const AttnSpec&, int);

// Architecture table keyed by general.architecture.
static const std::map<std::string, Loader>& architectures() {
  static const std::map<std::string, Loader> table = {
      {"gemma2", &load_gemma2}, {"gemma3", &load_gemma3}, {"gemma4", &load_gemma4}, {"gpt-oss", &load_gpt_oss},
      {"llama", &load_llama},   {"phi3", &load_phi3},     {"qwen2", &load_qwen2},   {"qwen3", &load_qwen3},
  };
  return table;
}

void Model::set_attention(const AttnSpec& spec) {
  std::vector<AttnPolicy> declared;
  for (const LayerConfig& l : cfg_.layers) declared.push_back(l.declared);
  const std::vector<AttnPolicy> chosen = spec.resolve(declared, cfg_.sliding_window);
  for (size_t l = 0; l < chosen.size(); ++l) cfg_.layers[l].policy = chosen[l];
}

std::unique_ptr<Model> load_model(const GgufFile& f, Backend& be, const AttnSpec& spec, int max_batch) {
  if (f.tensors().empty())
    fail(f.path() + ": no tensors in this file (vocab-only GGUF?); generation needs the model's weights");
  const std::string arch = f.get_string("general.architecture");
  const auto& table = architectures();
  auto it = table.find(arch);
  if (it == table.end()) {
    std::string known;
    for (const auto& [name, _] : table) known += (known.empty() ? "" : ", ") + name;
    fail(f.path() + ": architecture '" + arch + "' is not supported (supported: " + known + ")");
  }
  if (max_batch < 1) fail("batch size must be at least 1");
  return it->second(f, be, spec, max_batch);
}

}  // namespace swrun
