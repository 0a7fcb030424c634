// Profiler bookkeeping and report rendering: every format well-formed and carrying the same, consistent numbers.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "runtime/common.h"
#include "runtime/profile.h"
#include "engine/report.h"

namespace swrun {
namespace {

using nlohmann::json;

struct OpDef {
  const char* name;
  OpKind kind;
};
// The ops of one decoder layer as models/gemma3.cpp brackets them.
const std::vector<OpDef> kLayerOps = {
    {"attn_norm", OpKind::Norm},   {"attn_q", OpKind::Matmul},        {"attn_k", OpKind::Matmul},
    {"attn_v", OpKind::Matmul},    {"q_norm", OpKind::Norm},          {"k_norm", OpKind::Norm},
    {"rope_q", OpKind::Rope},      {"rope_k", OpKind::Rope},          {"attention", OpKind::Attention},
    {"attn_out", OpKind::Matmul},  {"post_attn_norm", OpKind::Norm},  {"attn_residual", OpKind::Add},
    {"ffn_norm", OpKind::Norm},    {"ffn_gate", OpKind::Matmul},      {"ffn_up", OpKind::Matmul},
    {"ffn_act", OpKind::Act},      {"ffn_down", OpKind::Matmul},      {"post_ffn_norm", OpKind::Norm},
    {"ffn_residual", OpKind::Add}};

std::vector<AttnPolicy> gemma_like_policies(int n_layers) {
  std::vector<AttnPolicy> p;
  for (int l = 0; l < n_layers; ++l) p.push_back((l + 1) % 6 == 0 ? AttnPolicy::dense() : AttnPolicy::sliding(512));
  return p;
}

// Feeds `runs` timed runs of `chunks` chunks each with random op times; returns the expected per-op medians
// keyed by "row/name", computed here independently of the profiler.
struct Fed {
  Profile profile;
  std::map<std::string, double> expected_median;
};

Fed feed(int n_layers, int runs, int chunks, std::mt19937& rng, RunInfo info = {}) {
  std::uniform_real_distribution<double> ms(0.01, 2.0);
  Profiler prof(gemma_like_policies(n_layers));
  std::map<std::string, std::vector<double>> per_run;
  auto add = [&](int layer, OpKind kind, const char* name, const std::string& row, std::map<std::string, double>& run) {
    const double t = ms(rng);
    prof.add(layer, kind, name, t);
    run[row + "/" + name] += t;
  };
  // A warm-up run that must not count.
  for (int l = 0; l < n_layers; ++l) prof.add(l, OpKind::Attention, "attention", 1e6);
  prof.discard_run();
  std::vector<double> wall;
  for (int r = 0; r < runs; ++r) {
    std::map<std::string, double> run;
    for (int c = 0; c < chunks; ++c) {
      add(-1, OpKind::Embed, "embed", "embed", run);
      for (int l = 0; l < n_layers; ++l)
        for (const OpDef& op : kLayerOps) add(l, op.kind, op.name, std::to_string(l), run);
      add(n_layers, OpKind::Norm, "output_norm", "output", run);
      add(n_layers, OpKind::Logits, "logits", "output", run);
    }
    for (auto& [k, v] : run) per_run[k].push_back(v);
    wall.push_back(100.0 + 10 * r);
    prof.end_run(wall.back());
  }
  info.n_tokens = info.n_tokens ? info.n_tokens : 4096;
  Fed f{prof.finish(info), {}};
  for (auto& [k, v] : per_run) {
    std::sort(v.begin(), v.end());
    f.expected_median[k] = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
  return f;
}

RunInfo sample_info(const std::string& spec) {
  RunInfo i;
  i.model = "gemma-3-270m";
  i.backend = "cuda";
  i.device = "NVIDIA H100 80GB HBM3";
  i.attn_spec = spec;
  i.n_tokens = 32768;
  i.ubatch = 512;
  i.chunks = 64;
  i.ttft_ms = 123.5;
  i.peak_memory_bytes = size_t{3} << 30;
  i.kv_bytes_dense = size_t{3} * 32768 * 2 * 256 * 4;
  i.kv_bytes_ring = size_t{15} * 1024 * 2 * 256 * 4;
  return i;
}

// Splits CSV text into records of fields (quoted fields may hold commas and doubled quotes).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field), field.clear();
    } else if (c == '\n') {
      row.push_back(field), field.clear();
      rows.push_back(row), row.clear();
    } else {
      field += c;
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quote";
  EXPECT_TRUE(field.empty() && row.empty()) << "CSV does not end with a newline";
  return rows;
}

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("swrun_test_report_" + std::to_string(getpid()) + "_" + name);
}

// Parses the SVG with a real XML parser (Python's xml.etree) and returns what the checks need.
json parse_svg(const std::string& svg) {
  const auto svg_path = temp_file("chart.svg"), py_path = temp_file("parse_svg.py");
  write_report(svg_path.string(), svg);
  write_report(py_path.string(), R"PY(
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = '{http://www.w3.org/2000/svg}'
rects = list(root.iter(ns + 'rect'))
segs = [dict(row=e.get('data-row'), run=e.get('data-run'), category=e.get('data-category'),
             ms=float(e.get('data-ms')), height=float(e.get('height')), y=float(e.get('y')))
        for e in rects if e.get('class') == 'seg']
texts = [''.join(e.itertext()) for e in root.iter(ns + 'text')]
ticks = [float(''.join(e.itertext())) for e in root.iter(ns + 'text') if e.get('class') == 'tick']
print(json.dumps(dict(root=root.tag, segs=segs, texts=texts, ticks=ticks,
                      dense=sum(1 for e in rects if e.get('class') == 'dense-mark'))))
)PY");
  const std::string cmd = "python3 " + py_path.string() + " " + svg_path.string() + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (pipe && fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = pipe ? pclose(pipe) : -1;
  std::filesystem::remove(svg_path);
  std::filesystem::remove(py_path);
  if (status != 0) {
    ADD_FAILURE() << "the SVG does not parse as XML: " << out;
    return json::object();
  }
  return json::parse(out);
}

bool python_available() { return std::system("python3 -c 'import xml.etree.ElementTree' >/dev/null 2>&1") == 0; }

// ---------------------------------------------------------------------------------------------------------------

TEST(Categorize, OpsLandInTheirColumns) {
  EXPECT_EQ(categorize(OpKind::Attention, "attention"), OpCategory::Attention);
  for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_out"})
    EXPECT_EQ(categorize(OpKind::Matmul, n), OpCategory::Projection) << n;
  for (const char* n : {"ffn", "ffn_gate", "ffn_up", "ffn_down"}) EXPECT_EQ(categorize(OpKind::Matmul, n), OpCategory::Mlp) << n;
  EXPECT_EQ(categorize(OpKind::Act, "ffn_act"), OpCategory::Mlp);
  EXPECT_EQ(categorize(OpKind::Norm, "ffn_norm"), OpCategory::Other);  // a norm is "other" even inside the MLP
  for (OpKind k : {OpKind::Norm, OpKind::Rope, OpKind::Add, OpKind::Embed, OpKind::Logits, OpKind::Other})
    EXPECT_EQ(categorize(k, "x"), OpCategory::Other) << op_kind_name(k);
}

TEST(Median, OddEvenEmpty) {
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_EQ(median({7}), 7);
  EXPECT_EQ(median({}), 0);
}

TEST(Profiler, PerOpMediansOverRunsAndRowsSumToTheirOps) {
  std::mt19937 rng(std::random_device{}());
  for (int runs : {1, 2, 3, 4}) {
    const Fed f = feed(6, runs, 3, rng);
    const Profile& p = f.profile;
    ASSERT_EQ(p.rows.size(), 8u);
    EXPECT_EQ(p.rows.front().label, "embed");
    EXPECT_EQ(p.rows.back().label, "output");
    EXPECT_FALSE(p.rows.front().has_policy);
    EXPECT_EQ(p.repeat(), runs);
    ASSERT_EQ(p.ops.size(), f.expected_median.size());
    std::map<std::string, std::array<double, kOpCategoryCount>> by_row;
    for (const OpTiming& o : p.ops) {
      const std::string key = o.row + "/" + o.name;
      ASSERT_TRUE(f.expected_median.count(key)) << key;
      EXPECT_DOUBLE_EQ(o.ms, f.expected_median.at(key)) << key;
      EXPECT_EQ(o.category, categorize(o.kind, o.name));
      by_row[o.row][static_cast<size_t>(o.category)] += o.ms;
    }
    for (const LayerTiming& r : p.rows)
      for (OpCategory c : kOpCategories)
        EXPECT_NEAR(r.category_ms(c), by_row[r.label][static_cast<size_t>(c)], 1e-12) << r.label;
    for (int l = 0; l < 6; ++l) {
      EXPECT_EQ(p.rows[l + 1].layer, l);
      EXPECT_EQ(p.rows[l + 1].dense(), l == 5);
    }
    EXPECT_EQ(p.dense_layers(), 1);
    EXPECT_EQ(p.windowed_layers(), 5);
  }
}

TEST(Profiler, OpFirstSeenInALaterRunCountsZeroBefore) {
  Profiler prof({AttnPolicy::dense()});
  prof.add(0, OpKind::Attention, "attention", 1.0);
  prof.end_run(10);
  prof.add(0, OpKind::Attention, "attention", 3.0);
  prof.add(0, OpKind::Norm, "late_norm", 4.0);
  prof.end_run(20);
  prof.add(0, OpKind::Attention, "attention", 2.0);
  prof.add(0, OpKind::Norm, "late_norm", 6.0);
  prof.end_run(30);
  const Profile p = prof.finish({});
  ASSERT_EQ(p.ops.size(), 2u);
  EXPECT_EQ(p.ops[0].ms, 2.0);
  EXPECT_EQ(p.ops[1].ms, 4.0);  // median of 0, 4, 6
  EXPECT_EQ(p.prefill_ms(), 20.0);
  EXPECT_EQ(p.op_ms_runs, (std::vector<double>{1.0, 7.0, 8.0}));
}

TEST(Profiler, NoCompletedRunIsAnError) {
  Profiler prof({AttnPolicy::dense()});
  prof.add(0, OpKind::Attention, "attention", 1.0);
  prof.discard_run();
  EXPECT_THROW(prof.finish({}), Error);
}

TEST(HostRangeTimer, DetachedRecordsNothing) {
  Profiler prof({AttnPolicy::dense()});
  HostRangeTimer timer;
  timer.push("attention", 0, OpKind::Attention);
  timer.pop();
  timer.pop();  // unbalanced, but nothing is tracked while detached
  prof.end_run(1);
  EXPECT_TRUE(prof.finish({}).ops.empty());
}

TEST(HostRangeTimer, NestedRangesChargeExclusiveTime) {
  Profiler prof({AttnPolicy::dense()});
  HostRangeTimer timer;
  timer.attach(&prof);
  const auto start = std::chrono::steady_clock::now();
  timer.push("layer", 0, OpKind::Other);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  timer.push("attention", 0, OpKind::Attention);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  timer.pop();
  timer.pop();
  const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  prof.end_run(wall);
  const Profile p = prof.finish({});
  const LayerTiming& row = p.rows[1];
  EXPECT_GE(row.category_ms(OpCategory::Attention), 30.0);
  EXPECT_GE(row.category_ms(OpCategory::Other), 5.0);
  EXPECT_LT(row.category_ms(OpCategory::Other), 30.0);  // the inner range is not counted twice
  EXPECT_LE(row.total_ms(), wall);
  EXPECT_GT(row.total_ms(), wall - 5.0);  // only the moments outside the outer range are missing
  EXPECT_THROW(timer.pop(), Error);  // attached: a pop without a push is a bug worth hearing about
}

// ---------------------------------------------------------------------------------------------------------------

TEST(ProfileReport, JsonIsConsistentWithItself) {
  std::mt19937 rng(std::random_device{}());
  const Profile p = feed(18, 3, 4, rng, sample_info("model")).profile;
  const json j = json::parse(render(p, ReportFormat::Json));
  EXPECT_EQ(j["kind"], "profile");
  ASSERT_EQ(j["rows"].size(), 20u);
  double total = 0, share = 0;
  std::array<double, kOpCategoryCount> cat{};
  for (const json& r : j["rows"]) {
    double sum = 0;
    for (OpCategory c : kOpCategories) {
      const double v = r[std::string(category_name(c)) + "_ms"];
      sum += v;
      cat[static_cast<size_t>(c)] += v;
    }
    EXPECT_NEAR(r["total_ms"].get<double>(), sum, 1e-9);
    total += r["total_ms"].get<double>();
    share += r["share_pct"].get<double>();
    EXPECT_NEAR(r["share_pct"].get<double>(), 100.0 * r["total_ms"].get<double>() / p.op_total_ms(), 1e-9);
    if (r["policy"].is_null()) {
      EXPECT_FALSE(r["dense"].get<bool>());
    } else {
      const int layer = r["layer"];
      EXPECT_EQ(r["dense"].get<bool>(), (layer + 1) % 6 == 0);
      EXPECT_EQ(r["policy"], (layer + 1) % 6 == 0 ? "dense" : "sliding:512");
      EXPECT_EQ(r["window_left"], (layer + 1) % 6 == 0 ? json(nullptr) : json(511));
    }
  }
  EXPECT_NEAR(total, j["totals"]["total_ms"].get<double>(), 1e-9);
  EXPECT_NEAR(share, 100.0, 1e-9);
  for (OpCategory c : kOpCategories)
    EXPECT_NEAR(cat[static_cast<size_t>(c)], j["totals"][std::string(category_name(c)) + "_ms"].get<double>(), 1e-9);
  double ops = 0;
  for (const json& o : j["ops"]) ops += o["ms"].get<double>();
  EXPECT_NEAR(ops, total, 1e-9);
  EXPECT_EQ(j["prefill_ms_runs"].size(), 3u);
  EXPECT_EQ(j["prefill_ms"], 110.0);
  EXPECT_NEAR(j["tokens_per_s"].get<double>(), 32768 / 0.110, 1e-6);
  EXPECT_EQ(j["kv_cache_bytes"]["total"].get<size_t>(),
            j["kv_cache_bytes"]["dense"].get<size_t>() + j["kv_cache_bytes"]["ring"].get<size_t>());
  EXPECT_EQ(j["dense_layers"], 3);
  EXPECT_EQ(j["windowed_layers"], 15);
  EXPECT_EQ(j["device"], "NVIDIA H100 80GB HBM3");
}

TEST(ProfileReport, CsvHasOneShapeAndTheJsonNumbers) {
  std::mt19937 rng(std::random_device{}());
  RunInfo info = sample_info("0-4:sliding:512,5:dense");
  const Profile p = feed(6, 3, 2, rng, info).profile;
  const json j = profile_json(p);
  const auto rows = parse_csv(render(p, ReportFormat::Csv));
  ASSERT_EQ(rows.size(), p.rows.size() + 2);  // header, rows, total
  const auto& header = rows[0];
  for (const auto& r : rows) ASSERT_EQ(r.size(), header.size());
  auto col = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << name;
    return static_cast<size_t>(it - header.begin());
  };
  for (size_t i = 0; i < p.rows.size(); ++i) {
    const auto& r = rows[i + 1];
    const json& jr = j["rows"][i];
    EXPECT_EQ(r[col("label")], jr["label"]);
    EXPECT_EQ(r[col("dense")], jr["dense"].get<bool>() ? "1" : "0");
    for (const char* name : {"attention_ms", "projections_ms", "mlp_ms", "other_ms", "total_ms", "share_pct"})
      EXPECT_EQ(std::stod(r[col(name)]), jr[name].get<double>()) << jr["label"] << " " << name;  // exact round trip
  }
  EXPECT_EQ(rows.back()[col("label")], "total");
  EXPECT_EQ(std::stod(rows.back()[col("total_ms")]), j["totals"]["total_ms"].get<double>());
  EXPECT_EQ(std::stod(rows.back()[col("share_pct")]), 100.0);
}

TEST(ProfileReport, CsvWindowColumnsOfALocalWindow) {
  Profiler prof({AttnPolicy{AttnKind::Sliding, 3, 2}});
  prof.add(0, OpKind::Attention, "attention", 1.0);
  prof.end_run(1.0);
  const auto rows = parse_csv(render(prof.finish({}), ReportFormat::Csv));
  ASSERT_EQ(rows.size(), 5u);  // header, embed, layer 0, output, total
  EXPECT_EQ(rows[2][2], "local:3/2");
  EXPECT_EQ(rows[2][3], "3");
  EXPECT_EQ(rows[2][4], "2");
  EXPECT_EQ(rows[2][5], "0");
}

TEST(ProfileReport, TableIsAlignedAndMarksDenseLayers) {
  std::mt19937 rng(std::random_device{}());
  const Profile p = feed(12, 3, 2, rng, sample_info("model")).profile;
  const std::string table = render(p, ReportFormat::Table);
  std::istringstream in(table);
  std::string line;
  std::vector<std::string> block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.rfind("layer", 0) == 0) inside = true;
    if (inside && line.rfind("* dense", 0) == 0) break;
    if (inside) block.push_back(line);
  }
  ASSERT_EQ(block.size(), p.rows.size() + 2);  // header, rows, total
  // Right-aligned last column: every line of the block ends at the same column.
  for (const std::string& l : block) EXPECT_EQ(l.size(), block[0].size()) << "'" << l << "'";
  int marked = 0;
  for (size_t i = 0; i < p.rows.size(); ++i) {
    const std::string& l = block[i + 1];
    const bool mark = l.rfind(p.rows[i].label + " *", 0) == 0;
    EXPECT_EQ(mark, p.rows[i].dense()) << l;
    marked += mark;
    char total[32];
    snprintf(total, sizeof total, "%.3f", p.rows[i].total_ms());
    EXPECT_NE(l.find(total), std::string::npos) << l;
  }
  EXPECT_EQ(marked, 2);
  EXPECT_NE(table.find("time to first token"), std::string::npos);
  EXPECT_NE(table.find("123.500 ms"), std::string::npos);
  EXPECT_NE(table.find("3.00 GiB"), std::string::npos);
  EXPECT_NE(table.find("median of 3 runs"), std::string::npos);
}

