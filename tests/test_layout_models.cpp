// make_layout_model's pieces (tools/layout_models.h): the Q4_K_M type rule against hand-written tables of what
// llama.cpp's quantizer gives (Gemma 3 270M: the real file's table; Llama 3.1 8B and 70B; Phi-3's fused
// tensors), the random block pools (finite values of the intended spread), the vocabulary padding, and the
// GGUF writer's streamed tensors (several threads, progress, cancel, a failing fill).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "error_of.h"
#include "runtime/dequant.h"
#include "runtime/gguf.h"
#include "runtime/gguf_vocab_copy.h"
#include "runtime/gguf_writer.h"
#include "tools/layout_models.h"

namespace swrun {
namespace {

namespace fs = std::filesystem;
using layout::Mix;
using layout::TensorSpec;
using testing::error_of;

fs::path scratch_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("swrun_test_layout_" + std::to_string(getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}
struct RemoveScratchDir : ::testing::Environment {
  void TearDown() override { fs::remove_all(scratch_dir()); }
};
[[maybe_unused]] const auto* const kScratchCleanup = ::testing::AddGlobalTestEnvironment(new RemoveScratchDir);

std::map<std::string, const TensorSpec*> by_name(const std::vector<TensorSpec>& t) {
  std::map<std::string, const TensorSpec*> m;
  for (const TensorSpec& s : t) m[s.name] = &s;
  return m;
}

std::string type_of(const std::map<std::string, const TensorSpec*>& m, const std::string& name) {
  auto it = m.find(name);
  return it == m.end() ? "(absent)" : ggml_type_name(static_cast<uint32_t>(it->second->type));
}

// Gemma 3 270M at Q4_K_M, as the published gemma-3-270m Q4_K_M file has it (models/gemma-3-270m-q4_k_m.gguf):
// rows of 640 are not a multiple of 256, so Q4_K falls back to Q5_0 and Q6_K to Q8_0; attn_v and ffn_down take
// the "more bits" type on layers 0, 1, 4, 7, 10, 13, 15, 16, 17; the tied token_embd takes the output's type.
TEST(LayoutTypes, Gemma3_270mQ4KMMatchesThePublishedFile) {
  const auto t = layout::layout_tensors(*layout::find_layout("gemma3-270m"), Mix::Q4_K_M);
  EXPECT_EQ(t.size(), 236u);
  const auto m = by_name(t);
  EXPECT_EQ(type_of(m, "token_embd.weight"), "Q8_0");
  EXPECT_EQ(type_of(m, "output.weight"), "(absent)");
  EXPECT_EQ(type_of(m, "output_norm.weight"), "F32");
  const std::set<int> more_bits = {0, 1, 4, 7, 10, 13, 15, 16, 17};
  for (int l = 0; l < 18; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    SCOPED_TRACE(p);
    const bool more = more_bits.count(l) > 0;
    EXPECT_EQ(type_of(m, p + "attn_q.weight"), "Q5_0");
    EXPECT_EQ(type_of(m, p + "attn_k.weight"), "Q5_0");
    EXPECT_EQ(type_of(m, p + "attn_v.weight"), more ? "Q8_0" : "Q5_0");
    EXPECT_EQ(type_of(m, p + "attn_output.weight"), "Q4_K");  // rows of 1024
    EXPECT_EQ(type_of(m, p + "ffn_gate.weight"), "Q5_0");
    EXPECT_EQ(type_of(m, p + "ffn_up.weight"), "Q5_0");
    EXPECT_EQ(type_of(m, p + "ffn_down.weight"), more ? "Q6_K" : "Q4_K");  // rows of 2048
    for (const char* n : {"attn_norm", "attn_q_norm", "attn_k_norm", "post_attention_norm", "ffn_norm",
                          "post_ffw_norm"})
      EXPECT_EQ(type_of(m, p + n + ".weight"), "F32") << n;
  }
  EXPECT_EQ(m.at("token_embd.weight")->ne, (std::vector<int64_t>{640, 262144}));
  EXPECT_EQ(m.at("blk.0.attn_q.weight")->ne, (std::vector<int64_t>{640, 1024}));
  EXPECT_EQ(m.at("blk.0.attn_k.weight")->ne, (std::vector<int64_t>{640, 256}));
  EXPECT_EQ(m.at("blk.0.attn_output.weight")->ne, (std::vector<int64_t>{1024, 640}));
  EXPECT_EQ(m.at("blk.0.ffn_down.weight")->ne, (std::vector<int64_t>{2048, 640}));
  EXPECT_EQ(m.at("blk.0.attn_q_norm.weight")->ne, (std::vector<int64_t>{256}));
}

// Llama 3.1 8B: 32 layers, more bits on 0-3, 28-31 and every third from 6; untied output Q6_K, token_embd Q4_K,
// rope_freqs F32. 70B (llama.cpp's LLM_TYPE_70B): attn_v Q5_K where 8B has Q4_K.
TEST(LayoutTypes, Llama31Q4KM) {
  const std::set<int> more_bits = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  const auto t8 = layout::layout_tensors(*layout::find_layout("llama3.1-8b"), Mix::Q4_K_M);
  EXPECT_EQ(t8.size(), 292u);  // as published Llama 3.1 8B GGUFs
  const auto m = by_name(t8);
  EXPECT_EQ(type_of(m, "token_embd.weight"), "Q4_K");
  EXPECT_EQ(type_of(m, "output.weight"), "Q6_K");
  EXPECT_EQ(type_of(m, "rope_freqs.weight"), "F32");
  EXPECT_EQ(m.at("rope_freqs.weight")->ne, (std::vector<int64_t>{64}));
  EXPECT_EQ(m.at("blk.0.attn_k.weight")->ne, (std::vector<int64_t>{4096, 1024}));
  for (int l = 0; l < 32; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool more = more_bits.count(l) > 0;
    EXPECT_EQ(type_of(m, p + "attn_v.weight"), more ? "Q6_K" : "Q4_K") << p;
    EXPECT_EQ(type_of(m, p + "ffn_down.weight"), more ? "Q6_K" : "Q4_K") << p;
    for (const char* n : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
      EXPECT_EQ(type_of(m, p + n + ".weight"), "Q4_K") << p << n;
  }
  const auto t70 = layout::layout_tensors(*layout::find_layout("llama3.1-70b"), Mix::Q4_K_M);
  const auto m70 = by_name(t70);
  for (int l = 0; l < 80; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool more = l < 10 || l >= 70 || (l - 10) % 3 == 2;
    EXPECT_EQ(type_of(m70, p + "attn_v.weight"), more ? "Q6_K" : "Q5_K") << p;
    EXPECT_EQ(type_of(m70, p + "ffn_down.weight"), more ? "Q6_K" : "Q4_K") << p;
  }
  const std::vector<float> f = layout::llama3_rope_factors(*layout::find_layout("llama3.1-8b"));
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(f.front(), 1.f);
  EXPECT_EQ(f.back(), 8.f);
  for (size_t i = 1; i < f.size(); ++i) EXPECT_GE(f[i], f[i - 1]);
}

// Phi-3: fused attn_qkv (q, k, v rows) takes attn_v's rule; ffn_up holds gate and up rows.
TEST(LayoutTypes, Phi3FusedTensors) {
  const auto t = layout::layout_tensors(*layout::find_layout("phi3-mini"), Mix::Q4_K_M);
  const auto m = by_name(t);
  EXPECT_EQ(m.at("blk.0.attn_qkv.weight")->ne, (std::vector<int64_t>{3072, 9216}));
  EXPECT_EQ(m.at("blk.0.ffn_up.weight")->ne, (std::vector<int64_t>{3072, 16384}));
  EXPECT_EQ(m.count("blk.0.attn_q.weight"), 0u);
  EXPECT_EQ(m.count("blk.0.ffn_gate.weight"), 0u);
  EXPECT_EQ(type_of(m, "blk.0.attn_qkv.weight"), "Q6_K");
  EXPECT_EQ(type_of(m, "blk.5.attn_qkv.weight"), "Q4_K");
  EXPECT_EQ(type_of(m, "blk.6.attn_qkv.weight"), "Q6_K");
  EXPECT_EQ(type_of(m, "output.weight"), "Q6_K");
}

TEST(LayoutTypes, Q8AndF16MixesAndFileTypes) {
  for (const layout::Layout& l : layout::layouts()) {
    for (Mix mix : {Mix::Q8_0, Mix::F16}) {
      for (const TensorSpec& t : layout::layout_tensors(l, mix)) {
        const GgmlType want = t.ne.size() == 1 ? GgmlType::F32 : mix == Mix::F16 ? GgmlType::F16 : GgmlType::Q8_0;
        EXPECT_EQ(t.type, want) << l.name << " " << t.name;
      }
    }
    // Every Q4_K_M matrix has a type whose block divides its rows.
    for (const TensorSpec& t : layout::layout_tensors(l, Mix::Q4_K_M))
      EXPECT_EQ(t.ne[0] % ggml_type_info(static_cast<uint32_t>(t.type)).block_elems, 0) << l.name << t.name;
  }
  EXPECT_EQ(layout::file_type(Mix::Q4_K_M), 15u);
  EXPECT_EQ(layout::file_type(Mix::Q8_0), 7u);
  EXPECT_EQ(layout::file_type(Mix::F16), 1u);
}

// Every pool dequantizes to finite values with a spread near sigma and a mean near zero (Q4_0's d * (q - 8) is
// off centre by half a step, -0.11 sigma, as real Q4_0 blocks are).
TEST(LayoutBlocks, PoolsAreFiniteWithTheIntendedSpread) {
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_0,
                        GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::F16}) {
    for (float sigma : {1.f / 24.f, 1.f / 64.f, 1.f / 170.f}) {
      const layout::BlockPool pool(type, sigma, 64 << 10, 7);
      const GgmlTypeInfo ti = ggml_type_info(static_cast<uint32_t>(type));
      const int64_t n = static_cast<int64_t>(pool.size() / ti.block_bytes) * ti.block_elems;
      std::vector<float> v(static_cast<size_t>(n));
      dequantize_row(type, pool.data(), v.data(), n);
      double sum = 0, sum2 = 0;
      bool finite = true;
      for (float x : v) {
        finite = finite && std::isfinite(x);
        sum += x;
        sum2 += double(x) * x;
      }
      const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
      SCOPED_TRACE(std::string(ti.name) + " sigma " + std::to_string(sigma));
      EXPECT_TRUE(finite);
      EXPECT_GT(sd, 0.75 * sigma);
      EXPECT_LT(sd, 1.33 * sigma);
      EXPECT_LT(std::abs(mean), 0.15 * sigma);
    }
  }
}

TEST(LayoutBlocks, ReadTilesThePoolFromAnyStart) {
  const layout::BlockPool pool(GgmlType::Q8_0, 0.01f, 34 * 10, 3);  // 10 blocks
  ASSERT_EQ(pool.size(), 340u);
  std::vector<uint8_t> got(1000);
  pool.read(7, 5, got.data(), got.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], pool.data()[(7 * 34 + 5 + i) % 340]) << i;
}

// A vocabulary of 6 pieces (ids 0-2 special) padded to 9 and cut to 4.
std::unique_ptr<GgufFile> tiny_vocab(const fs::path& path, bool bpe) {
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", bpe ? "gpt2" : "llama");
  w.set_array_string("tokenizer.ggml.tokens", {"<pad>", "<s>", "</s>", "a", "b", "c"});
  if (!bpe) w.set_array_f32("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3});
  w.set_array_i32("tokenizer.ggml.token_type", {3, 3, 3, 1, 1, 1});
  if (bpe) w.set_array_string("tokenizer.ggml.merges", {"a b"});
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.write(path);
  return GgufFile::open(path);
}

TEST(LayoutVocab, PadsWithUnusedTokensAndRefusesUnsafeCuts) {
  const auto spm = tiny_vocab(scratch_dir() / "spm.gguf", false);
  GgufWriter w;
  copy_tokenizer(*spm, w, 9);
  w.write(scratch_dir() / "padded.gguf");
  const auto f = GgufFile::open(scratch_dir() / "padded.gguf");
  const GgufArray& tokens = f->get_array("tokenizer.ggml.tokens");
  const GgufArray& scores = f->get_array("tokenizer.ggml.scores");
  const GgufArray& types = f->get_array("tokenizer.ggml.token_type");
  ASSERT_EQ(tokens.items.size(), 9u);
  ASSERT_EQ(scores.items.size(), 9u);
  ASSERT_EQ(types.items.size(), 9u);
  EXPECT_EQ(tokens.items[5].as_string("t"), "c");
  EXPECT_EQ(tokens.items[6].as_string("t"), "[PAD6]");
  EXPECT_EQ(tokens.items[8].as_string("t"), "[PAD8]");
  EXPECT_EQ(types.items[8].as_int("t"), 5);
  EXPECT_EQ(scores.items[8].as_float("s"), -1000.0);
  EXPECT_EQ(f->get_int("tokenizer.ggml.eos_token_id"), 2);

  GgufWriter cut;
  copy_tokenizer(*spm, cut, 4);
  cut.write(scratch_dir() / "cut.gguf");
  EXPECT_EQ(GgufFile::open(scratch_dir() / "cut.gguf")->get_array("tokenizer.ggml.tokens").items.size(), 4u);
  GgufWriter too_short;
  EXPECT_NE(error_of([&] { copy_tokenizer(*spm, too_short, 2); }).find("eos_token_id = 2 is cut"), std::string::npos);
  const auto bpe = tiny_vocab(scratch_dir() / "bpe.gguf", true);
  GgufWriter bpe_cut;
  EXPECT_NE(error_of([&] { copy_tokenizer(*bpe, bpe_cut, 4); }).find("cannot cut a BPE vocabulary"),
            std::string::npos);
  GgufWriter bpe_pad;
  copy_tokenizer(*bpe, bpe_pad, 8);
  bpe_pad.write(scratch_dir() / "bpe_pad.gguf");
  const auto fb = GgufFile::open(scratch_dir() / "bpe_pad.gguf");
  EXPECT_FALSE(fb->has("tokenizer.ggml.scores"));
  EXPECT_EQ(fb->get_array("tokenizer.ggml.token_type").items.size(), 8u);
}

// Streamed tensors beside in-memory ones, written by 3 threads in chunks smaller than a tensor, read back
// byte for byte; progress ends at the full size.
TEST(GgufWriterStreaming, ThreadsAndChunksWriteTheSameFile) {
  auto pattern = [](uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); };
  GgufWriter w;
  w.set_string("general.name", "streamed");
  std::vector<uint8_t> small(34 * 3);
  for (size_t i = 0; i < small.size(); ++i) small[i] = static_cast<uint8_t>(i);
  w.add_tensor("small", GgmlType::Q8_0, {96}, small.data(), small.size());
  w.add_tensor_fill("big", GgmlType::Q8_0, {32 * 1000, 7}, [&](uint64_t off, uint8_t* dst, size_t n) {
    for (size_t i = 0; i < n; ++i) dst[i] = pattern(off + i);
  });
  w.add_tensor("tail", GgmlType::F32, {3}, small.data(), 12);
  GgufWriteOptions opt;
  opt.threads = 3;
  opt.chunk_bytes = 4096 + 17;
  uint64_t last = 0, total = 0;
  int calls = 0;
  opt.progress = [&](uint64_t written, uint64_t of) {
    EXPECT_GT(written, last);
    last = written;
    total = of;
    ++calls;
  };
  const fs::path path = scratch_dir() / "streamed.gguf";
  w.write(path, opt);
  EXPECT_EQ(last, total);
  EXPECT_GT(calls, 50);
  EXPECT_EQ(fs::file_size(path), w.file_size());
  const auto f = GgufFile::open(path);
  const GgufTensor& big = f->tensor("big");
  const auto* bytes = static_cast<const uint8_t*>(big.data);
  bool same = true;
  for (uint64_t i = 0; i < 34 * 1000 * 7; ++i) same = same && bytes[i] == pattern(i);
  EXPECT_TRUE(same);
  EXPECT_EQ(std::memcmp(f->tensor("small").data, small.data(), small.size()), 0);
  EXPECT_EQ(std::memcmp(f->tensor("tail").data, small.data(), 12), 0);

  // The same writer, one thread, default chunks: the same bytes.
  const fs::path one = scratch_dir() / "one_thread.gguf";
  w.write(one);
  std::ifstream a(path, std::ios::binary), b(one, std::ios::binary);
  EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b), {}));
}

TEST(GgufWriterStreaming, CancelAndFailingFillLeaveNoFile) {
  const fs::path dir = scratch_dir() / "fail";
  fs::create_directories(dir);
  GgufWriter w;
  w.add_tensor_fill("t", GgmlType::F16, {1024, 64}, [](uint64_t off, uint8_t* dst, size_t n) {
    if (off >= 4096) fail("fill failed");
    std::memset(dst, 0, n);
  });
  GgufWriteOptions opt;
  opt.threads = 2;
  opt.chunk_bytes = 1024;
  EXPECT_EQ(error_of([&] { w.write(dir / "m.gguf", opt); }), "fill failed");
  std::atomic<bool> cancel{true};
  GgufWriter ok;
  ok.add_tensor_fill("t", GgmlType::F16, {1024}, [](uint64_t, uint8_t* dst, size_t n) { std::memset(dst, 0, n); });
  opt.cancel = &cancel;
  EXPECT_NE(error_of([&] { ok.write(dir / "m.gguf", opt); }).find("interrupted"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(dir)) << "no file and no temporary left behind";
}

}  // namespace
}  // namespace swrun
