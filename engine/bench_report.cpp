#include "engine/bench_report.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "runtime/common.h"

namespace swrun {

BenchFormat parse_bench_format(const std::string& name) {
  if (name == "md") return BenchFormat::Markdown;
  if (name == "csv") return BenchFormat::Csv;
  if (name == "json") return BenchFormat::Json;
  fail("bad -o format '" + name + "' (expected md, csv or json)");
}

namespace {

std::string printf_string(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

// llama-bench's size and params columns: "241.39 MiB", "268.10 M".
std::string size_text(uint64_t bytes) {
  if (bytes < (1ULL << 30)) return printf_string("%.2f MiB", bytes / 1024.0 / 1024.0);
  return printf_string("%.2f GiB", bytes / 1024.0 / 1024.0 / 1024.0);
}
std::string params_text(uint64_t n) {
  if (n < 1000000000ULL) return printf_string("%.2f M", n / 1e6);
  return printf_string("%.2f B", n / 1e9);
}

std::string ts_text(const BenchRow& r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f \u00b1 %.2f", r.avg_ts(), r.stddev_ts());
  return buf;
}

// Display width in characters, counting a multi-byte UTF-8 character ("±") once.
int display_width(const std::string& s) {
  int n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// A column as llama-bench lays it out: |width| characters, right-aligned when width > 0, left-aligned otherwise.
struct Column {
  std::string title;
  int width;
  std::string (*value)(const BenchReport&, const BenchRow&);
};

std::string pad(const std::string& s, int width) {
  const int fill = std::max(0, std::abs(width) - display_width(s));
  return width > 0 ? std::string(fill, ' ') + s : s + std::string(fill, ' ');
}

std::vector<Column> markdown_columns(const BenchReport& r) {
  std::vector<Column> cols = {
      {"model", -30, [](const BenchReport& b, const BenchRow&) { return b.model.type; }},
      {"size", 10, [](const BenchReport& b, const BenchRow&) { return size_text(b.model.size_bytes); }},
      {"params", 10, [](const BenchReport& b, const BenchRow&) { return params_text(b.model.n_params); }},
      {"backend", -10, [](const BenchReport& b, const BenchRow&) { return b.backend; }},
  };
  if (r.backend == "CPU")
    cols.push_back({"threads", 7, [](const BenchReport& b, const BenchRow&) { return std::to_string(b.n_threads); }});
  else
    cols.push_back({"ngl", 3, [](const BenchReport& b, const BenchRow&) { return std::to_string(b.n_gpu_layers); }});
  if (r.ubatch_given)
    cols.push_back({"n_ubatch", 8, [](const BenchReport& b, const BenchRow&) { return std::to_string(b.n_ubatch); }});
  cols.push_back({"attn", -12, [](const BenchReport&, const BenchRow& row) { return row.attn; }});
  cols.push_back({"test", 15, [](const BenchReport&, const BenchRow& row) { return test_name(row.test); }});
  cols.push_back({"t/s", 20, [](const BenchReport&, const BenchRow& row) { return ts_text(row); }});
  return cols;
}

std::string render_markdown(const BenchReport& r) {
  const std::vector<Column> cols = markdown_columns(r);
  std::string out = "|";
  for (const Column& c : cols) out += " " + pad(c.title, c.width) + " |";
  out += "\n|";
  for (const Column& c : cols) out += " " + std::string(std::abs(c.width) - 1, '-') + (c.width > 0 ? ":" : "-") + " |";
  out += "\n";
  for (const BenchRow& row : r.rows) {
    out += "|";
    for (const Column& c : cols) out += " " + pad(c.value(r, row), c.width) + " |";
    out += "\n";
  }
  return out;
}

// One object per row; key order is the CSV's column order.
nlohmann::ordered_json row_json(const BenchReport& r, const BenchRow& row) {
  const std::vector<double> ts = row.samples_ts();
  nlohmann::ordered_json j;
  j["model_filename"] = r.model.filename;
  j["model_type"] = r.model.type;
  j["model_size"] = r.model.size_bytes;
  j["model_n_params"] = r.model.n_params;
  j["backend"] = r.backend;
  j["device"] = r.device;
  j["n_threads"] = r.n_threads;
  j["n_gpu_layers"] = r.n_gpu_layers;
  j["n_ubatch"] = r.n_ubatch;
  j["use_graph"] = r.use_graph;
  j["load_ms"] = r.load_ms;
  j["attn"] = row.attn;
  j["test"] = test_name(row.test);
  j["n_prompt"] = row.test.n_prompt;
  j["n_gen"] = row.test.n_gen;
  j["n_depth"] = row.test.n_depth;
  j["repetitions"] = row.samples_ns.size();
  const std::vector<double> ns(row.samples_ns.begin(), row.samples_ns.end());
  j["avg_ns"] = std::llround(mean_of(ns));
  j["stddev_ns"] = std::llround(stddev_of(ns));
  j["avg_ts"] = mean_of(ts);
  j["stddev_ts"] = stddev_of(ts);
  j["peak_memory_bytes"] = row.peak_memory_bytes;
  j["samples_ns"] = row.samples_ns;
  j["samples_ts"] = ts;
  return j;
}

// CSV as llama-bench writes it: a header of field names, every value quoted. The per-repetition samples are left
// to the JSON, as llama-bench does.
std::string render_csv(const BenchReport& r) {
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  std::string out;
  bool header = true;
  for (const BenchRow& row : r.rows) {
    nlohmann::ordered_json j = row_json(r, row);
    j.erase("samples_ns");
    j.erase("samples_ts");
    std::string names, values;
    for (const auto& [key, value] : j.items()) {
      names += (names.empty() ? "" : ",") + key;
      const std::string text = value.is_string() ? value.get<std::string>()
                               : value.is_number_float() ? printf_string("%.6f", value.get<double>())
                                                         : value.dump();
      values += (values.empty() ? "" : ",") + quote(text);
    }
    if (header) out += names + "\n";
    header = false;
    out += values + "\n";
  }
  return out;
}

}  // namespace

std::string render(const BenchReport& report, BenchFormat format) {
  switch (format) {
    case BenchFormat::Markdown: return render_markdown(report);
    case BenchFormat::Csv: return render_csv(report);
    case BenchFormat::Json: {
      nlohmann::ordered_json rows = nlohmann::ordered_json::array();
      for (const BenchRow& row : report.rows) rows.push_back(row_json(report, row));
      return rows.dump(2) + "\n";
    }
  }
  fail("render: unknown bench format");
}

}  // namespace swrun
