// What `swrun needle` writes: the retrieval grid per attention spec (depth rows x length columns) as text, every
// trial as CSV and JSON, and an SVG heatmap with one panel per spec. All four carry the same trials.
#pragma once
#include <string>
#include <vector>

#include "engine/needle.h"

namespace swrun {

struct NeedleReport {
  std::string model;
  std::vector<std::string> specs;
  std::vector<int> lengths;
  std::vector<double> depths;
  int needles = 0;
  std::vector<NeedleTrial> trials;
};

// Found / tried over the trials of one cell.
struct NeedleCell {
  int found = 0, tried = 0;
  double rate() const { return tried ? double(found) / tried : 0.0; }
};
NeedleCell needle_cell(const NeedleReport& r, const std::string& spec, int length, double depth);

std::string needle_grid_text(const NeedleReport& r);  // one grid per spec, rates with found/tried
std::string needle_csv(const NeedleReport& r);        // one row per trial
std::string needle_json(const NeedleReport& r);       // the run's parameters, the cells and every trial
std::string needle_svg(const NeedleReport& r);        // heatmap, one panel per spec

}  // namespace swrun
