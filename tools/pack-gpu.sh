#!/usr/bin/env bash
# Here (no GPU): builds what the GPU check runs and packs it into .carry/ and .carry.tar.xz (both ignored; the device
# tool's `carry` takes .carry.tar.xz, unpacked there with `tar xJf .carry.tar.xz`), with our libsentencepiece (the
# device's copy is ABI-incompatible) and libpcre2-8 (in case the device has none) under .carry/lib.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build-gpu}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target swrun swbench gemv_bench gemm_bench logprob_bench kernel_trace make_layout_model \
  test_cuda_attention test_cuda_backend test_cuda_dequant test_cuda_model test_cuda_decode test_cuda_program test_cuda_moe \
  test_cuda_memory_plan swrun_logits make_synthetic_model
rm -rf "$root/.carry" && mkdir -p "$root/.carry/lib"
cp "$build/swrun" "$build/swbench" "$build/gemv_bench" "$build/gemm_bench" "$build/logprob_bench" "$build/make_layout_model" \
  "$build"/tests/test_cuda_* "$build"/tests/swrun_logits "$build"/tests/make_synthetic_model "$root/.carry/"
strip "$root/.carry/"* 2>/dev/null || true
for lib in libsentencepiece.so.0 libpcre2-8.so.0; do
  cp -L "$(ldconfig -p | awk -v lib="$lib" '$1 == lib {print $NF; exit}')" "$root/.carry/lib/"
done
# The kernel tracer and the CUPTI it was built against (tools/kernel_trace.cpp).
cp "$build/libkernel_trace.so" "$root/.carry/lib/"
cp -L "$(ldd "$build/libkernel_trace.so" | awk '/libcupti/ {print $3; exit}')" "$root/.carry/lib/"
git -C "$root" rev-parse HEAD >"$root/.carry/COMMIT"
git -C "$root" diff --quiet HEAD -- . ':!bench/results' || echo "+uncommitted" >>"$root/.carry/COMMIT"
# The binaries link every kernel statically (~45 MB each, ~360 MB in all), but they share most of their bytes: one xz
# stream whose dictionary is larger than a binary finds each repeat and packs them all into ~25 MB, within the
# device tool's 64 MiB per call (gzip's 32 KB window cannot: 150 MB).
rm -f "$root"/.carry.tgz "$root"/.carry.tgz.[0-9]*
tar cf - -C "$root" .carry | xz -9 -T1 --lzma2=dict=192MiB >"$root/.carry.tar.xz"
du -sh "$root/.carry" "$root/.carry.tar.xz"
