// Renders a profile, or an A/B of two profiles plus quality metrics, as an aligned text table, JSON, CSV or a
// self-contained SVG chart. The four formats carry the same numbers.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "engine/ab_metrics.h"
#include "runtime/profile.h"

namespace swrun {

enum class ReportFormat { Table, Json, Csv, Svg };

// Two runs of the same model and text: A is the baseline, speedups are A time / B time.
struct AbReport {
  Profile a, b;
  AbQuality quality;
};

nlohmann::json profile_json(const Profile& p);
nlohmann::json ab_json(const AbReport& r);  // throws Error when a and b do not have the same rows

// One CSV field, quoted when it holds a comma, quote or newline; text made safe inside SVG/XML.
std::string csv_field(const std::string& s);
std::string xml_escape(const std::string& s);

std::string render(const Profile& p, ReportFormat format);
std::string render(const AbReport& r, ReportFormat format);  // throws Error when a and b do not have the same rows

// Writes text to path (through a temporary file renamed over it); throws Error naming the path when it cannot.
void write_report(const std::string& path, const std::string& text);

}  // namespace swrun
