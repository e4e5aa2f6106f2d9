#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (what CI runs). GPU tests skip without a GPU.
#   tools/scripts/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build_dir=${1:-build}
tools/scripts/setup.sh "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j "$(nproc)"
