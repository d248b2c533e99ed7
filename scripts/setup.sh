#!/usr/bin/env bash
# Installs the system packages the build needs, only those that are missing, and says which.
# Idempotent: a second run on a ready machine installs nothing and prints one line.
set -euo pipefail
needed=(libopencv-dev clang libclang-dev libudev-dev pkg-config)
missing=()
for p in "${needed[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: system packages present (${needed[*]})"
else
  echo "setup: installing missing system packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: installed ${missing[*]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) and run again" >&2
  exit 1
fi
