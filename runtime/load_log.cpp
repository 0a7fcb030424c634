#include "runtime/load_log.h"

#include <cstdio>
#include <cstring>

namespace swrun {

void LoadLog::add(const std::string& name, double ms, const std::string& detail) {
  phases_.push_back({name, ms, detail, false});
}

void LoadLog::add_sub(const std::string& name, double ms, const std::string& detail) {
  phases_.push_back({name, ms, detail, true});
}

double LoadLog::top_level_ms() const {
  double sum = 0;
  for (const LoadPhase& p : phases_)
    if (!p.sub) sum += p.ms;
  return sum;
}

std::string LoadLog::render(double total_ms) const {
  std::string out;
  char line[512];
  auto emit = [&](const char* indent, const std::string& name, double ms, const std::string& detail) {
    std::snprintf(line, sizeof line, "load: %s%-*s %9.2f ms%s%s\n", indent, 28 - int(std::strlen(indent)),
                  name.c_str(), ms, detail.empty() ? "" : "  ", detail.c_str());
    out += line;
  };
  size_t first_sub = 0;  // sub-phases from here to the next top-level phase belong to it
  for (size_t i = 0; i < phases_.size(); ++i) {
    const LoadPhase& p = phases_[i];
    if (p.sub) continue;
    emit("  ", p.name, p.ms, p.detail);
    for (size_t j = first_sub; j < i; ++j) emit("    ", phases_[j].name, phases_[j].ms, phases_[j].detail);
    first_sub = i + 1;
  }
  emit("", "total", total_ms, "");
  return out;
}

}  // namespace swrun
