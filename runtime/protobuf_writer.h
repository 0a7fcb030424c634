// Minimal protobuf wire-format encoder: just enough to serialize a SentencePiece ModelProto in memory, because
// the Debian sentencepiece package ships no generated sentencepiece_model.pb.h to build one with.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace swrun {

class ProtobufWriter {
 public:
  void add_string(uint32_t field, const std::string& value) {
    tag(field, kLengthDelimited);
    varint(value.size());
    bytes_ += value;
  }
  void add_message(uint32_t field, const ProtobufWriter& message) { add_string(field, message.bytes_); }
  // int32 and enum fields: negative values are sign-extended to 64 bits, as the wire format requires.
  void add_int32(uint32_t field, int32_t value) {
    tag(field, kVarint);
    varint(static_cast<uint64_t>(static_cast<int64_t>(value)));
  }
  void add_bool(uint32_t field, bool value) {
    tag(field, kVarint);
    varint(value ? 1 : 0);
  }
  void add_float(uint32_t field, float value) {
    tag(field, kFixed32);
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  }

  const std::string& bytes() const { return bytes_; }

 private:
  enum WireType : uint32_t { kVarint = 0, kLengthDelimited = 2, kFixed32 = 5 };
  void tag(uint32_t field, WireType type) { varint((static_cast<uint64_t>(field) << 3) | type); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      bytes_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    bytes_.push_back(static_cast<char>(v));
  }
  std::string bytes_;
};

}  // namespace swrun
