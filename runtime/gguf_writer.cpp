// GGUF v3 writer. Everything is validated with the same rules the reader applies, so a file this writer
// produces always reads back; tensor data is padded to the alignment but the file ends right after the last
// tensor, which makes every strict prefix of a written file invalid (the truncation tests rely on it).
#include "runtime/gguf_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "runtime/common.h"

namespace swrun {

namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr size_t kMaxTensorDims = 4;

class Bytes {
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf_.insert(buf_.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    buf_.insert(buf_.end(), s.begin(), s.end());
  }
  const std::vector<uint8_t>& data() const { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

[[noreturn]] void key_error(const std::string& key, const std::string& what) {
  fail("GgufWriter: key '" + key + "': " + what);
}

template <typename T>
T checked_int(const GgufValue& v, const std::string& key) {
  constexpr auto lo = std::numeric_limits<T>::min();
  constexpr auto hi = std::numeric_limits<T>::max();
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u <= static_cast<uint64_t>(hi)) return static_cast<T>(*u);
    key_error(key, std::to_string(*u) + " does not fit " + gguf_value_type_name(v.type));
  }
  if (const auto* s = std::get_if<int64_t>(&v.v)) {
    const bool fits = std::numeric_limits<T>::is_signed
                          ? (*s >= static_cast<int64_t>(lo) && *s <= static_cast<int64_t>(hi))
                          : (*s >= 0 && static_cast<uint64_t>(*s) <= static_cast<uint64_t>(hi));
    if (fits) return static_cast<T>(*s);
    key_error(key, std::to_string(*s) + " does not fit " + gguf_value_type_name(v.type));
  }
  key_error(key, std::string(gguf_value_type_name(v.type)) + " value does not hold an integer");
}

double checked_float(const GgufValue& v, const std::string& key) {
  if (const auto* d = std::get_if<double>(&v.v)) return *d;
  key_error(key, std::string(gguf_value_type_name(v.type)) + " value does not hold a float");
}

// The encoding of a value without its leading type tag (array items carry no tag of their own).
void put_payload(Bytes& out, const GgufValue& v, const std::string& key) {
  switch (v.type) {
    case GgufValueType::UINT8: out.put(checked_int<uint8_t>(v, key)); return;
    case GgufValueType::INT8: out.put(checked_int<int8_t>(v, key)); return;
    case GgufValueType::UINT16: out.put(checked_int<uint16_t>(v, key)); return;
    case GgufValueType::INT16: out.put(checked_int<int16_t>(v, key)); return;
    case GgufValueType::UINT32: out.put(checked_int<uint32_t>(v, key)); return;
    case GgufValueType::INT32: out.put(checked_int<int32_t>(v, key)); return;
    case GgufValueType::UINT64: out.put(checked_int<uint64_t>(v, key)); return;
    case GgufValueType::INT64: out.put(checked_int<int64_t>(v, key)); return;
    case GgufValueType::FLOAT32: out.put(static_cast<float>(checked_float(v, key))); return;
    case GgufValueType::FLOAT64: out.put(checked_float(v, key)); return;
    case GgufValueType::BOOL: {
      const auto* b = std::get_if<bool>(&v.v);
      if (!b) key_error(key, "BOOL value does not hold a bool");
      out.put<uint8_t>(*b ? 1 : 0);
      return;
    }
    case GgufValueType::STRING: {
      const auto* s = std::get_if<std::string>(&v.v);
      if (!s) key_error(key, "STRING value does not hold a string");
      out.put_string(*s);
      return;
    }
    case GgufValueType::ARRAY: {
      const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v.v);
      if (!a || !*a) key_error(key, "ARRAY value does not hold an array");
      out.put(static_cast<uint32_t>((*a)->elem_type));
      out.put<uint64_t>((*a)->items.size());
      for (const GgufValue& item : (*a)->items) {
        if (item.type != (*a)->elem_type)
          key_error(key, std::string("array item of type ") + gguf_value_type_name(item.type) + " in an array of " +
                             gguf_value_type_name((*a)->elem_type));
        put_payload(out, item, key);
      }
      return;
    }
  }
  key_error(key, "unknown value type " + std::to_string(static_cast<uint32_t>(v.type)));
}

template <typename T, typename Store>
GgufValue make_array(GgufValueType elem, const std::vector<T>& values, Store store) {
  auto arr = std::make_shared<GgufArray>();
  arr->elem_type = elem;
  arr->items.reserve(values.size());
  for (const T& x : values) arr->items.push_back(GgufValue{elem, store(x)});
  return GgufValue{GgufValueType::ARRAY, std::move(arr)};
}

