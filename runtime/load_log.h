// Where a model's load time goes (`swrun -v`, in the spirit of llama.cpp's load timings): named phases in the
// order they ran, each with its host wall time and a short detail, and sub-phases under a phase (a backend's own
// split of its set-up or of the weight upload). Backends time their sub-phases, and synchronize for them, only
// while a log is attached.
#pragma once
#include <string>
#include <vector>

namespace swrun {

struct LoadPhase {
  std::string name;
  double ms = 0;
  std::string detail;
  // Part of the next top-level phase (recorded while that phase runs, so before it; rendered under it).
  bool sub = false;
};

class LoadLog {
 public:
  void add(const std::string& name, double ms, const std::string& detail = "");
  void add_sub(const std::string& name, double ms, const std::string& detail = "");
  const std::vector<LoadPhase>& phases() const { return phases_; }
  // Sum of the top-level phases (sub-phases are already inside them).
  double top_level_ms() const;
  // One line per phase ("load:   weights    123.45 ms  detail", its sub-phases after it, indented two more), then
  // "load: total".
  std::string render(double total_ms) const;

 private:
  std::vector<LoadPhase> phases_;
};

}  // namespace swrun
