#!/usr/bin/env bash
# Extracts llama.cpp's tokenizer test vocabularies (vendor/llama.cpp/models/ggml-vocab-*.gguf with their .inp/.out
# cases) from PyPI's llama-cpp-python 0.3.36 source package (scripts/fetch-llama-sdist.sh) into
# ~/.cache/swrun/llama-vocabs-0.3.36 (or DIR). Prints the directory.
set -euo pipefail
version=0.3.36
cache="${SWRUN_CACHE:-$HOME/.cache/swrun}"
dest="${1:-$cache/llama-vocabs-$version}"
names=(llama-spm phi-3 llama-bpe qwen2 qwen35 gpt-2 deepseek-llm deepseek-coder command-r starcoder falcon refact mpt gemma-4)
missing=0
for n in "${names[@]}"; do
  for ext in gguf gguf.inp gguf.out; do [ -s "$dest/ggml-vocab-$n.$ext" ] || missing=1; done
done
if [ "$missing" = 1 ]; then
  sdist=$("$(dirname "$0")/fetch-llama-sdist.sh")
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
