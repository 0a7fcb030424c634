#!/usr/bin/env bash
# Installs what swrun needs to build and test, where missing: Debian packages (compilers, CMake, SentencePiece, PCRE2,
# CLI11, GoogleTest, nlohmann-json) and the Python packages the test references use (numpy, gguf).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libsentencepiece-dev libpcre2-dev libcli11-dev libgtest-dev nlohmann-json3-dev python3 python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import numpy, gguf' >/dev/null 2>&1; then
  echo "setup: installing Python packages numpy, gguf" >&2
  python3 -m pip install -q numpy gguf 2>/dev/null || python3 -m pip install -q --break-system-packages numpy gguf
fi
