#!/usr/bin/env bash
# Builds llama.cpp's tokenizer (libllama, CPU only) from PyPI's llama-cpp-python 0.3.36 source package and our
# driver tests/reference/llama_tokenize_ids.cpp, under ~/.cache/swrun/llama.cpp-0.3.36. Prints the driver's path.
# About 10 minutes on 2 cores; tests/reference/tokenizer_vs_llamacpp.py uses it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=0.3.36
cache="${SWRUN_CACHE:-$HOME/.cache/swrun}"
src="$cache/llama.cpp-$version"
if [ ! -f "$src/CMakeLists.txt" ]; then
  sdist=$("$root/scripts/fetch-llama-sdist.sh")
  mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=3 --exclude='*.gguf' "llama_cpp_python-$version/vendor/llama.cpp"
fi
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF \
  -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$src/build" -j"${JOBS:-2}" --target llama >&2
bin="$src/build/bin"
c++ -O2 -std=c++17 "$root/tests/reference/llama_tokenize_ids.cpp" -I"$src/include" -I"$src/ggml/include" \
  -L"$bin" -lllama -lggml -lggml-base -Wl,-rpath,"$bin" -o "$bin/llama_tokenize_ids"
echo "$bin/llama_tokenize_ids"
