// `swrun inspect`: a GGUF file rendered for a person reading a terminal. Long values are shortened (the
// vocabulary alone has hundreds of thousands of entries), numbers that matter for debugging are exact.
#include <algorithm>
#include <cinttypes>
#include <map>

#include "runtime/common.h"
#include "runtime/gguf.h"

namespace swrun {

namespace {

constexpr size_t kArrayItemsShown = 6;
constexpr size_t kStringCharsShown = 64;
constexpr size_t kKeyColumnMax = 44;

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kStringCharsShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (s.size() > kStringCharsShown) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string render(const GgufValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v.v)) return std::to_string(*u);
  if (const auto* s = std::get_if<int64_t>(&v.v)) return std::to_string(*s);
  if (const auto* d = std::get_if<double>(&v.v)) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", *d);
    return buf;
  }
  if (const auto* b = std::get_if<bool>(&v.v)) return *b ? "true" : "false";
  if (const auto* s = std::get_if<std::string>(&v.v)) return quoted(*s);
  const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v.v);
  std::string out = "[";
  for (size_t i = 0; i < a.items.size() && i < kArrayItemsShown; ++i) {
    if (i) out += ", ";
    out += render(a.items[i]);
  }
  if (a.items.size() > kArrayItemsShown) out += ", ... " + std::to_string(a.items.size()) + " items";
  return out + "]";
}

std::string type_label(const GgufValue& v) {
  if (v.type != GgufValueType::ARRAY) return gguf_value_type_name(v.type);
  const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v.v);
  return std::string(gguf_value_type_name(a.elem_type)) + "[" + std::to_string(a.items.size()) + "]";
}

std::string shape(const std::vector<int64_t>& ne) {
  std::string out = "[";
  for (size_t i = 0; i < ne.size(); ++i) out += (i ? ", " : "") + std::to_string(ne[i]);
  return out + "]";
}

}  // namespace

void print_gguf_summary(const GgufFile& f, std::FILE* out) {
  fprintf(out, "%s\n", f.path().c_str());
  fprintf(out, "  GGUF version %u, %s (%zu bytes), alignment %" PRIu64 ", data section at byte %zu\n", f.version(),
          human_bytes(static_cast<double>(f.file_size())).c_str(), f.file_size(), f.alignment(), f.data_offset());

  size_t key_width = 0;
  for (const auto& [key, value] : f.metadata()) key_width = std::max(key_width, key.size());
  key_width = std::min(key_width, kKeyColumnMax);
  fprintf(out, "\nMetadata (%zu keys)\n", f.metadata().size());
  for (const auto& [key, value] : f.metadata()) {
    fprintf(out, "  %-*s  %-16s %s\n", static_cast<int>(key_width), key.c_str(), type_label(value).c_str(),
            render(value).c_str());
  }

  // Doubles: sums over a hostile file's tensors may not fit 64 bits, and the totals are for reading anyway.
  struct Totals { size_t tensors = 0; double elements = 0; double bytes = 0; };
  std::map<std::string, Totals> by_type;
  Totals all;
  size_t name_width = 4;
  for (const GgufTensor& t : f.tensors()) name_width = std::max(name_width, t.name.size());
  fprintf(out, "\nTensors (%zu; offsets are relative to the data section)\n", f.tensors().size());
  fprintf(out, "  %-*s  %-8s %-22s %14s %14s\n", static_cast<int>(name_width), "name", "type", "shape", "bytes",
          "offset");
  for (const GgufTensor& t : f.tensors()) {
    const std::string type = ggml_type_name(t.type_id);
    const bool size_known = ggml_type_info(t.type_id).name != nullptr;
    fprintf(out, "  %-*s  %-8s %-22s %14s %14" PRIu64 "\n", static_cast<int>(name_width), t.name.c_str(),
            type.c_str(), shape(t.ne).c_str(), size_known ? std::to_string(t.nbytes).c_str() : "?", t.offset);
    for (Totals* tot : {&by_type[type], &all}) {
      tot->tensors += 1;
      tot->elements += static_cast<double>(t.n_elements());
      tot->bytes += static_cast<double>(t.nbytes);
    }
  }

  fprintf(out, "\nTotals by type\n");
  for (const auto& [type, tot] : by_type) {
    fprintf(out, "  %-8s %5zu tensors %14.0f elements %12s\n", type.c_str(), tot.tensors, tot.elements,
            human_bytes(tot.bytes).c_str());
  }
  fprintf(out, "  %-8s %5zu tensors %14.0f elements %12s\n", "all", all.tensors, all.elements,
          human_bytes(all.bytes).c_str());
}

}  // namespace swrun
