#!/usr/bin/env bash
# Installs the Debian packages nfmimo needs, if any are missing, then configures and builds.
#   tools/scripts/setup.sh [BUILD_DIR]      (default: build)
# Environment: NFMIMO_CMAKE_ARGS (extra CMake arguments, for example -DNFMIMO_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/../.."
build_dir=${1:-build}

packages=(cmake ninja-build g++ pkg-config libhdf5-dev libeigen3-dev libgtest-dev libcli11-dev libfmt-dev
          nlohmann-json3-dev libpng-dev libstb-dev libdnnl-dev python3 python3-venv python3-pip python3-pytest
          python3-h5py python3-numpy python3-skimage python3-scipy python3-torch xz-utils
          python3-dev libmatio-dev libonnx-dev libprotobuf-dev
          clang libclang-rt-14-dev)
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

# Python test environment: a project-local virtual environment (git ignores .venv/) over Debian's python3, so the
# Debian packages above (h5py, numpy, scikit-image, pytest) stay visible and PyPI-only packages
# (tools/scripts/requirements.txt) never touch the system Python. Reinstalled only when that list changes.
venv=.venv
requirements=tools/scripts/requirements.txt
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if grep -qv '^\s*\(#\|$\)' "$requirements"; then
    echo "setup: installing Python packages from $requirements into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  fi
  echo "$want" >"$stamp"
fi

# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${NFMIMO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" --parallel
