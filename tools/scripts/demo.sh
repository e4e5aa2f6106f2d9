#!/usr/bin/env bash
# The main job: set up, build, and reconstruct the shipped sample measurements (data/samples/, 4 scenes of the
# paper's cross array, K = 15, 30 dB SNR, with their ground truth) with the shipped Deep2S model on the best
# available device (the GPU when one is present), write the volumes and PNG projections, and print PSNR and SSIM
# against the ground truth next to the adjoint's.
#   tools/scripts/demo.sh [OUT_DIR]     (default: out)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out}
samples=data/samples/paper_k15_snr30.h5
model=models/trained/deep2s_paper_k15_snr30.h5
tools/scripts/setup.sh build
mkdir -p "$out"
build/nfmimo reconstruct "$samples" --method deep2s --model "$model" --device auto --out "$out/samples_deep2s.h5" \
  --png "$out/samples_deep2s.png" --vti "$out/samples_deep2s.vti" --force
build/nfmimo evaluate --data "$samples" --methods adjoint,deep2s --model "$model" --device auto \
  --json "$out/samples_evaluate.json" --png "$out/samples_vs_truth.png" --png-frames 4 --force
echo "main job: wrote $out/samples_deep2s.{h5,png,vti} (Deep2S volumes) and $out/samples_vs_truth.png" \
  "(ground truth | adjoint | Deep2S); model: $model (see docs/models.md)"
