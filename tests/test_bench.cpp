// `swrun bench` planning, statistics and rendering: llama-bench's test names and order, its mean and sample
// standard deviation, and the three output formats well-formed and carrying the same numbers.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/bench.h"
#include "engine/bench_report.h"
#include "runtime/gguf_writer.h"
#include "tests/error_of.h"

namespace swrun {
namespace {

using testing::error_of;

TEST(BenchPlan, TestNamesFollowLlamaBench) {
  EXPECT_EQ(test_name({512, 0, 0}), "pp512");
  EXPECT_EQ(test_name({0, 128, 0}), "tg128");
  EXPECT_EQ(test_name({0, 128, 32768}), "tg128 @ d32768");
  EXPECT_EQ(test_name({512, 0, 32768}), "pp512 @ d32768");
}

TEST(BenchPlan, DepthOuterThenPromptsThenGenerations) {
  const std::vector<BenchTest> tests = plan_tests({512, 8192}, {128}, {0, 32768});
  const std::vector<BenchTest> want = {{512, 0, 0},     {8192, 0, 0},     {0, 128, 0},
                                       {512, 0, 32768}, {8192, 0, 32768}, {0, 128, 32768}};
  EXPECT_EQ(tests, want);
}

TEST(BenchPlan, ZeroSizesAreSkipped) {
  EXPECT_EQ(plan_tests({0}, {16}, {0}), (std::vector<BenchTest>{{0, 16, 0}}));
  EXPECT_EQ(plan_tests({16}, {0}, {0}), (std::vector<BenchTest>{{16, 0, 0}}));
  EXPECT_NE(error_of([] { plan_tests({0}, {0}, {0, 64}); }).find("no test"), std::string::npos);
}

TEST(BenchPlan, CountLists) {
  EXPECT_EQ(parse_count_list("-p", "512,8192,32768"), (std::vector<int>{512, 8192, 32768}));
  EXPECT_EQ(parse_count_list("-d", "0"), (std::vector<int>{0}));
  for (const char* bad : {"12x", "", "1,,2", "4,-5", "512,", " 5", "99999999999", "1.5"}) {
    const std::string e = error_of([&] { parse_count_list("-p", bad); });
    EXPECT_NE(e.find("bad -p list '" + std::string(bad) + "'"), std::string::npos) << bad << ": " << e;
  }
}

TEST(BenchPlan, AttnSpecListsKeepPerLayerSpecsWhole) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_attn_specs("model"), V{"model"});
  EXPECT_EQ(split_attn_specs("dense,model,sliding:512"), (V{"dense", "model", "sliding:512"}));
  EXPECT_EQ(split_attn_specs("0-4:sliding:512,5:dense,6-:sliding:1024"), V{"0-4:sliding:512,5:dense,6-:sliding:1024"});
  EXPECT_EQ(split_attn_specs("dense,0-4:sliding:512,5-:dense,model"), (V{"dense", "0-4:sliding:512,5-:dense", "model"}));
  EXPECT_EQ(split_attn_specs("dense,"), (V{"dense", ""}));  // the empty spec then fails in AttnSpec::parse
}

// llama-bench's own formula, written out: sqrt(sum x^2 / (n-1) - mean^2 * n / (n-1)).
double llama_bench_stdev(const std::vector<double>& v) {
  double sum = 0, sq = 0;
  for (double x : v) sum += x, sq += x * x;
  const double n = static_cast<double>(v.size()), mean = sum / n;
  return std::sqrt(sq / (n - 1) - mean * mean * n / (n - 1));
}

TEST(BenchStats, MeanAndSampleStddev) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(mean_of(v), 2.5);
  EXPECT_NEAR(stddev_of(v), std::sqrt(5.0 / 3.0), 1e-12);
  const std::vector<double> ts = {812.5, 799.25, 830.0, 790.125, 805.5};
  EXPECT_NEAR(stddev_of(ts), llama_bench_stdev(ts), 1e-9);
  EXPECT_EQ(stddev_of({42.0}), 0);
  EXPECT_EQ(mean_of({}), 0);
}

