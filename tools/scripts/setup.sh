#!/usr/bin/env bash
# Installs the Debian packages nfmimo needs, if any are missing, then configures and builds.
#   tools/scripts/setup.sh [BUILD_DIR]      (default: build)
# Environment: NFMIMO_CMAKE_ARGS (extra CMake arguments, for example -DNFMIMO_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/../.."
build_dir=${1:-build}

packages=(cmake ninja-build g++ pkg-config libhdf5-dev libeigen3-dev libgtest-dev libcli11-dev libfmt-dev
          nlohmann-json3-dev libpng-dev libstb-dev libdnnl-dev python3 python3-h5py python3-numpy python3-skimage)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${NFMIMO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" --parallel
