// GGUF reader. The file is untrusted: every length, count and offset is compared with the bytes that are
// actually left before anything is allocated or dereferenced, so a hostile file costs at most memory
// proportional to its own size and always ends in one Error line that says what and where.
#include "runtime/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "runtime/common.h"

namespace swrun {

namespace {

constexpr uint32_t kMaxTensorDims = 4;  // GGML_MAX_DIMS: no reader of the format handles more
// Nesting is legal but nobody nests deeply; the limit keeps the recursion off the end of the stack.
constexpr int kMaxArrayDepth = 16;

// Smallest encoding of one value of the type, used to reject counts that cannot fit in the remaining bytes.
uint64_t min_encoded_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING: return 8;  // the length
    case GgufValueType::ARRAY: return 12;  // element type + count
  }
  return 0;
}

bool is_valid_value_type(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

class Parser {
 public:
  Parser(const uint8_t* base, size_t size, const std::string& label) : base_(base), size_(size), label_(label) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  void set_context(std::string where) { where_ = std::move(where); }

  // Errors point at the start of the item being read, not at the byte where reading gave up.
  [[noreturn]] void fail_at(size_t offset, const std::string& what) const {
    std::string msg = label_ + ": " + what + " (";
    if (!where_.empty()) msg += where_ + ", ";
    msg += "at byte offset " + std::to_string(offset) + ")";
    throw Error(msg);
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail_at(pos_, std::string(what) + " needs " + std::to_string(n) + " bytes but the file has only " +
                        std::to_string(remaining()) + " left");
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));  // GGUF is little-endian, as is every host we build for
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const size_t start = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail_at(start, std::string(what) + " length " + std::to_string(len) + " runs past the end of the file (" +
                         std::to_string(remaining()) + " bytes left)");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

  GgufValue read_value(uint32_t raw_type, int depth) {
    const size_t start = pos_;
    if (!is_valid_value_type(raw_type)) fail_at(start, "unknown metadata value type " + std::to_string(raw_type));
    const auto type = static_cast<GgufValueType>(raw_type);
    GgufValue out{type, uint64_t{0}};
    switch (type) {
      case GgufValueType::UINT8: out.v = uint64_t{read<uint8_t>("uint8 value")}; break;
      case GgufValueType::INT8: out.v = int64_t{read<int8_t>("int8 value")}; break;
      case GgufValueType::UINT16: out.v = uint64_t{read<uint16_t>("uint16 value")}; break;
      case GgufValueType::INT16: out.v = int64_t{read<int16_t>("int16 value")}; break;
      case GgufValueType::UINT32: out.v = uint64_t{read<uint32_t>("uint32 value")}; break;
      case GgufValueType::INT32: out.v = int64_t{read<int32_t>("int32 value")}; break;
      case GgufValueType::UINT64: out.v = read<uint64_t>("uint64 value"); break;
      case GgufValueType::INT64: out.v = read<int64_t>("int64 value"); break;
      case GgufValueType::FLOAT32: out.v = double{read<float>("float32 value")}; break;
      case GgufValueType::FLOAT64: out.v = read<double>("float64 value"); break;
      case GgufValueType::BOOL: {
        const uint8_t b = read<uint8_t>("bool value");
        if (b > 1) fail_at(start, "bool value " + std::to_string(b) + " is neither 0 nor 1");
        out.v = b == 1;
        break;
      }
      case GgufValueType::STRING: out.v = read_string("string"); break;
      case GgufValueType::ARRAY: out.v = read_array(depth); break;
    }
    return out;
  }

 private:
  std::shared_ptr<GgufArray> read_array(int depth) {
    const size_t start = pos_;
    if (depth >= kMaxArrayDepth)
      fail_at(start, "arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
    const uint32_t raw_elem = read<uint32_t>("array element type");
    if (!is_valid_value_type(raw_elem))
      fail_at(start, "unknown array element type " + std::to_string(raw_elem));
    const uint64_t count = read<uint64_t>("array length");
    const auto elem = static_cast<GgufValueType>(raw_elem);
    if (count > remaining() / min_encoded_bytes(elem))
      fail_at(start, "array of " + std::to_string(count) + " " + gguf_value_type_name(elem) +
                         " items cannot fit in the " + std::to_string(remaining()) + " bytes left in the file");
    auto arr = std::make_shared<GgufArray>();
    arr->elem_type = elem;
    arr->items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) arr->items.push_back(read_value(raw_elem, depth + 1));
    return arr;
  }

  const uint8_t* base_;
  size_t size_;
  const std::string& label_;
  size_t pos_ = 0;
  std::string where_;
};

