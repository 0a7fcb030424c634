#!/usr/bin/env bash
# Downloads PyPI's llama-cpp-python 0.3.36 source package (which vendors llama.cpp) into ~/.cache/swrun unless it
# is there already. Prints its path.
set -euo pipefail
version=0.3.36
cache="${SWRUN_CACHE:-$HOME/.cache/swrun}"
sdist="$cache/llama_cpp_python-$version.tar.gz"
if [ ! -s "$sdist" ]; then
  echo "fetch-llama-sdist: downloading llama-cpp-python $version (source package) from PyPI" >&2
  mkdir -p "$cache"
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache" >&2
fi
echo "$sdist"
