#!/usr/bin/env bash
# The README's second command (and CI's): install, build, fetch the example model, run every test.
# GPU tests skip where no GPU is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
"$root/scripts/fetch-model.sh" >/dev/null
cd "$root/build" && ctest --output-on-failure -j"$(nproc)" "$@"