bool checked_align_up(uint64_t v, uint64_t alignment, uint64_t* out) {
  uint64_t bumped;
  if (__builtin_add_overflow(v, alignment - 1, &bumped)) return false;
  *out = bumped & ~(alignment - 1);
  return true;
}

uint64_t alignment_from(const GgufValue& v, Parser& p, size_t kv_offset) {
  uint64_t a = 0;
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    a = *u;
  } else if (const auto* s = std::get_if<int64_t>(&v.v)) {
    if (*s <= 0) p.fail_at(kv_offset, "alignment " + std::to_string(*s) + " is not a positive power of two");
    a = static_cast<uint64_t>(*s);
  } else {
    p.fail_at(kv_offset, std::string("alignment must be an integer, the file has a ") +
                             gguf_value_type_name(v.type));
  }
  if (a == 0 || (a & (a - 1)) != 0)
    p.fail_at(kv_offset, "alignment " + std::to_string(a) + " is not a positive power of two");
  return a;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: return "UINT8";
    case GgufValueType::INT8: return "INT8";
    case GgufValueType::UINT16: return "UINT16";
    case GgufValueType::INT16: return "INT16";
    case GgufValueType::UINT32: return "UINT32";
    case GgufValueType::INT32: return "INT32";
    case GgufValueType::FLOAT32: return "FLOAT32";
    case GgufValueType::BOOL: return "BOOL";
    case GgufValueType::STRING: return "STRING";
    case GgufValueType::ARRAY: return "ARRAY";
    case GgufValueType::UINT64: return "UINT64";
    case GgufValueType::INT64: return "INT64";
    case GgufValueType::FLOAT64: return "FLOAT64";
  }
  return "UNKNOWN";
}

// ---- values ----

namespace {

[[noreturn]] void wrong_type(const std::string& key, GgufValueType has, const char* wanted) {
  fail("metadata key '" + key + "' is " + gguf_value_type_name(has) + ", expected " + wanted);
}

const GgufValue& require(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (!v) fail(f.path() + ": missing metadata key '" + key + "'");
  return *v;
}

// Value accessors name the key but not the file; the file adds its own label.
template <typename F>
auto prefixed(const std::string& label, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    fail(label + ": " + e.what());
  }
}

}  // namespace

int64_t GgufValue::as_int(const std::string& key) const {
  if (const auto* s = std::get_if<int64_t>(&v)) return *s;
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("metadata key '" + key + "' value " + std::to_string(*u) + " does not fit a signed 64-bit integer");
    return static_cast<int64_t>(*u);
  }
  wrong_type(key, type, "an integer");
}

double GgufValue::as_float(const std::string& key) const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* s = std::get_if<int64_t>(&v)) return static_cast<double>(*s);
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  wrong_type(key, type, "a number");
}

bool GgufValue::as_bool(const std::string& key) const {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  wrong_type(key, type, "a bool");
}

const std::string& GgufValue::as_string(const std::string& key) const {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  wrong_type(key, type, "a string");
}

const GgufArray& GgufValue::as_array(const std::string& key) const {
  if (const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v)) return **a;
  wrong_type(key, type, "an array");
}

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// ---- file ----

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return parse("", 0, path);  // mmap refuses empty files; let the header check word the error
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail(path + ": cannot map the file: " + std::strerror(map_errno));
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->mapping_ = map;
  f->base_ = static_cast<const uint8_t*>(map);
  f->size_ = size;
  f->label_ = path;
  f->parse_all();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::parse(const void* data, size_t size, const std::string& label) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->base_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->label_ = label;
  f->parse_all();
  return f;
}

GgufFile::~GgufFile() {
  if (mapping_) munmap(mapping_, size_);
}

