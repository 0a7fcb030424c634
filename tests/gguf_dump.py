#!/usr/bin/env python3
"""Prints a GGUF file as canonical text using the `gguf` package's reader, the independent reference that
tests/test_gguf.cpp compares the C++ reader against (it renders the same format itself).

Lines: version, alignment, data_offset, one `kv` line per metadata key (strings hex-encoded, floats with
%.17g, arrays as TYPE[item,...]), one `tensor` line per tensor (offset relative to the data section, first and
last 16 data bytes in hex). Prints SKIP and exits 0 when the gguf package is missing.
"""
import sys

try:
    import gguf
except ImportError:
    print("SKIP")
    sys.exit(0)

VT = gguf.GGUFValueType


def render(parts, i, vtype):
    """Renders the value whose first part is parts[i]; returns (text, index of the next part)."""
    if vtype == VT.STRING:
        return bytes(parts[i + 1]).hex(), i + 2
    if vtype == VT.ARRAY:
        elem = VT(int(parts[i][0]))
        count = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(count):
            text, i = render(parts, i, elem)
            items.append(text)
        return f"{elem.name}[{','.join(items)}]", i
    x = parts[i][0]
    if vtype in (VT.FLOAT32, VT.FLOAT64):
        return "%.17g" % float(x), i + 1
    if vtype == VT.BOOL:
        return ("1" if bool(x) else "0"), i + 1
    return str(int(x)), i + 1


def main(path):
    r = gguf.GGUFReader(path)
    out = [f"version\t{int(r.fields['GGUF.version'].parts[0][0])}", f"alignment\t{r.alignment}",
           f"data_offset\t{r.data_offset}"]
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = VT(int(field.parts[2][0]))
        text, end = render(field.parts, 3, vtype)
        assert end == len(field.parts), key
        out.append(f"kv\t{key}\t{vtype.name}\t{text}")
    for t in r.tensors:
        raw = bytes(r.data[t.data_offset:t.data_offset + t.n_bytes])
        dims = ",".join(str(int(d)) for d in t.shape)
        out.append(f"tensor\t{t.name}\t{int(t.tensor_type)}\t{dims}\t{t.data_offset - r.data_offset}\t{t.n_bytes}"
                   f"\t{raw[:16].hex()}\t{raw[-16:].hex()}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