// The reader's tensor rules, applied before anything is stored; returns the data size of the shape.
size_t checked_tensor_bytes(const std::string& name, GgmlType type, const std::vector<int64_t>& ne) {
  const std::string where = "GgufWriter: tensor '" + name + "': ";
  const auto type_id = static_cast<uint32_t>(type);
  const GgmlTypeInfo ti = ggml_type_info(type_id);
  if (!ti.name) fail(where + "unknown type " + ggml_type_name(type_id));
  if (ne.empty() || ne.size() > kMaxTensorDims) fail(where + "needs 1 to 4 dimensions");
  int64_t n = 1;
  for (int64_t d : ne) {
    if (d <= 0) fail(where + "dimension " + std::to_string(d) + " is not positive");
    if (__builtin_mul_overflow(n, d, &n)) fail(where + "element count overflows 64 bits");
  }
  if (ne[0] % ti.block_elems != 0)
    fail(where + "row length " + std::to_string(ne[0]) + " is not a multiple of the " + ti.name + " block size " +
         std::to_string(ti.block_elems));
  return ggml_row_bytes(ti, n);
}

uint64_t align_up(uint64_t v, uint64_t alignment) { return (v + alignment - 1) & ~(alignment - 1); }

}  // namespace

void GgufWriter::set_value(const std::string& key, const GgufValue& v) {
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = v;
      return;
    }
  }
  kv_.emplace_back(key, v);
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) { set_value(key, {GgufValueType::UINT32, uint64_t{v}}); }
void GgufWriter::set_i32(const std::string& key, int32_t v) { set_value(key, {GgufValueType::INT32, int64_t{v}}); }
void GgufWriter::set_u64(const std::string& key, uint64_t v) { set_value(key, {GgufValueType::UINT64, v}); }
void GgufWriter::set_f32(const std::string& key, float v) { set_value(key, {GgufValueType::FLOAT32, double{v}}); }
void GgufWriter::set_bool(const std::string& key, bool v) { set_value(key, {GgufValueType::BOOL, v}); }
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  set_value(key, {GgufValueType::STRING, v});
}

void GgufWriter::set_array_string(const std::string& key, const std::vector<std::string>& v) {
  set_value(key, make_array(GgufValueType::STRING, v, [](const std::string& s) { return s; }));
}
void GgufWriter::set_array_f32(const std::string& key, const std::vector<float>& v) {
  set_value(key, make_array(GgufValueType::FLOAT32, v, [](float x) { return double{x}; }));
}
void GgufWriter::set_array_i32(const std::string& key, const std::vector<int32_t>& v) {
  set_value(key, make_array(GgufValueType::INT32, v, [](int32_t x) { return int64_t{x}; }));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                            const void* data, size_t nbytes) {
  for (const Tensor& t : tensors_)
    if (t.name == name) fail("GgufWriter: tensor '" + name + "': added twice");
  const size_t expected = checked_tensor_bytes(name, type, ne);
  if (nbytes != expected)
    fail("GgufWriter: tensor '" + name + "': " + std::to_string(nbytes) + " bytes given, the shape needs " +
         std::to_string(expected));
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, type, ne, std::vector<uint8_t>(p, p + nbytes), nullptr, nbytes});
}

void GgufWriter::add_tensor_fill(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                                 TensorFill fill) {
  for (const Tensor& t : tensors_)
    if (t.name == name) fail("GgufWriter: tensor '" + name + "': added twice");
  if (!fill) fail("GgufWriter: tensor '" + name + "': no fill function");
  const size_t size = checked_tensor_bytes(name, type, ne);
  tensors_.push_back({name, type, ne, {}, std::move(fill), size});
}

void GgufWriter::add_tensor_f32(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                                const float* values) {
  if (!ggml_type_info(static_cast<uint32_t>(type)).supported)
    fail("GgufWriter: tensor '" + name + "': cannot quantize to " + ggml_type_name(static_cast<uint32_t>(type)));
  std::vector<uint8_t> bytes(checked_tensor_bytes(name, type, ne));
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  quantize_row(type, values, bytes.data(), n);
  add_tensor(name, type, ne, bytes.data(), bytes.size());
}

struct GgufWriter::Layout {
  std::vector<uint8_t> head;      // header, metadata and tensor table
  std::vector<uint64_t> offsets;  // of each tensor's data, relative to data_start
  uint64_t data_start = 0;
  uint64_t file_size = 0;
};

GgufWriter::Layout GgufWriter::layout() const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
    fail("GgufWriter: alignment " + std::to_string(alignment_) + " is not a positive power of two");

  std::vector<std::pair<std::string, GgufValue>> kvs = kv_;
  bool alignment_written = false;
  for (const auto& [key, value] : kvs) {
    if (key != "general.alignment") continue;
    alignment_written = true;
    if (value.type != GgufValueType::UINT32 || checked_int<uint32_t>(value, key) != alignment_)
      key_error(key, "must be the UINT32 " + std::to_string(alignment_) + " given to the constructor");
  }
  if (!alignment_written && alignment_ != kDefaultAlignment) {
    if (alignment_ > std::numeric_limits<uint32_t>::max())
      fail("GgufWriter: alignment " + std::to_string(alignment_) + " does not fit general.alignment (UINT32)");
    kvs.emplace_back("general.alignment", GgufValue{GgufValueType::UINT32, alignment_});
  }

  Bytes head;
  head.put<uint32_t>(0x46554747);  // "GGUF" read as a little-endian u32
  head.put<uint32_t>(kGgufVersion);
  head.put<uint64_t>(tensors_.size());
  head.put<uint64_t>(kvs.size());
  for (const auto& [key, value] : kvs) {
    head.put_string(key);
    head.put(static_cast<uint32_t>(value.type));
    put_payload(head, value, key);
  }
  Layout out;
  uint64_t data_size = 0;
  for (const Tensor& t : tensors_) {
    data_size = align_up(data_size, alignment_);
    out.offsets.push_back(data_size);
    data_size += t.size;
    head.put_string(t.name);
    head.put<uint32_t>(t.ne.size());
    for (int64_t d : t.ne) head.put<uint64_t>(d);
    head.put(static_cast<uint32_t>(t.type));
    head.put(out.offsets.back());
  }
  out.head = head.data();
  out.data_start = align_up(out.head.size(), alignment_);
  // The file ends right after the last tensor (no padding after it).
  out.file_size = out.data_start + data_size;
  return out;
}

