#!/usr/bin/env bash
# Here (no GPU): builds what the GPU check runs and packs it into .carry/ and .carry.tgz (both ignored; the device
# tool's `carry` takes .carry.tgz, unpacked there with `tar xzf .carry.tgz`), with our libsentencepiece (the
# device's copy is ABI-incompatible) and libpcre2-8 (in case the device has none) under .carry/lib.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build-gpu}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target swrun swbench gemv_bench gemm_bench kernel_trace test_cuda_attention test_cuda_backend \
  test_cuda_dequant test_cuda_model test_cuda_decode test_cuda_program swrun_logits make_synthetic_model
rm -rf "$root/.carry" && mkdir -p "$root/.carry/lib"
cp "$build/swrun" "$build/swbench" "$build/gemv_bench" "$build/gemm_bench" "$build"/tests/test_cuda_* "$build"/tests/swrun_logits \
  "$build"/tests/make_synthetic_model "$root/.carry/"
strip "$root/.carry/"* 2>/dev/null || true
for lib in libsentencepiece.so.0 libpcre2-8.so.0; do
  cp -L "$(ldconfig -p | awk -v lib="$lib" '$1 == lib {print $NF; exit}')" "$root/.carry/lib/"
done
# The kernel tracer and the CUPTI it was built against (tools/kernel_trace.cpp).
cp "$build/libkernel_trace.so" "$root/.carry/lib/"
cp -L "$(ldd "$build/libkernel_trace.so" | awk '/libcupti/ {print $3; exit}')" "$root/.carry/lib/"
git -C "$root" rev-parse HEAD >"$root/.carry/COMMIT"
git -C "$root" diff --quiet HEAD -- . ':!bench/results' || echo "+uncommitted" >>"$root/.carry/COMMIT"
# The binaries carry every kernel (statically linked): compressed they exceed the device tool's 64 MiB per call, so
# the archive also comes in parts (.carry.tgz.0, .1, ...) of 55 MB, one per call; `cat .carry.tgz.* | tar xz` there.
tar czf "$root/.carry.tgz" -C "$root" .carry
rm -f "$root"/.carry.tgz.[0-9]*
split -b 55M -d -a 1 "$root/.carry.tgz" "$root/.carry.tgz."
du -sh "$root/.carry" "$root/.carry.tgz" "$root"/.carry.tgz.[0-9]*
