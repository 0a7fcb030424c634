#!/usr/bin/env python3
"""Writes the GGUF reader's test corpus: malformed files under corpus/ (each must fail with a clean error,
expected_errors.txt says which words the message must contain) and valid seeds under seeds/ (each must parse;
they give the fuzzer a structure to mutate). Bytes are assembled by hand here, independently of the C++
writer, so the reader is not only ever tested against its own twin. Rerun after editing; the output is
deterministic.

Usage: python3 tests/fuzz/make_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
GGML_F32, GGML_Q8_0, GGML_Q4_K, GGML_F64 = 0, 8, 12, 28


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b)) + b


def header(n_tensors, n_kv, version=3, magic=b"GGUF"):
    return magic + u32(version) + u64(n_tensors) + u64(n_kv)


def kv(key, vtype, payload):
    return gstr(key) + u32(vtype) + payload


def arr(elem_type, items_payload, count):
    return u32(elem_type) + u64(count) + items_payload


def tensor_info(name, dims, ggml_type, offset):
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)


def pad(b, alignment=32):
    return b + b"\0" * (-len(b) % alignment)


def f32_tensor_file(dims, offset=0, ggml_type=GGML_F32, data_bytes=None, extra_kv=b"", n_extra_kv=0,
                    alignment=32):
    """A file with one tensor; data_bytes defaults to what the tensor needs."""
    n = 1
    for d in dims:
        n *= d
    head = header(1, 1 + n_extra_kv) + kv("general.architecture", STRING, gstr("test")) + extra_kv
    head += tensor_info("w", dims, ggml_type, offset)
    data = b"\x11" * (n * 4 if data_bytes is None else data_bytes)
    return pad(head, alignment) + data


def valid_seed(with_unknown_type):
    nested = arr(ARRAY, arr(I32, struct.pack("<2i", -1, 2), 2) + arr(STRING, gstr("a") + gstr(""), 2), 2)
    kvs = [
        kv("general.architecture", STRING, gstr("llama")),
        kv("general.alignment", U32, u32(64)),
        kv("u8", U8, b"\xff"), kv("i8", I8, b"\x80"), kv("u16", U16, struct.pack("<H", 65535)),
        kv("i16", I16, struct.pack("<h", -2)), kv("u32", U32, u32(7)), kv("i32", I32, struct.pack("<i", -7)),
        kv("f32", F32, struct.pack("<f", 1.5)), kv("bool", BOOL, b"\x01"), kv("u64", U64, u64(2**64 - 1)),
        kv("i64", I64, struct.pack("<q", -2**63)), kv("f64", F64, struct.pack("<d", -0.25)),
        kv("tokens", ARRAY, arr(STRING, gstr("<s>") + gstr("hi"), 2)),
        kv("scores", ARRAY, arr(F32, struct.pack("<3f", 0, -1, 2), 3)),
        kv("nested", ARRAY, nested),
    ]
    infos = [tensor_info("a", [4, 2], GGML_F32, 0), tensor_info("b", [32], GGML_Q8_0, 64)]
    data = pad(b"\x01" * 32, 64) + b"\x02" * 34
    if with_unknown_type:  # the reader accepts ids it does not know; their size is unknown, so 0
        infos.append(tensor_info("c", [3], 99, 128))
        data = pad(data, 64) + b"\x03" * 8
    head = header(len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    return pad(head, 64) + data


def corpus():
    """(file name, bytes, words the error must contain)."""
    cases = [
        ("empty.gguf", b"", ["GGUF magic"]),
        ("bad_magic.gguf", header(0, 0, magic=b"GGML"), ["bad magic", "byte offset 0"]),
        ("truncated_header.gguf", b"GGUF" + u32(3) + u64(0), ["metadata count", "byte offset 16"]),
        ("version1.gguf", header(0, 0, version=1), ["unsupported GGUF version 1"]),
        ("version_big_endian.gguf", b"GGUF" + struct.pack(">I", 3) + struct.pack(">Q", 0) * 2, ["big-endian"]),
        ("huge_kv_count.gguf", header(0, 2**63), ["metadata count 9223372036854775808", "cannot fit"]),
        ("huge_tensor_count.gguf", header(2**40, 0), ["tensor count 1099511627776", "cannot fit"]),
        ("key_length_past_end.gguf", header(0, 1) + u64(2**62) + b"general", ["key length", "key #0"]),
        ("string_length_past_end.gguf", header(0, 1) + gstr("general.name") + u32(STRING) + u64(1000) + b"abc",
         ["string length 1000", "key 'general.name'", "byte offset 48"]),
        ("value_truncated.gguf", header(0, 1) + gstr("n") + u32(U64) + b"\1\2\3", ["uint64 value", "key 'n'"]),
        ("huge_array_count.gguf", header(0, 1) + kv("tokens", ARRAY, arr(STRING, gstr("x"), 2**61)),
         ["array of 2305843009213693952 STRING", "key 'tokens'"]),
        ("huge_nested_array_count.gguf",
         header(0, 1) + kv("n", ARRAY, arr(ARRAY, arr(U8, b"", 2**50), 1)), ["array of 1125899906842624 UINT8"]),
        ("unknown_value_type.gguf", header(0, 1) + kv("k", 13, u32(0)), ["unknown metadata value type 13", "key 'k'"]),
        ("unknown_array_elem_type.gguf", header(0, 1) + kv("k", ARRAY, arr(77, b"", 0)),
         ["unknown array element type 77", "key 'k'"]),
        ("bad_bool.gguf", header(0, 1) + kv("flag", BOOL, b"\x02"), ["bool value 2", "key 'flag'"]),
        ("deeply_nested_arrays.gguf",
         header(0, 1) + gstr("deep") + u32(ARRAY) + (u32(ARRAY) + u64(1)) * 40 + u32(U8) + u64(0),
         ["nested deeper", "key 'deep'"]),
        ("duplicate_key.gguf", header(0, 2) + kv("a", U32, u32(1)) + kv("a", U32, u32(2)),
         ["duplicate metadata key", "key 'a'", "byte offset 41"]),
        ("alignment_zero.gguf", header(0, 1) + kv("general.alignment", U32, u32(0)),
         ["alignment 0 is not a positive power of two", "key 'general.alignment'"]),
        ("alignment_not_pow2.gguf", header(0, 1) + kv("general.alignment", U32, u32(48)),
         ["alignment 48 is not a positive power of two"]),
        ("alignment_string.gguf", header(0, 1) + kv("general.alignment", STRING, gstr("32")),
         ["alignment must be an integer", "STRING"]),
        ("alignment_negative.gguf", header(0, 1) + kv("general.alignment", I32, struct.pack("<i", -32)),
         ["alignment -32"]),
        ("huge_alignment.gguf",
         f32_tensor_file([4], extra_kv=kv("general.alignment", U64, u64(2**63)), n_extra_kv=1),
         ["data section", "past the end"]),
        ("tensor_name_length_past_end.gguf", header(1, 0) + u64(2**63) + b"x" * 20,
         ["tensor name length", "tensor #0"]),
        ("tensor_info_truncated.gguf", header(1, 0) + gstr("w") + u32(2) + u64(4) + b"\0" * 3,
         ["dimension", "tensor 'w'"]),
        ("too_many_dims.gguf", header(1, 0) + tensor_info("w", [1] * 5, 0, 0) + b"\0" * 64,
         ["5 dimensions", "tensor 'w'"]),
        ("zero_dim.gguf", f32_tensor_file([4, 0, 2]), ["dimension 1 is 0", "tensor 'w'"]),
        ("element_count_overflow.gguf", f32_tensor_file([2**32, 2**32], data_bytes=64), ["element count overflows", "tensor 'w'"]),
        ("dim_too_large.gguf", f32_tensor_file([2**63], data_bytes=64), ["dimension 0 is 9223372036854775808"]),
        ("data_size_overflow.gguf", f32_tensor_file([2**61, 2], ggml_type=GGML_F64, data_bytes=8),
         ["data size overflows", "tensor 'w'"]),
        ("row_not_block_multiple.gguf", f32_tensor_file([100, 2], ggml_type=GGML_Q4_K, data_bytes=0),
         ["row length 100 is not a multiple of the Q4_K block size 256", "tensor 'w'"]),
        ("misaligned_offset.gguf", f32_tensor_file([4], offset=4, data_bytes=64),
         ["data offset 4 is not a multiple of the alignment 32", "tensor 'w'"]),
        ("offset_past_end.gguf", f32_tensor_file([4], offset=2**40), ["runs past the end", "tensor 'w'"]),
        ("offset_near_u64_max.gguf", f32_tensor_file([4], offset=2**64 - 32), ["runs past the end", "tensor 'w'"]),
        ("data_past_end.gguf", f32_tensor_file([4, 4], data_bytes=63), ["[0, +64)", "runs past the end", "tensor 'w'"]),
        ("unknown_type_offset_past_end.gguf", f32_tensor_file([8], ggml_type=200, offset=1024, data_bytes=0),
         ["runs past the end", "tensor 'w'"]),
        ("data_section_past_end.gguf", header(1, 0) + tensor_info("w", [1], 0, 0),
         ["data section", "past the end of the file"]),
        ("duplicate_tensor_name.gguf",
         pad(header(2, 0) + tensor_info("w", [8], 0, 0) + tensor_info("w", [8], 0, 32)) + b"\0" * 64,
         ["duplicate tensor name", "tensor 'w'"]),
    ]
    return cases


def main():
    corpus_dir = os.path.join(HERE, "corpus")
    seeds_dir = os.path.join(HERE, "seeds")
    for d in (corpus_dir, seeds_dir):
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if name.endswith(".gguf") and not name.startswith("crash-"):
                os.remove(os.path.join(d, name))
    cases = corpus()
    assert len({c[0] for c in cases}) == len(cases), "duplicate corpus file names"
    lines = []
    for name, data, words in cases:
        with open(os.path.join(corpus_dir, name), "wb") as f:
            f.write(data)
        lines.append("\t".join([name] + words))
    with open(os.path.join(HERE, "expected_errors.txt"), "w") as f:
        f.write("# file<TAB>words the error message must contain; generated by make_corpus.py\n")
        f.write("\n".join(lines) + "\n")
    for name, with_unknown in (("valid.gguf", False), ("valid_unknown_type.gguf", True)):
        with open(os.path.join(seeds_dir, name), "wb") as f:
            f.write(valid_seed(with_unknown))
    check_seed_with_gguf_py(os.path.join(seeds_dir, "valid.gguf"))
    print(f"wrote {len(cases)} malformed files to {corpus_dir} and 2 seeds to {seeds_dir}")


def check_seed_with_gguf_py(path):
    """The hand-assembled bytes are only a valid seed if an independent reader agrees."""
    try:
        import gguf
    except ImportError:
        print("gguf package not installed: seed not cross-checked")
        return
    r = gguf.GGUFReader(path)
    assert [t.name for t in r.tensors] == ["a", "b"], r.tensors
    assert r.alignment == 64 and r.fields["nested"].types[:2] == [gguf.GGUFValueType.ARRAY] * 2


if __name__ == "__main__":
    main()