TEST(ProfileReport, SvgParsesAndItsBarsCarryTheNumbers) {
  if (!python_available()) GTEST_SKIP() << "python3 with xml.etree is needed to parse the SVG";
  std::mt19937 rng(std::random_device{}());
  RunInfo info = sample_info("model");
  info.model = "odd <name> & \"quotes\" 'here'";
  const Profile p = feed(18, 3, 2, rng, info).profile;
  const json s = parse_svg(render(p, ReportFormat::Svg));
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s["root"], "{http://www.w3.org/2000/svg}svg");
  ASSERT_EQ(s["segs"].size(), p.rows.size() * kOpCategoryCount);
  EXPECT_EQ(s["dense"], p.dense_layers());
  std::map<std::string, double> row_sum;
  double px_per_ms = 0;
  for (const json& g : s["segs"]) {
    row_sum[g["row"]] += g["ms"].get<double>();
    if (g["ms"].get<double>() > 0.05) {
      const double ratio = g["height"].get<double>() / g["ms"].get<double>();
      if (px_per_ms == 0) px_per_ms = ratio;
      EXPECT_NEAR(ratio, px_per_ms, px_per_ms * 0.02) << "bar heights are not proportional to time";
    }
  }
  for (const LayerTiming& r : p.rows) EXPECT_NEAR(row_sum[r.label], r.total_ms(), 1e-9) << r.label;
  // The axis reaches past the tallest bar, with evenly spaced ticks from 0.
  const auto ticks = s["ticks"].get<std::vector<double>>();
  ASSERT_GE(ticks.size(), 3u);
  EXPECT_EQ(ticks[0], 0.0);
  double tallest = 0;
  for (const LayerTiming& r : p.rows) tallest = std::max(tallest, r.total_ms());
  EXPECT_GE(ticks.back(), tallest);
  for (size_t i = 2; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i] - ticks[i - 1], ticks[1] - ticks[0], 1e-9);
  bool title_found = false;
  for (const json& t : s["texts"])
    title_found |= t.get<std::string>().find("odd <name> & \"quotes\" 'here'") != std::string::npos;
  EXPECT_TRUE(title_found) << "the model name did not survive escaping";
}