TEST(BenchStats, TokensPerSecondPerRepetitionThenMean) {
  BenchRow row{{0, 128, 0}, "model", {1'000'000'000, 500'000'000}, 0};
  EXPECT_EQ(row.samples_ts(), (std::vector<double>{128, 256}));
  EXPECT_DOUBLE_EQ(row.avg_ts(), 192);  // the mean of rates, not tokens over total time (170.7)
  EXPECT_NEAR(row.stddev_ts(), std::sqrt(2.0) * 64, 1e-9);
}

BenchReport sample_report(const std::string& backend) {
  BenchReport r;
  r.model = {"models/m.gguf", "gemma3 270M Q4_K - Medium", 246587904, 268098176};
  r.backend = backend;
  r.device = backend == "CPU" ? "2 threads" : "NVIDIA H200";
  r.n_threads = backend == "CPU" ? 2 : 0;
  r.n_gpu_layers = backend == "CPU" ? 0 : 18;
  r.n_ubatch = 512;
  r.load_ms = 412.5;
  r.rows = {{{512, 0, 0}, "model", {100'000'000, 120'000'000}, 1000},
            {{0, 128, 0}, "model", {1'000'000'000, 1'000'000'000}, 2000},
            {{0, 128, 32768}, "0-4:sliding:512,5-:dense", {2'000'000'000, 1'600'000'000}, 3000}};
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> cells_of(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (char c : line.substr(1)) {
    if (c == '|') {
      cells.push_back(cell.substr(cell.find_first_not_of(' '), cell.find_last_not_of(' ') - cell.find_first_not_of(' ') + 1));
      cell.clear();
    } else {
      cell += c;
    }
  }
  return cells;
}

int display_width(const std::string& s) {
  int n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

TEST(BenchReport, MarkdownHasLlamaBenchColumnsAndOneRowPerTest) {
  const BenchReport r = sample_report("CPU");
  const std::vector<std::string> lines = lines_of(render(r, BenchFormat::Markdown));
  ASSERT_EQ(lines.size(), 2 + r.rows.size());
  EXPECT_EQ(cells_of(lines[0]),
            (std::vector<std::string>{"model", "size", "params", "backend", "threads", "attn", "test", "t/s"}));
  EXPECT_EQ(cells_of(lines[2]), (std::vector<std::string>{"gemma3 270M Q4_K - Medium", "235.16 MiB", "268.10 M", "CPU",
                                                          "2", "model", "pp512", "4693.33 ± 603.40"}));
  EXPECT_EQ(cells_of(lines[3])[7], "128.00 ± 0.00");
  EXPECT_EQ(cells_of(lines[4])[5], "0-4:sliding:512,5-:dense");
  EXPECT_EQ(cells_of(lines[4])[6], "tg128 @ d32768");
  // Numbers right-aligned with a ':' in the separator, text left-aligned; the short rows line up.
  EXPECT_EQ(lines[1].substr(0, 48), "| ------------------------------ | ---------: | ");
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(display_width(lines[i]), display_width(lines[0])) << lines[i];
}

TEST(BenchReport, MarkdownShowsNglOnTheGpuAndUbatchWhenGiven) {
  BenchReport r = sample_report("CUDA");
  r.ubatch_given = true;
  const std::vector<std::string> head = cells_of(lines_of(render(r, BenchFormat::Markdown))[0]);
  EXPECT_EQ(head, (std::vector<std::string>{"model", "size", "params", "backend", "ngl", "n_ubatch", "attn", "test",
                                            "t/s"}));
  EXPECT_EQ(cells_of(lines_of(render(r, BenchFormat::Markdown))[2])[4], "18");
}

TEST(BenchReport, JsonRowsCarryTheSamples) {
  const BenchReport r = sample_report("CUDA");
  const nlohmann::json j = nlohmann::json::parse(render(r, BenchFormat::Json));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), r.rows.size());
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const nlohmann::json& o = j[i];
    for (const char* key : {"n_prompt", "n_gen", "n_depth", "avg_ts", "stddev_ts", "attn", "backend", "model_filename",
                            "model_type", "model_size", "model_n_params", "samples_ts", "samples_ns",
                            "peak_memory_bytes", "test", "load_ms"})
      EXPECT_TRUE(o.contains(key)) << key;
    EXPECT_EQ(o["n_prompt"], r.rows[i].test.n_prompt);
    EXPECT_EQ(o["n_depth"], r.rows[i].test.n_depth);
    EXPECT_EQ(o["samples_ts"].get<std::vector<double>>(), r.rows[i].samples_ts());
    EXPECT_DOUBLE_EQ(o["avg_ts"].get<double>(), r.rows[i].avg_ts());
    EXPECT_DOUBLE_EQ(o["stddev_ts"].get<double>(), r.rows[i].stddev_ts());
    EXPECT_EQ(o["peak_memory_bytes"], r.rows[i].peak_memory_bytes);
    EXPECT_EQ(o["model_n_params"], 268098176u);
    EXPECT_EQ(o["backend"], "CUDA");
    EXPECT_DOUBLE_EQ(o["load_ms"].get<double>(), 412.5);
  }
  EXPECT_EQ(j[2]["test"], "tg128 @ d32768");
  EXPECT_EQ(j[2]["attn"], "0-4:sliding:512,5-:dense");
}

// Splits one CSV line of quoted fields ("a","b ""c""") into its values.
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    EXPECT_EQ(line[i], '"') << line;
    std::string v;
    for (++i; i < line.size(); ++i) {
      if (line[i] == '"' && i + 1 < line.size() && line[i + 1] == '"') v += '"', ++i;
      else if (line[i] == '"') break;
      else v += line[i];
    }
    out.push_back(v);
    i += 2;  // closing quote and comma
  }
  return out;
}