void GgufFile::parse_all() {
  Parser p(base_, size_, label_);

  p.need(4, "the GGUF magic");
  if (std::memcmp(base_, "GGUF", 4) != 0) p.fail_at(0, "not a GGUF file (bad magic)");
  p.read<uint32_t>("the GGUF magic");
  version_ = p.read<uint32_t>("the GGUF version");
  if (version_ != 2 && version_ != 3) {
    std::string what = "unsupported GGUF version " + std::to_string(version_) + " (this reader handles 2 and 3)";
    if ((version_ & 0xffff) == 0 && version_ != 0) what += "; the file looks big-endian, which is not supported";
    p.fail_at(4, what);
  }
  const uint64_t n_tensors = p.read<uint64_t>("the tensor count");
  const uint64_t n_kv = p.read<uint64_t>("the metadata count");

  // A key takes at least 8 (length) + 4 (type) + 1 (smallest value) bytes, a tensor info at least
  // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > p.remaining() / 13)
    p.fail_at(16, "metadata count " + std::to_string(n_kv) + " cannot fit in the " +
                      std::to_string(p.remaining()) + " bytes left in the file");
  if (n_tensors > p.remaining() / 24)
    p.fail_at(8, "tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
                     std::to_string(p.remaining()) + " bytes left in the file");

  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const size_t kv_start = p.pos();
    p.set_context("key #" + std::to_string(i));
    std::string key = p.read_string("key");
    p.set_context("key '" + key + "'");
    if (kv_index_.count(key)) p.fail_at(kv_start, "duplicate metadata key");
    const uint32_t type = p.read<uint32_t>("value type");
    GgufValue value = p.read_value(type, 0);
    if (key == "general.alignment") alignment_ = alignment_from(value, p, kv_start);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(value));
  }

  std::vector<size_t> info_offsets;
  info_offsets.reserve(n_tensors);
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const size_t info_start = p.pos();
    info_offsets.push_back(info_start);
    p.set_context("tensor #" + std::to_string(i));
    GgufTensor t;
    t.name = p.read_string("tensor name");
    p.set_context("tensor '" + t.name + "'");
    if (tensor_index_.count(t.name)) p.fail_at(info_start, "duplicate tensor name");
    const uint32_t n_dims = p.read<uint32_t>("dimension count");
    if (n_dims > kMaxTensorDims)
      p.fail_at(info_start, std::to_string(n_dims) + " dimensions (at most " + std::to_string(kMaxTensorDims) +
                                " are allowed)");
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = p.read<uint64_t>("dimension");
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        p.fail_at(info_start, "dimension " + std::to_string(d) + " is " + std::to_string(dim) +
                                  " (must be 1 to 2^63-1)");
      if (__builtin_mul_overflow(n_elements, static_cast<int64_t>(dim), &n_elements))
        p.fail_at(info_start, "element count overflows 64 bits");
      t.ne.push_back(static_cast<int64_t>(dim));
    }
    t.type_id = p.read<uint32_t>("tensor type");
    t.offset = p.read<uint64_t>("tensor data offset");

    const GgmlTypeInfo ti = ggml_type_info(t.type_id);
    const int64_t row = t.ne.empty() ? 1 : t.ne[0];
    if (row % ti.block_elems != 0)
      p.fail_at(info_start, "row length " + std::to_string(row) + " is not a multiple of the " +
                                ggml_type_name(t.type_id) + " block size " + std::to_string(ti.block_elems));
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(n_elements / ti.block_elems), ti.block_bytes, &nbytes))
      p.fail_at(info_start, "data size overflows 64 bits");
    t.nbytes = nbytes;
    if (t.offset % alignment_ != 0)
      p.fail_at(info_start, "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                std::to_string(alignment_));
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  p.set_context("");
  uint64_t data_start = 0;
  if (!checked_align_up(p.pos(), alignment_, &data_start) || data_start > size_) {
    if (!tensors_.empty())
      p.fail_at(p.pos(), "data section (aligned to " + std::to_string(alignment_) +
                             ") would start past the end of the file (" + std::to_string(size_) + " bytes)");
    data_start = size_;  // no tensors: a file may end right after its tensor table, without padding
  }
  data_offset_ = data_start;

  const uint64_t data_bytes = size_ - data_offset_;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& t = tensors_[i];
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset) {
      p.set_context("tensor '" + t.name + "'");
      p.fail_at(info_offsets[i], "data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                                     ") runs past the end of the " + std::to_string(data_bytes) +
                                     "-byte data section");
    }
    t.data = base_ + data_offset_ + t.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  return prefixed(label_, [&] { return v.as_int(key); });
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  return prefixed(label_, [&] { return v.as_float(key); });
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  return prefixed(label_, [&] { return v->as_bool(key); });
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  return prefixed(label_, [&] { return v.as_string(key); });
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

const GgufArray& GgufFile::get_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  return prefixed(label_, [&]() -> const GgufArray& { return v.as_array(key); });
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  const GgufTensor* t = find_tensor(name);
  if (!t) fail(label_ + ": missing tensor '" + name + "'");
  return *t;
}

}  // namespace swrun