TEST(ProfileReport, AllZeroProfileRendersWithoutNan) {
  Profiler prof(gemma_like_policies(6));
  prof.end_run(0);
  const Profile p = prof.finish({});
  for (ReportFormat f : {ReportFormat::Table, ReportFormat::Json, ReportFormat::Csv, ReportFormat::Svg}) {
    const std::string text = render(p, f);
    EXPECT_EQ(text.find("nan"), std::string::npos) << text;
    EXPECT_EQ(text.find("inf"), std::string::npos) << text;
  }
  if (python_available()) {
    EXPECT_EQ(parse_svg(render(p, ReportFormat::Svg))["segs"].size(), 8u * kOpCategoryCount);
  }
}

// ---------------------------------------------------------------------------------------------------------------

AbReport sample_ab(std::mt19937& rng) {
  AbReport r;
  r.a = feed(12, 3, 2, rng, sample_info("dense")).profile;
  for (LayerTiming& row : r.a.rows)
    if (row.has_policy) row.policy = AttnPolicy::dense();
  r.b = feed(12, 3, 2, rng, sample_info("model")).profile;
  r.b.prefill_ms_runs = {50, 55, 60};
  r.quality.positions = 100;
  r.quality.kl_mean = 0.0123;
  r.quality.kl_max = 0.5;
  r.quality.kl_max_position = 42;
  r.quality.top1_agree = 97;
  r.quality.scored_tokens = 99;
  r.quality.perplexity_a = 12.5;
  r.quality.perplexity_b = 12.75;
  r.quality.greedy_a = {1, 2, 3, 4};
  r.quality.greedy_b = {1, 2, 9, 4};
  r.quality.greedy_text_a = "Paris, \"the\" city\n";
  r.quality.greedy_text_b = std::string("Paris \xff<bad utf-8>");
  return r;
}

