// Reading a whole file named on the swrun command line (-f/--file of generation and of tokenize).
#pragma once
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/common.h"

namespace swrun {

// The file's bytes as they are (binary: no newline translation). `what` names the file in the error, e.g.
// "cannot read prompt file 'x.txt'".
inline std::string read_whole_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + what + " '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace swrun