uint64_t GgufWriter::file_size() const { return layout().file_size; }

namespace {

// pwrite until all n bytes are written; false (errno set) on failure.
bool pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (w == 0) {
      errno = EIO;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return true;
}

}  // namespace

void GgufWriter::write(const std::string& path, const GgufWriteOptions& options) const {
  const Layout lay = layout();
  if (options.chunk_bytes == 0) fail("GgufWriter: chunk_bytes must be positive");

  // The pieces to write: the header, then every tensor in chunks. Gaps between them (alignment padding) are
  // never written: the file is sized first, and unwritten ranges read as zeros.
  struct Piece {
    int64_t tensor;  // -1: the header
    uint64_t offset;  // within the tensor (or the header)
    size_t n;
  };
  std::vector<Piece> pieces{{-1, 0, lay.head.size()}};
  uint64_t to_write = lay.head.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    for (uint64_t off = 0; off < tensors_[i].size; off += options.chunk_bytes)
      pieces.push_back({static_cast<int64_t>(i), off,
                        static_cast<size_t>(std::min<uint64_t>(options.chunk_bytes, tensors_[i].size - off))});
    to_write += tensors_[i].size;
  }

  std::string tmp = path + ".XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) fail(path + ": cannot create a temporary file next to it: " + std::strerror(errno));
  (void)fchmod(fd, 0644);  // mkstemp creates 0600; a model file is meant to be shared
  auto give_up = [&](const std::string& what) {
    ::close(fd);
    std::remove(tmp.c_str());
    fail(path + ": " + what);
  };
  // Reserve the whole file first where the file system can (a full disk fails here, before any data is written).
  if (lay.file_size > 0 && ::fallocate(fd, 0, 0, static_cast<off_t>(lay.file_size)) != 0) {
    if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
      give_up("cannot reserve " + std::to_string(lay.file_size) + " bytes: " + std::strerror(errno));
    if (::ftruncate(fd, static_cast<off_t>(lay.file_size)) != 0)
      give_up(std::string("cannot size the file: ") + std::strerror(errno));
  }

  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;  // guards the fields below and serializes progress calls
  int write_errno = 0;
  std::exception_ptr fill_error;
  bool interrupted = false;
  uint64_t written = 0;

  auto worker = [&] {
    std::vector<uint8_t> buf;
    while (!stop.load(std::memory_order_relaxed)) {
      const size_t i = next.fetch_add(1);
      if (i >= pieces.size()) return;
      if (options.cancel && options.cancel->load()) {
        std::lock_guard<std::mutex> lock(mu);
        interrupted = true;
        stop = true;
        return;
      }
      const Piece& p = pieces[i];
      const uint8_t* src;
      uint64_t file_offset;
      if (p.tensor < 0) {
        src = lay.head.data();
        file_offset = 0;
      } else {
        const Tensor& t = tensors_[static_cast<size_t>(p.tensor)];
        file_offset = lay.data_start + lay.offsets[static_cast<size_t>(p.tensor)] + p.offset;
        if (t.fill) {
          if (buf.size() < p.n) buf.resize(p.n);
          try {
            t.fill(p.offset, buf.data(), p.n);
          } catch (...) {
            std::lock_guard<std::mutex> lock(mu);
            if (!fill_error) fill_error = std::current_exception();
            stop = true;
            return;
          }
          src = buf.data();
        } else {
          src = t.bytes.data() + p.offset;
        }
      }
      if (!pwrite_all(fd, src, p.n, file_offset)) {
        std::lock_guard<std::mutex> lock(mu);
        if (!write_errno) write_errno = errno;
        stop = true;
        return;
      }
      std::lock_guard<std::mutex> lock(mu);
      written += p.n;
      if (options.progress) options.progress(written, to_write);
    }
  };
  const int n_threads = std::max(1, std::min<int>(options.threads, static_cast<int>(pieces.size())));
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();

  if (fill_error) {
    ::close(fd);
    std::remove(tmp.c_str());
    std::rethrow_exception(fill_error);
  }
  if (interrupted) give_up("interrupted; nothing was written under this name");
  if (write_errno) give_up(std::string("cannot write: ") + std::strerror(write_errno));
  if (::close(fd) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail(path + ": cannot write: " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail(path + ": cannot write: " + std::strerror(err));
  }
}

}  // namespace swrun