TEST(BenchReport, CsvIsAHeaderAndOneQuotedRecordPerRow) {
  BenchReport r = sample_report("CPU");
  r.model.filename = "dir/my \"odd\" model.gguf";
  const std::vector<std::string> lines = lines_of(render(r, BenchFormat::Csv));
  ASSERT_EQ(lines.size(), 1 + r.rows.size());
  std::vector<std::string> header;
  std::stringstream ss(lines[0]);
  for (std::string f; std::getline(ss, f, ',');) header.push_back(f);
  const nlohmann::json j = nlohmann::json::parse(render(r, BenchFormat::Json));
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const std::vector<std::string> fields = csv_fields(lines[i + 1]);
    ASSERT_EQ(fields.size(), header.size()) << lines[i + 1];
    std::map<std::string, std::string> row;
    for (size_t k = 0; k < header.size(); ++k) row[header[k]] = fields[k];
    EXPECT_EQ(row["model_filename"], r.model.filename);
    EXPECT_EQ(row["test"], test_name(r.rows[i].test));
    EXPECT_EQ(row["attn"], r.rows[i].attn);
    EXPECT_EQ(std::stoi(row["n_gen"]), r.rows[i].test.n_gen);
    EXPECT_NEAR(std::stod(row["avg_ts"]), j[i]["avg_ts"].get<double>(), 1e-6);
    EXPECT_NEAR(std::stod(row["stddev_ts"]), j[i]["stddev_ts"].get<double>(), 1e-6);
  }
}

TEST(BenchReport, FormatNames) {
  EXPECT_EQ(parse_bench_format("md"), BenchFormat::Markdown);
  EXPECT_EQ(parse_bench_format("csv"), BenchFormat::Csv);
  EXPECT_EQ(parse_bench_format("json"), BenchFormat::Json);
  EXPECT_NE(error_of([] { parse_bench_format("xml"); }).find("'xml'"), std::string::npos);
}

TEST(BenchModel, DescribedAsLlamaBenchDoes) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("bench_model_" + std::to_string(getpid()) + ".gguf")).string();
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("general.file_type", 15);
  std::vector<float> a(256 * 4, 0.5f), b(32, 1.0f);
  w.add_tensor_f32("a", GgmlType::Q4_K, {256, 4}, a.data());  // 4 blocks of 144 bytes
  w.add_tensor_f32("b", GgmlType::F32, {32}, b.data());       // 128 bytes
  w.write(path);
  BenchModel m = describe_model(*GgufFile::open(path));
  EXPECT_EQ(m.type, "llama 1K Q4_K - Medium");  // no size label: the parameter count stands in
  EXPECT_EQ(m.n_params, 256u * 4 + 32);
  EXPECT_EQ(m.size_bytes, 4u * 144 + 128);
  EXPECT_EQ(m.filename, path);

  w.set_string("general.size_label", "270M");
  w.write(path);
  EXPECT_EQ(describe_model(*GgufFile::open(path)).type, "llama 270M Q4_K - Medium");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace swrun
