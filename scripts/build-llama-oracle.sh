#!/usr/bin/env bash
# llama.cpp's tokenizer as an oracle: our driver tests/reference/llama_tokenize_ids.cpp linked against the llama.cpp
# CPU library that scripts/build-llama-cpp.sh builds for tests/peer from PyPI's llama-cpp-python 0.3.36 source
# package (one extraction and one build, cached under ~/.cache/swrun). Prints the driver's path.
# About 10 minutes on 2 cores when the library is not built yet; tests/reference/tokenizer_vs_llamacpp.py uses it.
set -euo pipefail
build=$("$(dirname "$0")/build-llama-cpp.sh" --tokenizer-oracle)
echo "$build/llama_tokenize_ids"
