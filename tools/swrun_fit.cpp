#include "tools/swrun_fit.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>

#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "engine/memory_plan.h"

namespace swrun {
namespace {

constexpr size_t kGiB = size_t{1} << 30;
constexpr size_t kMemoryWithoutGpu = 80 * kGiB;

// The GPU memory to plan for: --mem, else the GPU's when one is present, else 80 GiB. `source` says which.
size_t memory_to_plan(const std::string& flag, std::string& source) {
  if (!flag.empty()) {
    source = "--mem " + flag;
    return parse_memory_size(flag, "--mem");
  }
  if (cuda_device_available()) {
    auto cuda = make_cuda_backend(0);
    source = "the memory of " + cuda->device_name();
    return cuda->device_memory_bytes();
  }
  source = "no GPU found: 80 GiB";
  return kMemoryWithoutGpu;
}

std::string file_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void print_row(const std::string& name, size_t bytes, const std::string& detail) {
  std::printf("  %-24s %12s  %s\n", name.c_str(), human_bytes(double(bytes)).c_str(), detail.c_str());
}

}  // namespace

FitCommand::FitCommand(CLI::App& app) {
  command_ = app.add_subcommand("fit", "the GPU memory plan of a run (weights, KV cache, activations, workspace) "
                                       "and whether it fits; reads only the file's header, no GPU needed");
  command_->add_option("-m,--model", model_, "GGUF model file")->required();
  command_->add_option("-c,--ctx-size", ctx_, "context size in tokens (0: the model's training context)")
      ->capture_default_str();
  command_->add_option("-b,--ubatch", ubatch_, "prefill chunk size in tokens (0: the default a run picks from the "
                                               "plan)")->capture_default_str();
  command_->add_option("--attn", attn_, "attention per layer, as for a run (model, dense, sliding[:W], a list)")
      ->capture_default_str();
  command_->add_option("--mem", mem_, "GPU memory to plan for, in GiB unless suffixed: 80G, 24G, 23.5, 512M "
                                      "(default: the GPU's, or 80G without one)");
  command_->add_flag("--json", json_, "print the plan as one JSON object");
}

bool FitCommand::chosen() const { return command_->parsed(); }

int FitCommand::run() const {
  try {
    return plan_and_print();
  } catch (const Error& e) {
    std::fprintf(stderr, "swrun: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "swrun: error: %s\n", e.what());
  }
  return kBadInput;
}

int FitCommand::plan_and_print() const {
  if (ctx_ < 0) fail("-c must be >= 0 (0: the model's training context)");
  if (ubatch_ < 0) fail("-b must be >= 1 (or 0 for the default from the plan)");
  const AttnSpec spec = AttnSpec::parse(attn_);
  std::string memory_source;
  const size_t memory = memory_to_plan(mem_, memory_source);
  auto file = GgufFile::open(model_);

  MemoryJob job;
  job.specs = {spec};
  job.memory_bytes = memory;
  job.ctx = ctx_;
  if (ctx_ == 0) {  // the training context, as the model reads it
    MemoryRequest probe;
    probe.ctx = probe.batch = 1;
    probe.attn = spec;
    job.ctx = plan_memory(*file, probe).config.ctx_train;
  }
  job.longest_prefill = job.ctx;  // a prompt may fill the context
  const JobPlan jp = ubatch_ > 0 ? plan_job(*file, job, ubatch_) : plan_default_ubatch(*file, job);
  const MemoryPlan& p = jp.plans.front();
  const std::string verdict = jp.fits ? "" : not_fit_message(*file, job, jp);

  if (json_) {
    nlohmann::ordered_json j;
    j["weights_bytes"] = p.weights;
    j["kv_bytes"] = p.kv();
    j["activation_bytes"] = p.activations;
    j["workspace_bytes"] = p.workspace;
    j["total_bytes"] = p.total;
    j["budget_bytes"] = p.budget;
    j["fits"] = jp.fits;
    j["memory_bytes"] = memory;
    j["context_reserve_bytes"] = p.context_reserve;
    j["kv_dense_bytes"] = p.kv_dense;
    j["kv_ring_bytes"] = p.kv_rings;
    j["model"] = model_;
    j["architecture"] = p.config.arch;
    j["ctx"] = job.ctx;
    j["ubatch"] = jp.ubatch;
    j["ubatch_default"] = ubatch_ == 0;
    j["batch"] = p.request.batch;
    j["attn"] = attn_;
    j["dense_layers"] = p.dense_layers;
    j["ring_layers"] = p.ring_layers;
    j["ring_capacity"] = p.ring_capacity;
    nlohmann::ordered_json parts = nlohmann::ordered_json::array();
    for (const MemoryPart& part : p.parts)
      parts.push_back({{"group", part.group}, {"name", part.name}, {"bytes", part.bytes}, {"detail", part.detail}});
    j["parts"] = parts;
    if (!jp.fits) j["message"] = verdict;
    std::printf("%s\n", j.dump(2).c_str());
    return jp.fits ? kFits : kDoesNotFit;
  }

  const ModelConfig& c = p.config;
  std::printf("swrun fit: %s (%s, %d layers), context %d, ubatch %d%s, attn %s\n", file_name(model_).c_str(),
              c.arch.c_str(), c.n_layer, job.ctx, jp.ubatch, ubatch_ == 0 ? " (default from the plan)" : "",
              attn_.c_str());
  std::printf("  %-24s %12s  %s\n", "part", "size", "detail");
  print_row("weights", p.weights, p.parts.front().detail);
  for (const MemoryPart& part : p.parts)
    if (part.group == "kv") print_row(part.name, part.bytes, part.detail);
  print_row("activations", p.activations, "batch " + std::to_string(p.request.batch));
  for (const MemoryPart& part : p.parts)
    if (part.group == "activations") print_row("  " + part.name, part.bytes, part.detail);
  print_row("workspace", p.workspace, "");
  for (const MemoryPart& part : p.parts)
    if (part.group == "workspace") print_row("  " + part.name, part.bytes, part.detail);
  print_row("total", p.total, "what the backend's peak (DeviceMemory) should reach");
  print_row("budget", p.budget, human_bytes(double(memory)) + " (" + memory_source + ") less " +
                                    human_bytes(double(p.context_reserve)) + " for the CUDA context");
  if (jp.fits)
    std::printf("fits: %s to spare\n", human_bytes(double(p.budget - p.total)).c_str());
  else
    std::printf("%s\n", verdict.c_str());
  return jp.fits ? kFits : kDoesNotFit;
}

}  // namespace swrun
