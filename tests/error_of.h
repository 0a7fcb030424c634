// Test helper: the message of the swrun::Error a call throws, or "(no error)".
#pragma once
#include <string>

#include "runtime/common.h"

namespace swrun::testing {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace swrun::testing
