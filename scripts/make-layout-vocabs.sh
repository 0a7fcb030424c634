#!/usr/bin/env bash
# Prepares the small vocab-only GGUFs that build/make_layout_model takes as --vocab (tokenizer.* keys and the
# layout's hyperparameters, no tensors; they travel to the GPU machine beside the binaries), into OUTDIR:
#
#   file             size     tokens  from                                               serves the layouts
#   gemma3.gguf      6.5 MB   262144  the example model's tokenizer (Gemma 3 270M,      gemma3-270m, -1b (as is),
#                                     scripts/fetch-model.sh), written vocab-only by     gemma3-4b, -12b, -27b (padded
#                                     make_layout_model --vocab-only                     to 262208), gemma2-9b (cut to
#                                                                                        256000: Gemma 3's pieces, not
#                                                                                        Gemma 2's own tokenizer)
#   qwen2.gguf       5.9 MB   151936  llama.cpp's models/ggml-vocab-qwen2.gguf           qwen2.5-0.5b, qwen3-8b (as is),
#                                                                                        qwen2.5-7b (padded to 152064)
#   llama-bpe.gguf   7.8 MB   128256  llama.cpp's models/ggml-vocab-llama-bpe.gguf       llama3.1-8b, llama3.1-70b
#                                     (Llama 3's tokenizer)
#   phi-3.gguf       0.7 MB    32064  llama.cpp's models/ggml-vocab-phi-3.gguf           phi3-mini
#
# llama.cpp's files come from the llama-cpp-python 0.3.36 source package (scripts/fetch-llama-vocabs.sh). Each
# loads in `swrun tokenize` and in llama.cpp; a model written with one tokenizes as the source vocabulary does.
#   usage: scripts/make-layout-vocabs.sh OUTDIR      (BUILD: the build directory with make_layout_model, default
#          build/; MODEL: the Gemma 3 GGUF to take the tokenizer from, default the example model)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
build=${BUILD:-$root/build}
make_layout="$build/make_layout_model"
[ -x "$make_layout" ] || { echo "make-layout-vocabs: $make_layout not built (cmake --build $build --target make_layout_model)" >&2; exit 1; }

mkdir -p "$out"
model=${MODEL:-$("$root/scripts/fetch-model.sh")}
"$make_layout" --layout gemma3-270m --vocab "$model" --vocab-only -o "$out/gemma3.gguf" 2>/dev/null
vocabs=$("$root/scripts/fetch-llama-vocabs.sh")
for name in qwen2 llama-bpe phi-3; do
  cp "$vocabs/ggml-vocab-$name.gguf" "$out/$name.gguf.tmp"
  mv "$out/$name.gguf.tmp" "$out/$name.gguf"
done
for name in gemma3 qwen2 llama-bpe phi-3; do
  awk -v n="$name.gguf" -v b="$(stat -c %s "$out/$name.gguf")" 'BEGIN { printf "%-16s %6.1f MB\n", n, b / 1e6 }'
done
