#!/usr/bin/env bash
# Extracts llama.cpp's tokenizer test vocabularies (vendor/llama.cpp/models/ggml-vocab-*.gguf with their .inp/.out
# cases) from PyPI's llama-cpp-python 0.3.36 source package into ~/.cache/swrun/llama-vocabs-0.3.36 (or DIR).
# Downloads the package into ~/.cache/swrun when it is not there yet. Prints the directory.
set -euo pipefail
version=0.3.36
cache="${SWRUN_CACHE:-$HOME/.cache/swrun}"
dest="${1:-$cache/llama-vocabs-$version}"
names=(llama-spm phi-3 llama-bpe qwen2 qwen35 gpt-2 deepseek-llm deepseek-coder command-r starcoder falcon refact mpt)
sdist="$cache/llama_cpp_python-$version.tar.gz"
missing=0
for n in "${names[@]}"; do
  for ext in gguf gguf.inp gguf.out; do [ -s "$dest/ggml-vocab-$n.$ext" ] || missing=1; done
done
if [ "$missing" = 1 ]; then
  if [ ! -s "$sdist" ]; then
    echo "fetch-llama-vocabs: downloading llama-cpp-python $version (source package) from PyPI" >&2
    mkdir -p "$cache"
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache" >&2
  fi
  members=()
  for n in "${names[@]}"; do
    for ext in gguf gguf.inp gguf.out; do
      members+=("llama_cpp_python-$version/vendor/llama.cpp/models/ggml-vocab-$n.$ext")
    done
  done
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "${dest%/}.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$sdist" -C "$tmp" --strip-components=4 "${members[@]}"
  mkdir -p "$dest"
  mv "$tmp"/ggml-vocab-* "$dest"/
fi
echo "$dest"