TEST(AbReport, JsonSpeedupsAndQuality) {
  std::mt19937 rng(std::random_device{}());
  const AbReport r = sample_ab(rng);
  const json j = json::parse(render(r, ReportFormat::Json));
  EXPECT_EQ(j["kind"], "ab");
  ASSERT_EQ(j["rows"].size(), r.a.rows.size());
  for (size_t i = 0; i < r.a.rows.size(); ++i) {
    const json& row = j["rows"][i];
    EXPECT_EQ(row["a_total_ms"].get<double>(), j["a"]["rows"][i]["total_ms"].get<double>());
    EXPECT_EQ(row["b_total_ms"].get<double>(), j["b"]["rows"][i]["total_ms"].get<double>());
    EXPECT_NEAR(row["speedup"].get<double>(), row["a_total_ms"].get<double>() / row["b_total_ms"].get<double>(), 1e-12);
    if (row["b_attention_ms"].get<double>() == 0)  // the embed and output rows run no attention
      EXPECT_TRUE(row["attention_speedup"].is_null());
    else
      EXPECT_NEAR(row["attention_speedup"].get<double>(),
                  row["a_attention_ms"].get<double>() / row["b_attention_ms"].get<double>(), 1e-12);
  }
  EXPECT_NEAR(j["totals"]["prefill_speedup"].get<double>(), 110.0 / 55.0, 1e-12);
  EXPECT_EQ(j["quality"]["first_divergence"], 2);
  EXPECT_EQ(j["quality"]["top1_agreement"], 0.97);
  EXPECT_EQ(j["quality"]["kl_max_position"], 42);
  EXPECT_EQ(j["quality"]["greedy_text_a"], "Paris, \"the\" city\n");
  EXPECT_EQ(j["a"]["rows"][1]["policy"], "dense");
}

