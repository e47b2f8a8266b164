#!/usr/bin/env bash
# Installs kolo's build and test dependencies from the distribution when any is missing (idempotent).
# Used by scripts/run.sh, scripts/test.sh and .ci/run. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake git pkg-config
  libopenmpi-dev openmpi-bin
  libeigen3-dev libdnnl-dev libcxxopts-dev googletest libbenchmark-dev
  ocl-icd-opencl-dev  # Debian's oneDNN CMake package requires OpenCL, which libdnnl-dev only recommends
  zlib1g-dev libjpeg-dev libpng-dev
  python3 python3-sklearn dataset-fashion-mnist trans-de-en python3-skimage gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "kolo setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
