// What `swrun perplexity` asks of a model, on the example model (Gemma 3 270M) and the CPU backend: the rows that
// Model::forward_logits leaves on the backend are the rows of a whole forward's logits and score as they do, and
// caches sized once for several specs (Model::init_kv_for_specs) give each spec the logits of its own init_kv,
// over several batches so that sliding layers' rings wrap. Skips without the model file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/backend.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/logprob.h"

namespace swrun {
namespace {

std::string model_path() {
  if (const char* p = std::getenv("SWRUN_MODEL")) return p;
  const std::string p = std::string(SWRUN_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf";
  return std::filesystem::exists(p) ? p : "";
}

class ModelRows : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = model_path();
    if (path.empty()) GTEST_SKIP() << "example model not found (set SWRUN_MODEL)";
    file_ = GgufFile::open(path);
    be_ = make_cpu_backend(0);
    for (int i = 0; i < kTokens; ++i) tokens_.push_back(2 + (i * 7919) % 5000);  // arbitrary in-vocabulary tokens
  }
  // The last logits of each batch ([kTokens / kBatch, vocab]) of `attn`, run in batches of kBatch over caches from
  // init_kv or, with `sized_for`, init_kv_for_specs(sized_for) and then set_attention(attn).
  std::vector<float> logits(const std::string& attn, const std::vector<std::string>& sized_for = {}) {
    auto m = load_model(*file_, *be_, AttnSpec::parse(attn), kBatch);
    if (sized_for.empty()) {
      m->init_kv(kTokens, kBatch);
    } else {
      std::vector<AttnSpec> specs;
      for (const std::string& s : sized_for) specs.push_back(AttnSpec::parse(s));
      m->init_kv_for_specs(kTokens, kBatch, specs);
      capacities_.clear();
      for (const KvLayerSpec& l : m->kv_layers()) capacities_.push_back(l.capacity);
      m->set_attention(AttnSpec::parse(attn));
    }
    const int vocab = m->config().vocab;
    std::vector<float> out(size_t(kTokens / kBatch) * vocab);
    for (int p0 = 0; p0 < kTokens; p0 += kBatch)
      m->forward(tokens_.data() + p0, p0, kBatch, LogitsMode::Last, out.data() + size_t(p0 / kBatch) * vocab);
    return out;
  }

  static constexpr int kTokens = 32, kBatch = 8;
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Backend> be_;
  std::vector<int32_t> tokens_;
  std::vector<int32_t> capacities_;
};

TEST_F(ModelRows, ForwardLogitsLeavesTheRowsOfAWholeForwardAndTheyScoreAlike) {
  auto m = load_model(*file_, *be_, AttnSpec::parse("model"), kTokens);
  m->init_kv(kTokens, kTokens);
  const int vocab = m->config().vocab;
  std::vector<float> all(size_t(kTokens) * vocab);
  m->forward(tokens_.data(), 0, kTokens, LogitsMode::All, all.data());
  const int first = 20, rows = 11;
  const Buffer kept = m->forward_logits(tokens_.data(), 0, kTokens, first, rows);
  ASSERT_GE(kept.count, size_t(rows) * vocab);
  std::vector<float> host(size_t(rows) * vocab, NAN);
  be_->read(kept, 0, host.size(), host.data());
  be_->synchronize();
  double worst = 0;
  for (size_t i = 0; i < host.size(); ++i)
    worst = std::max(worst, double(std::fabs(host[i] - all[size_t(first) * vocab + i])));
  EXPECT_LT(worst, 1e-4) << "the kept rows are not rows " << first << ".." << first + rows - 1;

  std::vector<int32_t> targets(tokens_.begin() + first + 1, tokens_.begin() + first + 1 + rows);
  std::vector<RowScore> scores(rows);
  be_->score_rows(kept, rows, vocab, targets.data(), nullptr, scores.data());
  be_->synchronize();
  for (int r = 0; r < rows; ++r) {
    const RowScore want = score_row(vocab, all.data() + size_t(first + r) * vocab, targets[r], nullptr);
    EXPECT_NEAR(scores[r].nll, want.nll, 1e-4) << "row " << r;
    EXPECT_EQ(scores[r].top, want.top) << "row " << r;
  }
  EXPECT_THROW(m->forward_logits(tokens_.data(), 0, kTokens, kTokens - 3, 4), Error);
}

TEST_F(ModelRows, CachesSizedForSeveralSpecsGiveEachSpecItsOwnLogits) {
  const std::vector<std::string> specs = {"sliding:8", "dense", "model"};
  for (const std::string& spec : specs) {
    SCOPED_TRACE(spec);
    const std::vector<float> own = logits(spec);
    const std::vector<float> shared = logits(spec, specs);
    ASSERT_EQ(own.size(), shared.size());
    double worst = 0;
    for (size_t i = 0; i < own.size(); ++i) worst = std::max(worst, double(std::fabs(own[i] - shared[i])));
    EXPECT_LT(worst, 1e-4);
  }
  for (int32_t capacity : capacities_) EXPECT_EQ(capacity, kTokens) << "dense is among the specs: every layer whole";
  logits("sliding:8", {"sliding:8", "sliding:4"});
  for (int32_t capacity : capacities_) EXPECT_EQ(capacity, 8 + kBatch) << "the larger ring of the two";
}

}  // namespace
}  // namespace swrun
