#!/usr/bin/env bash
# The README's first command: install, build, fetch the example model, generate. Extra args go to swrun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
model=$("$root/scripts/fetch-model.sh")
if [ $# -eq 0 ]; then set -- -p "The capital of France is" -n 32; fi
exec "$root/build/swrun" -m "$model" "$@"
