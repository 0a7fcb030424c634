#include "engine/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "runtime/common.h"

namespace swrun {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out += ' ';
        else out += c;
    }
  }
  return out;
}

namespace {

using nlohmann::json;

std::string printf_string(const char* fmt, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string ms_text(double ms) { return printf_string("%.3f", ms); }
// CSV carries the values at full precision so they read back equal to the JSON.
std::string csv_number(double v) { return printf_string("%.17g", v); }

// A / B where B is not zero.
std::optional<double> ratio(double a, double b) {
  if (b > 0 && std::isfinite(a)) return a / b;
  return std::nullopt;
}
json optional_json(std::optional<double> v) { return v ? json(*v) : json(nullptr); }
std::string speedup_text(std::optional<double> v) { return v ? printf_string("%.2fx", *v) : "n/a"; }

std::string window_text(const LayerTiming& r) {
  if (!r.has_policy) return "-";
  if (!r.policy.windowed()) return "full";
  if (r.policy.right == 0) return std::to_string(r.policy.window_keys());
  return std::to_string(r.policy.left) + "/" + std::to_string(r.policy.right);
}
std::string policy_text(const LayerTiming& r) { return r.has_policy ? describe(r.policy) : "-"; }

json window_bound(int32_t v) { return v == kUnboundedWindow ? json(nullptr) : json(v); }

std::string memory_text(size_t bytes) { return bytes > 0 ? human_bytes(static_cast<double>(bytes)) : "not tracked"; }

size_t kv_total(const RunInfo& i) { return i.kv_bytes_dense + i.kv_bytes_ring; }

// Columns padded to their widest cell; text columns left-aligned, number columns right-aligned.
class TextTable {
 public:
  explicit TextTable(std::vector<std::pair<std::string, bool>> columns) : columns_(std::move(columns)) {}
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  std::string str(bool with_header = true) const {
    std::vector<size_t> width(columns_.size());
    for (size_t c = 0; c < columns_.size(); ++c) {
      width[c] = columns_[c].first.size();
      for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
    }
    std::string out;
    auto line = [&](auto cell_of) {
      std::string l;
      for (size_t c = 0; c < columns_.size(); ++c) {
        const std::string& cell = cell_of(c);
        const std::string pad(width[c] - cell.size(), ' ');
        l += (c ? "  " : "") + (columns_[c].second ? pad + cell : cell + pad);
      }
      while (!l.empty() && l.back() == ' ') l.pop_back();
      out += l + "\n";
    };
    if (with_header) line([&](size_t c) -> const std::string& { return columns_[c].first; });
    for (const auto& r : rows_) line([&](size_t c) -> const std::string& { return r[c]; });
    return out;
  }

 private:
  std::vector<std::pair<std::string, bool>> columns_;  // header, right-aligned
  std::vector<std::vector<std::string>> rows_;
};

std::string csv_line(const std::vector<std::string>& fields) {
  std::string l;
  for (size_t i = 0; i < fields.size(); ++i) l += (i ? "," : "") + csv_field(fields[i]);
  return l + "\n";
}

void check_same_rows(const AbReport& r) {
  if (r.a.rows.size() != r.b.rows.size())
    fail("A/B report: A has " + std::to_string(r.a.rows.size()) + " rows and B has " +
         std::to_string(r.b.rows.size()) + "; both runs must be of the same model");
  for (size_t i = 0; i < r.a.rows.size(); ++i)
    if (r.a.rows[i].label != r.b.rows[i].label)
      fail("A/B report: row " + std::to_string(i) + " is '" + r.a.rows[i].label + "' in A and '" +
           r.b.rows[i].label + "' in B");
}

double rest_ms(const LayerTiming& r) { return r.total_ms() - r.category_ms(OpCategory::Attention); }

// ---------------------------------------------------------------------------------------------------------------
// SVG: a bar chart with a linear ms axis; bars are built by the two charts below.

// A round axis step (1, 2 or 5 times a power of ten) giving about five ticks up to max.
double tick_step(double max) {
  if (!(max > 0)) return 0.2;
  const double raw = max / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

struct Segment {
  std::string cls, color, tooltip;
  std::string data;  // extra data-* attributes
  double ms;
};

class BarChart {
 public:
  static constexpr double kLeft = 80, kTop = 78, kPlotW = 820, kPlotH = 340, kLegendW = 210, kBottom = 70;

  BarChart(std::string title, std::string subtitle, size_t bands, double max_ms)
      : title_(std::move(title)), subtitle_(std::move(subtitle)), bands_(std::max<size_t>(bands, 1)) {
    // Headroom above the tallest bar for its "D" mark and note.
    step_ = tick_step(max_ms);
    y_max_ = max_ms > 0 ? std::ceil(max_ms * 1.08 / step_ - 1e-9) * step_ : step_ * 5;
  }
  double band_width() const { return kPlotW / static_cast<double>(bands_); }
  double band_x(size_t i) const { return kLeft + band_width() * static_cast<double>(i); }
  double y_of(double ms) const { return kTop + kPlotH - ms / y_max_ * kPlotH; }

  // A stacked bar from the axis up; outlined (and tagged "D") when it marks a dense layer.
  void bar(double x, double width, const std::vector<Segment>& segments, bool dense) {
    double base = 0;
    for (const Segment& s : segments) {
      const double top = base + std::max(s.ms, 0.0);
      body_ << "<rect class=\"" << s.cls << "\" " << s.data << " data-ms=\"" << csv_number(s.ms) << "\" x=\""
            << fmt(x) << "\" y=\"" << fmt(y_of(top)) << "\" width=\"" << fmt(width) << "\" height=\""
            << fmt(y_of(base) - y_of(top)) << "\" fill=\"" << s.color << "\"><title>" << xml_escape(s.tooltip)
            << "</title></rect>\n";
      base = top;
    }
    if (dense) {
      body_ << "<rect class=\"dense-mark\" x=\"" << fmt(x) << "\" y=\"" << fmt(y_of(base)) << "\" width=\""
            << fmt(width) << "\" height=\"" << fmt(y_of(0) - y_of(base))
            << "\" fill=\"none\" stroke=\"#111\" stroke-width=\"1.5\"/>\n";
      text(x + width / 2, y_of(base) - 4, "D", "middle", 10, "bold");
    }
  }
  void x_label(size_t band, const std::string& label) {
    // Thin out the labels when the bands get too narrow to hold them.
    const size_t every = static_cast<size_t>(std::ceil(16.0 / band_width()));
    if (band % std::max<size_t>(every, 1) != 0) return;
    text(band_x(band) + band_width() / 2, kTop + kPlotH + 16, label, "middle", 10, "normal");
  }
  void note_above(size_t band, double ms, const std::string& note) {
    text(band_x(band) + band_width() / 2, y_of(ms) - 16, note, "middle", 9, "normal");
  }
  void legend(const std::vector<std::pair<std::string, std::string>>& entries) {
    double y = kTop + 10;
    const double x = kLeft + kPlotW + 24;
    for (const auto& [color, name] : entries) {
      body_ << "<rect x=\"" << fmt(x) << "\" y=\"" << fmt(y - 10) << "\" width=\"12\" height=\"12\" fill=\"" << color
            << "\"/>\n";
      text(x + 18, y, name, "start", 12, "normal");
      y += 20;
    }
    body_ << "<rect x=\"" << fmt(x) << "\" y=\"" << fmt(y - 10)
          << "\" width=\"12\" height=\"12\" fill=\"none\" stroke=\"#111\" stroke-width=\"1.5\"/>\n";
    text(x + 18, y, "D: dense layer", "start", 12, "normal");
  }

  std::string str(const std::string& x_title) const {
    const double width = kLeft + kPlotW + kLegendW, height = kTop + kPlotH + kBottom;
    std::ostringstream svg;
    svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << fmt(width) << "\" height=\"" << fmt(height)
        << "\" viewBox=\"0 0 " << fmt(width) << " " << fmt(height)
        << "\" font-family=\"Helvetica, Arial, sans-serif\">\n"
        << "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n"
        << "<text x=\"" << fmt(kLeft) << "\" y=\"26\" font-size=\"16\" font-weight=\"bold\">" << xml_escape(title_)
        << "</text>\n"
        << "<text x=\"" << fmt(kLeft) << "\" y=\"46\" font-size=\"12\" fill=\"#444\">" << xml_escape(subtitle_)
        << "</text>\n";
    for (int i = 0; y_max_ > 0 && i * step_ <= y_max_ + step_ * 1e-6; ++i) {
      const double v = i * step_, y = y_of(v);
      svg << "<line x1=\"" << fmt(kLeft) << "\" y1=\"" << fmt(y) << "\" x2=\"" << fmt(kLeft + kPlotW) << "\" y2=\""
          << fmt(y) << "\" stroke=\"#ddd\"/>\n"
          << "<text class=\"tick\" x=\"" << fmt(kLeft - 6) << "\" y=\"" << fmt(y + 4)
          << "\" font-size=\"11\" text-anchor=\"end\">" << tick_label(v) << "</text>\n";
    }
    svg << "<line x1=\"" << fmt(kLeft) << "\" y1=\"" << fmt(kTop) << "\" x2=\"" << fmt(kLeft) << "\" y2=\""
        << fmt(kTop + kPlotH) << "\" stroke=\"#333\"/>\n"
        << "<line x1=\"" << fmt(kLeft) << "\" y1=\"" << fmt(kTop + kPlotH) << "\" x2=\"" << fmt(kLeft + kPlotW)
        << "\" y2=\"" << fmt(kTop + kPlotH) << "\" stroke=\"#333\"/>\n"
        << "<text x=\"18\" y=\"" << fmt(kTop + kPlotH / 2) << "\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 18 "
        << fmt(kTop + kPlotH / 2) << ")\">time (ms)</text>\n"
        << "<text x=\"" << fmt(kLeft + kPlotW / 2) << "\" y=\"" << fmt(kTop + kPlotH + 44)
        << "\" font-size=\"12\" text-anchor=\"middle\">" << xml_escape(x_title) << "</text>\n"
        << body_.str() << "</svg>\n";
    return svg.str();
  }

 private:
  static std::string fmt(double v) { return printf_string("%.2f", v); }
  std::string tick_label(double v) const {
    return printf_string(step_ >= 1 ? "%.0f" : step_ >= 0.1 ? "%.1f" : step_ >= 0.01 ? "%.2f" : "%.3g", v);
  }
  void text(double x, double y, const std::string& s, const char* anchor, int size, const char* weight) {
    body_ << "<text x=\"" << fmt(x) << "\" y=\"" << fmt(y) << "\" font-size=\"" << size << "\" font-weight=\""
          << weight << "\" text-anchor=\"" << anchor << "\">" << xml_escape(s) << "</text>\n";
  }

  std::string title_, subtitle_;
  size_t bands_;
  double step_ = 1, y_max_ = 1;
  std::ostringstream body_;
};

constexpr const char* kCategoryColors[kOpCategoryCount] = {"#d62728", "#1f77b4", "#6baed6", "#c6dbef"};

std::string profile_heading(const Profile& p) {
  const RunInfo& i = p.info;
  return "Prefill profile: " + i.model + ", attn " + i.attn_spec + ", " + i.backend +
         (i.device.empty() ? "" : " (" + i.device + ")");
}

std::string profile_svg(const Profile& p) {
  double max_ms = 0;
  for (const LayerTiming& r : p.rows) max_ms = std::max(max_ms, r.total_ms());
  const std::string subtitle = std::to_string(p.info.n_tokens) + " tokens: prefill " + ms_text(p.prefill_ms()) +
                               " ms, " + printf_string("%.0f", p.tokens_per_s()) + " tok/s, median of " +
                               std::to_string(p.repeat()) + " runs; attention " +
                               ms_text(p.category_total_ms(OpCategory::Attention)) + " of " +
                               ms_text(p.op_total_ms()) + " ms in ops";
  BarChart chart(profile_heading(p), subtitle, p.rows.size(), max_ms);
  for (size_t i = 0; i < p.rows.size(); ++i) {
    const LayerTiming& r = p.rows[i];
    std::vector<Segment> segs;
    for (OpCategory c : kOpCategories) {
      const std::string name = category_name(c);
      segs.push_back({"seg", kCategoryColors[static_cast<size_t>(c)],
                      "row " + r.label + " (" + policy_text(r) + "): " + name + " " + ms_text(r.category_ms(c)) + " ms",
                      "data-row=\"" + xml_escape(r.label) + "\" data-category=\"" + name + "\"", r.category_ms(c)});
    }
    const double w = chart.band_width() * 0.7;
    chart.bar(chart.band_x(i) + (chart.band_width() - w) / 2, w, segs, r.dense());
    chart.x_label(i, r.label);
  }
  std::vector<std::pair<std::string, std::string>> legend;
  for (OpCategory c : kOpCategories) legend.emplace_back(kCategoryColors[static_cast<size_t>(c)], category_name(c));
  chart.legend(legend);
  return chart.str("layer");
}

std::string profile_table(const Profile& p) {
  const RunInfo& info = p.info;
  std::string out = profile_heading(p) + "\n" + std::to_string(info.n_tokens) + " tokens, ubatch " +
                    std::to_string(info.ubatch) + ", " + std::to_string(info.chunks) + " chunks, median of " +
                    std::to_string(p.repeat()) + " runs\n\n";
  TextTable t({{"layer", false}, {"policy", false}, {"window", true}, {"attention ms", true},
               {"projections ms", true}, {"mlp ms", true}, {"other ms", true}, {"total ms", true}, {"share %", true}});
  auto cells = [&](const std::string& label, const std::string& policy, const std::string& window,
                   const std::array<double, kOpCategoryCount>& ms, double total, double share) {
    std::vector<std::string> c{label, policy, window};
    for (double v : ms) c.push_back(ms_text(v));
    c.push_back(ms_text(total));
    c.push_back(printf_string("%.1f", share));
    return c;
  };
  for (const LayerTiming& r : p.rows)
    t.row(cells(r.label + (r.dense() ? " *" : ""), policy_text(r), window_text(r), r.ms, r.total_ms(), p.share_pct(r)));
  std::array<double, kOpCategoryCount> totals{};
  for (OpCategory c : kOpCategories) totals[static_cast<size_t>(c)] = p.category_total_ms(c);
  t.row(cells("total", "", "", totals, p.op_total_ms(), p.op_total_ms() > 0 ? 100.0 : 0.0));
  out += t.str() + "* dense layer (keeps every position)\n\n";

  std::string runs;
  if (!p.prefill_ms_runs.empty()) {
    const auto [lo, hi] = std::minmax_element(p.prefill_ms_runs.begin(), p.prefill_ms_runs.end());
    runs = " (median of " + std::to_string(p.repeat()) + " runs, min " + ms_text(*lo) + ", max " + ms_text(*hi) + ")";
  }
  TextTable s({{"", false}, {"", false}});
  s.row({"prefill", ms_text(p.prefill_ms()) + " ms" + runs});
  s.row({"throughput", printf_string("%.1f", p.tokens_per_s()) + " tok/s"});
  s.row({"time to first token", ms_text(info.ttft_ms) + " ms"});
  s.row({"op time", ms_text(p.op_total_ms()) + " ms summed over the ops above"});
  s.row({"peak GPU memory", memory_text(info.peak_memory_bytes)});
  s.row({"KV cache", human_bytes(static_cast<double>(kv_total(info))) + " = dense layers (" +
                         std::to_string(p.dense_layers()) + ") " + human_bytes(static_cast<double>(info.kv_bytes_dense)) +
                         " + ring layers (" + std::to_string(p.windowed_layers()) + ") " +
                         human_bytes(static_cast<double>(info.kv_bytes_ring))});
  return out + s.str(false);
}

std::vector<std::string> profile_csv_header() {
  return {"label", "layer", "policy", "window_left", "window_right", "dense", "attention_ms", "projections_ms",
          "mlp_ms", "other_ms", "total_ms", "share_pct"};
}

std::string profile_csv(const Profile& p) {
  std::string out = csv_line(profile_csv_header());
  auto bound = [](int32_t v) { return v == kUnboundedWindow ? std::string() : std::to_string(v); };
  for (const LayerTiming& r : p.rows) {
    std::vector<std::string> f{r.label, r.has_policy ? std::to_string(r.layer) : "", r.has_policy ? describe(r.policy) : "",
                               r.has_policy ? bound(r.policy.left) : "", r.has_policy ? bound(r.policy.right) : "",
                               r.dense() ? "1" : "0"};
    for (double v : r.ms) f.push_back(csv_number(v));
    f.push_back(csv_number(r.total_ms()));
    f.push_back(csv_number(p.share_pct(r)));
    out += csv_line(f);
  }
  std::vector<std::string> f{"total", "", "", "", "", ""};
  for (OpCategory c : kOpCategories) f.push_back(csv_number(p.category_total_ms(c)));
  f.push_back(csv_number(p.op_total_ms()));
  f.push_back(csv_number(p.op_total_ms() > 0 ? 100.0 : 0.0));
  out += csv_line(f);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// A/B

json quality_json(const AbQuality& q) {
  const int64_t div = q.first_divergence();
  return json{{"positions", q.positions},
              {"kl_mean", q.kl_mean},
              {"kl_max", q.kl_max},
              {"kl_max_position", q.kl_max_position < 0 ? json(nullptr) : json(q.kl_max_position)},
              {"top1_agree", q.top1_agree},
              {"top1_agreement", q.top1_agreement()},
              {"scored_tokens", q.scored_tokens},
              {"nll_a", q.nll_a},
              {"nll_b", q.nll_b},
              {"perplexity_a", q.perplexity_a},
              {"perplexity_b", q.perplexity_b},
              {"greedy_a", q.greedy_a},
              {"greedy_b", q.greedy_b},
              {"greedy_text_a", q.greedy_text_a},
              {"greedy_text_b", q.greedy_text_b},
              {"first_divergence", div < 0 ? json(nullptr) : json(div)}};
}

std::string ab_heading(const AbReport& r) {
  return "A/B: A = " + r.a.info.attn_spec + ", B = " + r.b.info.attn_spec + " on " + r.a.info.model + ", " +
         r.a.info.backend + (r.a.info.device.empty() ? "" : " (" + r.a.info.device + ")");
}

std::string divergence_text(const AbQuality& q) {
  const size_t n = std::max(q.greedy_a.size(), q.greedy_b.size());
  const int64_t div = q.first_divergence();
  if (n == 0) return "not run";
  if (div < 0) return "identical for " + std::to_string(n) + " tokens";
  return "first divergence at generated token " + std::to_string(div) + " of " + std::to_string(n);
}

std::string quote_text(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out + "\"";
}

std::string ab_table(const AbReport& r) {
  const Profile &a = r.a, &b = r.b;
  std::string out = ab_heading(r) + "\n" + std::to_string(a.info.n_tokens) + " tokens, ubatch " +
                    std::to_string(a.info.ubatch) + ", median of " + std::to_string(a.repeat()) + " (A) and " +
                    std::to_string(b.repeat()) + " (B) runs; speedup = A time / B time\n\n";
  TextTable t({{"layer", false}, {"A policy", false}, {"B policy", false}, {"A attn ms", true}, {"B attn ms", true},
               {"attn speedup", true}, {"A total ms", true}, {"B total ms", true}, {"speedup", true}});
  for (size_t i = 0; i < a.rows.size(); ++i) {
    const LayerTiming &ra = a.rows[i], &rb = b.rows[i];
    const double aa = ra.category_ms(OpCategory::Attention), ba = rb.category_ms(OpCategory::Attention);
    t.row({ra.label, policy_text(ra) + (ra.dense() ? " *" : ""), policy_text(rb) + (rb.dense() ? " *" : ""),
           ms_text(aa), ms_text(ba), speedup_text(ratio(aa, ba)), ms_text(ra.total_ms()), ms_text(rb.total_ms()),
           speedup_text(ratio(ra.total_ms(), rb.total_ms()))});
  }
  const double aa = a.category_total_ms(OpCategory::Attention), ba = b.category_total_ms(OpCategory::Attention);
  t.row({"total", "", "", ms_text(aa), ms_text(ba), speedup_text(ratio(aa, ba)), ms_text(a.op_total_ms()),
         ms_text(b.op_total_ms()), speedup_text(ratio(a.op_total_ms(), b.op_total_ms()))});
  out += t.str() + "* dense layer (keeps every position)\n\n";

  TextTable s({{"", false}, {"A", true}, {"B", true}, {"B vs A", true}});
  s.row({"prefill ms", ms_text(a.prefill_ms()), ms_text(b.prefill_ms()),
         speedup_text(ratio(a.prefill_ms(), b.prefill_ms())) + " speed"});
  s.row({"tok/s", printf_string("%.1f", a.tokens_per_s()), printf_string("%.1f", b.tokens_per_s()),
         speedup_text(ratio(b.tokens_per_s(), a.tokens_per_s())) + " speed"});
  s.row({"time to first token ms", ms_text(a.info.ttft_ms), ms_text(b.info.ttft_ms),
         speedup_text(ratio(a.info.ttft_ms, b.info.ttft_ms)) + " speed"});
  auto bytes_row = [&](const std::string& name, size_t x, size_t y, bool tracked) {
    s.row({name, tracked ? human_bytes(static_cast<double>(x)) : memory_text(x),
           tracked ? human_bytes(static_cast<double>(y)) : memory_text(y),
           speedup_text(ratio(static_cast<double>(y), static_cast<double>(x))) + " size"});
  };
  bytes_row("peak GPU memory", a.info.peak_memory_bytes, b.info.peak_memory_bytes, false);
  bytes_row("KV cache", kv_total(a.info), kv_total(b.info), true);
  bytes_row("  dense layers", a.info.kv_bytes_dense, b.info.kv_bytes_dense, true);
  bytes_row("  ring layers", a.info.kv_bytes_ring, b.info.kv_bytes_ring, true);
  out += s.str();

  const AbQuality& q = r.quality;
  TextTable m({{"", false}, {"", false}});
  m.row({"positions compared", std::to_string(q.positions)});
  m.row({"KL(A||B) mean", printf_string("%.6g", q.kl_mean) + " nats"});
  m.row({"KL(A||B) max", printf_string("%.6g", q.kl_max) + " nats" +
                             (q.kl_max_position >= 0 ? " at position " + std::to_string(q.kl_max_position) : "")});
  m.row({"top-1 agreement", printf_string("%.2f", 100.0 * q.top1_agreement()) + " % (" + std::to_string(q.top1_agree) +
                                "/" + std::to_string(q.positions) + ")"});
  m.row({"perplexity A", printf_string("%.4f", q.perplexity_a) + " over " + std::to_string(q.scored_tokens) + " tokens"});
  m.row({"perplexity B", printf_string("%.4f", q.perplexity_b)});
  m.row({"greedy continuations", divergence_text(q)});
  m.row({"  A", quote_text(q.greedy_text_a)});
  m.row({"  B", quote_text(q.greedy_text_b)});
  return out + "\nquality (B against A)\n" + m.str(false);
}

std::vector<std::string> ab_csv_header() {
  return {"label", "a_policy", "b_policy", "a_attention_ms", "b_attention_ms", "attention_speedup", "a_total_ms",
          "b_total_ms", "speedup"};
}

std::string ab_csv(const AbReport& r) {
  std::string out = csv_line(ab_csv_header());
  auto opt = [](std::optional<double> v) { return v ? csv_number(*v) : std::string(); };
  auto line = [&](const std::string& label, const std::string& pa, const std::string& pb, double aa, double ba,
                  double at, double bt) {
    out += csv_line({label, pa, pb, csv_number(aa), csv_number(ba), opt(ratio(aa, ba)), csv_number(at),
                     csv_number(bt), opt(ratio(at, bt))});
  };
  for (size_t i = 0; i < r.a.rows.size(); ++i) {
    const LayerTiming &ra = r.a.rows[i], &rb = r.b.rows[i];
    line(ra.label, ra.has_policy ? describe(ra.policy) : "", rb.has_policy ? describe(rb.policy) : "",
         ra.category_ms(OpCategory::Attention), rb.category_ms(OpCategory::Attention), ra.total_ms(), rb.total_ms());
  }
  line("total", "", "", r.a.category_total_ms(OpCategory::Attention), r.b.category_total_ms(OpCategory::Attention),
       r.a.op_total_ms(), r.b.op_total_ms());
  return out;
}

std::string ab_svg(const AbReport& r) {
  double max_ms = 0;
  for (size_t i = 0; i < r.a.rows.size(); ++i)
    max_ms = std::max({max_ms, r.a.rows[i].total_ms(), r.b.rows[i].total_ms()});
  const AbQuality& q = r.quality;
  const std::string subtitle =
      "prefill A " + ms_text(r.a.prefill_ms()) + " ms, B " + ms_text(r.b.prefill_ms()) + " ms (speedup " +
      speedup_text(ratio(r.a.prefill_ms(), r.b.prefill_ms())) + "); KL mean " + printf_string("%.3g", q.kl_mean) +
      ", max " + printf_string("%.3g", q.kl_max) + "; top-1 " + printf_string("%.2f", 100.0 * q.top1_agreement()) +
      " %; ppl A " + printf_string("%.3f", q.perplexity_a) + ", B " + printf_string("%.3f", q.perplexity_b);
  BarChart chart(ab_heading(r), subtitle, r.a.rows.size(), max_ms);
  const char* colors[2][2] = {{"#1f4e9c", "#9ecae1"}, {"#c4460f", "#fdd0a2"}};  // [run][attention, rest]
  for (size_t i = 0; i < r.a.rows.size(); ++i) {
    const double w = chart.band_width() * 0.38, gap = chart.band_width() * 0.04;
    const double x0 = chart.band_x(i) + (chart.band_width() - 2 * w - gap) / 2;
    for (int run = 0; run < 2; ++run) {
      const LayerTiming& row = (run == 0 ? r.a : r.b).rows[i];
      const std::string who = run == 0 ? "A" : "B";
      const std::string data = "data-run=\"" + who + "\" data-row=\"" + xml_escape(row.label) + "\"";
      const double attn = row.category_ms(OpCategory::Attention), rest = rest_ms(row);
      chart.bar(x0 + run * (w + gap), w,
                {{"seg", colors[run][0], who + " row " + row.label + " (" + policy_text(row) + "): attention " +
                                             ms_text(attn) + " ms",
                  data + " data-category=\"attention\"", attn},
                 {"seg", colors[run][1], who + " row " + row.label + ": other ops " + ms_text(rest) + " ms",
                  data + " data-category=\"rest\"", rest}},
                row.dense());
    }
    const auto speedup = ratio(r.a.rows[i].total_ms(), r.b.rows[i].total_ms());
    if (speedup && chart.band_width() >= 28)
      chart.note_above(i, std::max(r.a.rows[i].total_ms(), r.b.rows[i].total_ms()), printf_string("%.2fx", *speedup));
    chart.x_label(i, r.a.rows[i].label);
  }
  // Per-layer specs can be long; the legend column is narrow.
  auto shorten = [](const std::string& s) { return s.size() <= 16 ? s : s.substr(0, 13) + "..."; };
  chart.legend({{colors[0][0], "A attention (" + shorten(r.a.info.attn_spec) + ")"},
                {colors[0][1], "A other ops"},
                {colors[1][0], "B attention (" + shorten(r.b.info.attn_spec) + ")"},
                {colors[1][1], "B other ops"}});
  return chart.str("layer (label above a pair: speedup A/B)");
}

std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; }

}  // namespace

nlohmann::json profile_json(const Profile& p) {
  const RunInfo& i = p.info;
  json rows = json::array();
  for (const LayerTiming& r : p.rows) {
    json row{{"label", r.label},
             {"layer", r.has_policy ? json(r.layer) : json(nullptr)},
             {"policy", r.has_policy ? json(describe(r.policy)) : json(nullptr)},
             {"window_left", r.has_policy ? window_bound(r.policy.left) : json(nullptr)},
             {"window_right", r.has_policy ? window_bound(r.policy.right) : json(nullptr)},
             {"dense", r.dense()}};
    for (OpCategory c : kOpCategories) row[std::string(category_name(c)) + "_ms"] = r.category_ms(c);
    row["total_ms"] = r.total_ms();
    row["share_pct"] = p.share_pct(r);
    rows.push_back(std::move(row));
  }
  json totals;
  for (OpCategory c : kOpCategories) totals[std::string(category_name(c)) + "_ms"] = p.category_total_ms(c);
  totals["total_ms"] = p.op_total_ms();
  json ops = json::array();
  for (const OpTiming& o : p.ops)
    ops.push_back({{"row", o.row}, {"name", o.name}, {"op", op_kind_name(o.kind)}, {"category", category_name(o.category)},
                   {"ms", o.ms}});
  return json{{"kind", "profile"},
              {"model", i.model},
              {"backend", i.backend},
              {"device", i.device},
              {"attn_spec", i.attn_spec},
              {"n_tokens", i.n_tokens},
              {"ubatch", i.ubatch},
              {"chunks", i.chunks},
              {"repeat", p.repeat()},
              {"prefill_ms", p.prefill_ms()},
              {"prefill_ms_runs", p.prefill_ms_runs},
              {"op_ms_runs", p.op_ms_runs},
              {"tokens_per_s", p.tokens_per_s()},
              {"ttft_ms", i.ttft_ms},
              {"peak_memory_bytes", i.peak_memory_bytes},
              {"kv_cache_bytes", {{"dense", i.kv_bytes_dense}, {"ring", i.kv_bytes_ring}, {"total", kv_total(i)}}},
              {"dense_layers", p.dense_layers()},
              {"windowed_layers", p.windowed_layers()},
              {"rows", std::move(rows)},
              {"totals", std::move(totals)},
              {"ops", std::move(ops)}};
}

nlohmann::json ab_json(const AbReport& r) {
  check_same_rows(r);
  json rows = json::array();
  for (size_t i = 0; i < r.a.rows.size(); ++i) {
    const LayerTiming &ra = r.a.rows[i], &rb = r.b.rows[i];
    const double aa = ra.category_ms(OpCategory::Attention), ba = rb.category_ms(OpCategory::Attention);
    rows.push_back({{"label", ra.label},
                    {"a_policy", ra.has_policy ? json(describe(ra.policy)) : json(nullptr)},
                    {"b_policy", rb.has_policy ? json(describe(rb.policy)) : json(nullptr)},
                    {"a_attention_ms", aa},
                    {"b_attention_ms", ba},
                    {"attention_speedup", optional_json(ratio(aa, ba))},
                    {"a_total_ms", ra.total_ms()},
                    {"b_total_ms", rb.total_ms()},
                    {"speedup", optional_json(ratio(ra.total_ms(), rb.total_ms()))}});
  }
  const Profile &a = r.a, &b = r.b;
  json totals{{"prefill_speedup", optional_json(ratio(a.prefill_ms(), b.prefill_ms()))},
              {"op_time_speedup", optional_json(ratio(a.op_total_ms(), b.op_total_ms()))},
              {"attention_speedup", optional_json(ratio(a.category_total_ms(OpCategory::Attention),
                                                        b.category_total_ms(OpCategory::Attention)))},
              {"ttft_speedup", optional_json(ratio(a.info.ttft_ms, b.info.ttft_ms))},
              {"peak_memory_ratio", optional_json(ratio(static_cast<double>(b.info.peak_memory_bytes),
                                                        static_cast<double>(a.info.peak_memory_bytes)))},
              {"kv_bytes_ratio", optional_json(ratio(static_cast<double>(kv_total(b.info)),
                                                     static_cast<double>(kv_total(a.info))))}};
  return json{{"kind", "ab"},     {"a", profile_json(a)},        {"b", profile_json(b)},
              {"rows", std::move(rows)}, {"totals", std::move(totals)}, {"quality", quality_json(r.quality)}};
}

std::string render(const Profile& p, ReportFormat format) {
  switch (format) {
    case ReportFormat::Table: return profile_table(p);
    case ReportFormat::Json: return dump(profile_json(p));
    case ReportFormat::Csv: return profile_csv(p);
    case ReportFormat::Svg: return profile_svg(p);
  }
  return {};
}

std::string render(const AbReport& r, ReportFormat format) {
  check_same_rows(r);
  switch (format) {
    case ReportFormat::Table: return ab_table(r);
    case ReportFormat::Json: return dump(ab_json(r));
    case ReportFormat::Csv: return ab_csv(r);
    case ReportFormat::Svg: return ab_svg(r);
  }
  return {};
}

void write_report(const std::string& path, const std::string& text) {
  // Written beside the target and renamed over it: a failed write never leaves a half report under its name.
  const std::string temp = path + ".tmp";
  {
    std::ofstream f(temp, std::ios::binary);
    if (!f) fail("cannot open report file '" + path + "' for writing");
    f << text;
    f.flush();
    if (!f) {
      std::remove(temp.c_str());
      fail("cannot write report file '" + path + "'");
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    fail("cannot write report file '" + path + "'");
  }
}

}  // namespace swrun
