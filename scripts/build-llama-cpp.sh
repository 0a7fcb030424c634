#!/usr/bin/env bash
# Builds llama.cpp's CPU library (the independent oracle of tests/peer/) and our driver tests/peer/llama_logits.cpp
# against it, from the llama-cpp-python 0.3.36 sdist (vendor/llama.cpp). Cached under ~/.cache/swrun; idempotent.
# Prints the build directory (llama_logits, llama_perplexity, llama_tokenize_ids when built, and the vocabulary GGUFs are there).
#   usage: build-llama-cpp.sh [--tokenizer-oracle]; SWRUN_CACHE (default ~/.cache/swrun), JOBS (default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SWRUN_CACHE:-$HOME/.cache/swrun}
jobs=${JOBS:-2}
version=0.3.36
sdist="$cache/llama_cpp_python-$version.tar.gz"
src="$cache/llama.cpp-$version/src"
build="$cache/llama.cpp-$version/build"
log() { echo "build-llama-cpp: $*" >&2; }

mkdir -p "$cache"
# An already extracted source (e.g. placed there on a machine without network) needs no sdist.
if [ ! -f "$src/.extracted" ] && [ ! -f "$sdist" ]; then
  log "fetching llama-cpp-python $version (sdist)"
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache" >&2
fi

if [ ! -f "$src/.extracted" ]; then
  log "extracting vendor/llama.cpp"
  rm -rf "$src" && mkdir -p "$src"
  top="llama_cpp_python-$version/vendor/llama.cpp"
  # Only what the CPU library needs, plus the vocabulary GGUFs our synthetic models borrow.
  tar xzf "$sdist" -C "$src" --strip-components=3 \
    "$top/CMakeLists.txt" "$top/cmake" "$top/ggml" "$top/src" "$top/include" "$top/vendor" "$top/licenses" \
    "$top/models/ggml-vocab-qwen2.gguf" "$top/models/ggml-vocab-phi-3.gguf"
  touch "$src/.extracted"
fi

if [ ! -f "$build/lib/.built" ]; then
  log "building llama.cpp (CPU, -j$jobs)"
  start=$(date +%s)
  # GGML_NATIVE=OFF with an explicit AVX2/FMA/F16C set: a native build emits AMX instructions that trap (SIGILL)
  # on VMs whose CPUs advertise more than they allow.
  cmake -S "$src" -B "$build/lib" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_AVX512=OFF -DGGML_CUDA=OFF -DGGML_OPENMP=OFF -DGGML_BACKEND_DL=OFF \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
  cmake --build "$build/lib" --target llama -j"$jobs" >&2
  touch "$build/lib/.built"
  log "llama.cpp built in $(( $(date +%s) - start )) s"
fi

# Our drivers, each rebuilt whenever its source is newer than its binary: llama_logits and llama_perplexity
# (tests/peer), and with
# --tokenizer-oracle llama_tokenize_ids (tests/reference, through scripts/build-llama-oracle.sh).
build_driver() {  # SOURCE NAME
  if [ ! -x "$build/$2" ] || [ "$1" -nt "$build/$2" ]; then
    log "building $2"
    libs=$(find "$build/lib" -name 'libllama.a' -o -name 'libggml*.a' | sort -r)
    c++ -O2 -std=c++17 -I"$src/include" -I"$src/ggml/include" "$1" -o "$build/$2.tmp" \
      -Wl,--start-group $libs -Wl,--end-group -lpthread -ldl -lm
    mv "$build/$2.tmp" "$build/$2"
  fi
}
build_driver "$root/tests/peer/llama_logits.cpp" llama_logits
build_driver "$root/tests/peer/llama_perplexity.cpp" llama_perplexity
if [ "${1:-}" = "--tokenizer-oracle" ]; then
  build_driver "$root/tests/reference/llama_tokenize_ids.cpp" llama_tokenize_ids
fi
ln -sf "$src/models/ggml-vocab-qwen2.gguf" "$src/models/ggml-vocab-phi-3.gguf" "$build/"
echo "$build"
