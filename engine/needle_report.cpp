#include "engine/needle_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/report.h"

namespace swrun {
namespace {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Red (none found) through yellow to green (all found), the usual heatmap reading of a retrieval grid.
std::string rate_color(double rate) {
  struct Rgb { double r, g, b; };
  const Rgb none{215, 48, 39}, half{254, 224, 139}, all{26, 152, 80};
  const Rgb& a = rate < 0.5 ? none : half;
  const Rgb& b = rate < 0.5 ? half : all;
  const double t = rate < 0.5 ? rate * 2 : (rate - 0.5) * 2;
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", int(std::lround(a.r + (b.r - a.r) * t)),
                int(std::lround(a.g + (b.g - a.g) * t)), int(std::lround(a.b + (b.b - a.b) * t)));
  return buf;
}

}  // namespace

NeedleCell needle_cell(const NeedleReport& r, const std::string& spec, int length, double depth) {
  NeedleCell c;
  for (const NeedleTrial& t : r.trials)
    if (t.attn == spec && t.plan.length == length && t.plan.depth == depth) {
      ++c.tried;
      c.found += t.found ? 1 : 0;
    }
  return c;
}

std::string needle_grid_text(const NeedleReport& r) {
  std::ostringstream out;
  for (const std::string& spec : r.specs) {
    out << "attn " << spec << ": retrieval rate (found/tried), " << r.needles
        << " needles per cell; rows: depth in the haystack, columns: prompt length in tokens\n";
    char cell[64];
    std::snprintf(cell, sizeof cell, "%-7s", "depth");
    out << cell;
    for (int length : r.lengths) {
      std::snprintf(cell, sizeof cell, " %13d", length);
      out << cell;
    }
    out << "\n";
    for (double depth : r.depths) {
      std::snprintf(cell, sizeof cell, "%-7.2f", depth);
      out << cell;
      for (int length : r.lengths) {
        const NeedleCell c = needle_cell(r, spec, length, depth);
        const std::string text =
            fixed(c.rate(), 2) + " (" + std::to_string(c.found) + "/" + std::to_string(c.tried) + ")";
        std::snprintf(cell, sizeof cell, " %13s", text.c_str());
        out << cell;
      }
      out << "\n";
    }
    out << "\n";
  }
  return out.str();
}

std::string needle_csv(const NeedleReport& r) {
  std::ostringstream out;
  out << "attn,length,depth,needle,target_depth,placed_depth,needle_pos,distance,key,number,answer,found,ms\n";
  for (const NeedleTrial& t : r.trials) {
    out << csv_field(t.attn) << "," << t.plan.length << "," << t.plan.depth << "," << t.plan.needle << ","
        << fixed(t.plan.target, 4) << "," << fixed(t.placed_depth, 4) << "," << t.needle_pos << "," << t.distance
        << "," << csv_field(t.plan.key) << "," << t.plan.number << "," << csv_field(t.answer) << ","
        << (t.found ? 1 : 0) << "," << fixed(t.ms, 1) << "\n";
  }
  return out.str();
}

std::string needle_json(const NeedleReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["specs"] = r.specs;
  j["lengths"] = r.lengths;
  j["depths"] = r.depths;
  j["needles"] = r.needles;
  j["cells"] = nlohmann::json::array();
  for (const std::string& spec : r.specs)
    for (int length : r.lengths)
      for (double depth : r.depths) {
        const NeedleCell c = needle_cell(r, spec, length, depth);
        j["cells"].push_back({{"attn", spec}, {"length", length}, {"depth", depth}, {"found", c.found},
                              {"tried", c.tried}, {"rate", c.rate()}});
      }
  j["trials"] = nlohmann::json::array();
  for (const NeedleTrial& t : r.trials)
    j["trials"].push_back({{"attn", t.attn}, {"length", t.plan.length}, {"depth", t.plan.depth},
                           {"needle", t.plan.needle}, {"target_depth", t.plan.target},
                           {"placed_depth", t.placed_depth}, {"needle_pos", t.needle_pos},
                           {"distance", t.distance}, {"key", t.plan.key}, {"number", t.plan.number},
                           {"answer", t.answer}, {"found", t.found}, {"ms", t.ms}});
  return j.dump(2) + "\n";
}

std::string needle_svg(const NeedleReport& r) {
  constexpr int kCellW = 64, kCellH = 26, kLabelW = 52, kPanelGap = 36, kTop = 70, kBottom = 56, kSide = 16;
  // Room for a panel's title over a grid of one or two lengths, and for the subtitle over a single narrow panel.
  constexpr int kMinGridW = 160, kMinWidth = 760;
  const int cols = static_cast<int>(r.lengths.size()), rows = static_cast<int>(r.depths.size());
  const int panel_w = kLabelW + std::max(cols * kCellW, kMinGridW);
  const int width = std::max(kMinWidth, kSide * 2 + static_cast<int>(r.specs.size()) * panel_w +
                                            std::max(0, static_cast<int>(r.specs.size()) - 1) * kPanelGap);
  const int height = kTop + rows * kCellH + kBottom;
  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kSide << "\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Needle in a haystack: "
      << xml_escape(r.model) << "</text>\n"
      << "<text x=\"" << kSide << "\" y=\"40\" font-size=\"11\" fill=\"#444\">share of " << r.needles
      << " needles found per cell; rows: depth of the needle in the haystack, columns: prompt length (tokens)"
      << "</text>\n";
  for (size_t s = 0; s < r.specs.size(); ++s) {
    const int x0 = kSide + static_cast<int>(s) * (panel_w + kPanelGap), grid_x = x0 + kLabelW;
    svg << "<text x=\"" << grid_x << "\" y=\"" << kTop - 10 << "\" font-size=\"13\" font-weight=\"bold\">attn "
        << xml_escape(r.specs[s]) << "</text>\n";
    for (int row = 0; row < rows; ++row) {
      const int y = kTop + row * kCellH;
      svg << "<text x=\"" << grid_x - 6 << "\" y=\"" << y + kCellH / 2 + 4
          << "\" font-size=\"11\" text-anchor=\"end\">" << fixed(r.depths[row], 2) << "</text>\n";
      for (int col = 0; col < cols; ++col) {
        const NeedleCell c = needle_cell(r, r.specs[s], r.lengths[col], r.depths[row]);
        const int x = grid_x + col * kCellW;
        svg << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << kCellW << "\" height=\"" << kCellH
            << "\" fill=\"" << rate_color(c.rate()) << "\" stroke=\"white\"><title>attn " << xml_escape(r.specs[s])
            << ", length " << r.lengths[col] << ", depth " << fixed(r.depths[row], 2) << ": " << c.found << "/"
            << c.tried << " found</title></rect>\n"
            << "<text x=\"" << x + kCellW / 2 << "\" y=\"" << y + kCellH / 2 + 4
            << "\" font-size=\"11\" text-anchor=\"middle\">" << c.found << "/" << c.tried << "</text>\n";
      }
    }
    const int y_axis = kTop + rows * kCellH;
    for (int col = 0; col < cols; ++col)
      svg << "<text x=\"" << grid_x + col * kCellW + kCellW / 2 << "\" y=\"" << y_axis + 16
          << "\" font-size=\"11\" text-anchor=\"middle\">" << r.lengths[col] << "</text>\n";
    svg << "<text x=\"" << grid_x + cols * kCellW / 2 << "\" y=\"" << y_axis + 36
        << "\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">prompt length</text>\n";
    svg << "<text x=\"" << x0 << "\" y=\"" << kTop - 10 << "\" font-size=\"11\" fill=\"#444\">depth</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace swrun