TEST(AbReport, CsvTableAndSvgAgree) {
  std::mt19937 rng(std::random_device{}());
  const AbReport r = sample_ab(rng);
  const json j = ab_json(r);
  const auto rows = parse_csv(render(r, ReportFormat::Csv));
  ASSERT_EQ(rows.size(), r.a.rows.size() + 2);
  for (const auto& row : rows) ASSERT_EQ(row.size(), rows[0].size());
  ASSERT_EQ(rows[0][8], "speedup");
  for (size_t i = 0; i < r.a.rows.size(); ++i) {
    EXPECT_EQ(rows[i + 1][0], j["rows"][i]["label"]);
    EXPECT_EQ(std::stod(rows[i + 1][8]), j["rows"][i]["speedup"].get<double>());
  }
  const std::string table = render(r, ReportFormat::Table);
  for (const char* s : {"KL(A||B) mean", "0.0123 nats", "at position 42", "97.00 % (97/100)", "12.5000", "12.7500",
                        "first divergence at generated token 2 of 4", "2.00x speed", "\"Paris, \"the\" city\\n\""})
    EXPECT_NE(table.find(s), std::string::npos) << s << "\n" << table;
  if (!python_available()) GTEST_SKIP() << "python3 with xml.etree is needed to parse the SVG";
  const json s = parse_svg(render(r, ReportFormat::Svg));
  ASSERT_EQ(s["segs"].size(), r.a.rows.size() * 4);  // A and B, attention and the rest
  std::map<std::string, double> a_sum, b_sum;
  for (const json& g : s["segs"]) (g["run"] == "A" ? a_sum : b_sum)[g["row"]] += g["ms"].get<double>();
  for (size_t i = 0; i < r.a.rows.size(); ++i) {
    EXPECT_NEAR(a_sum[r.a.rows[i].label], r.a.rows[i].total_ms(), 1e-9);
    EXPECT_NEAR(b_sum[r.b.rows[i].label], r.b.rows[i].total_ms(), 1e-9);
  }
  EXPECT_EQ(s["dense"], r.a.dense_layers() + r.b.dense_layers());
}

TEST(AbReport, MismatchedRowsAreAnError) {
  std::mt19937 rng(std::random_device{}());
  AbReport r = sample_ab(rng);
  r.b = feed(6, 1, 1, rng).profile;
  EXPECT_THROW(render(r, ReportFormat::Table), Error);
  EXPECT_THROW(ab_json(r), Error);
}

TEST(WriteReport, UnwritablePathIsAnError) {
  try {
    write_report("/nonexistent-dir/x/report.json", "{}");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x/report.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace swrun
