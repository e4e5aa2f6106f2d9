#!/usr/bin/env bash
# The main job: set up, build, and reconstruct the shipped sample measurements, on the GPU when one is present.
#   tools/scripts/demo.sh [OUT_DIR]     (default: out)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out}
tools/scripts/setup.sh build
mkdir -p "$out"
build/nfmimo simulate --points "0,0,0.5,1;0.05,-0.05,0.45,0.7;-0.1,0.05,0.6,0.5" --snr 30 --out "$out/points.h5" --force
build/nfmimo reconstruct "$out/points.h5" --method kirchhoff --out "$out/points_kirchhoff.h5" \
  --png "$out/points_kirchhoff.png" --vti "$out/points_kirchhoff.vti" --force
echo "main job: wrote $out/points_kirchhoff.{h5,png,vti}"
