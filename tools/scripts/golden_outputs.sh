#!/usr/bin/env bash
# Fixed-seed outputs of the network engine, as SHA-256 of every numeric dataset's bytes: the guard for
# refactors of models/ that must not change a single bit (CPU, one thread, so reductions keep their order).
#   tools/scripts/golden_outputs.sh BUILD_DIR > hashes.txt
# Covers training (forward, backward, Adam) of every architecture, inference of each trained model through
# `reconstruct`, the PnP denoiser, and the shipped Deep2S model on the paper's grid.
set -euo pipefail
build=${1:?usage: golden_outputs.sh BUILD_DIR}
bin=$(realpath "$build")/nfmimo
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
run() { "$bin" "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }; }

grid="--grid=-0.08:0.08:8,-0.08:0.08:8,0.4:0.55:8"
tiny="--synthesize --system paper --freqs 4 $grid --epoch-size 4 --batch 2 --val-count 2 --device cpu"
run synthesize --out "$work/test.h5" --device cpu --count 2 --system paper --freqs 4 $grid --seed 99 --snr 30
for arch in unet3d unet2d resnet cv-unet3d deepdi deep2s-plus; do
  run train --arch "$arch" --width 2 $tiny --snr 30 --epochs 2 --seed 3 --out "$work/$arch.h5"
done
run train --arch denoiser --width 2 $tiny --epochs 2 --seed 3 --out "$work/denoiser.h5"
declare -A method=([unet3d]=deep2s [unet2d]=deep2s-unet2d [resnet]=deep2s-resnet [cv-unet3d]=cv-deep2s
                   [deepdi]=deepdi [deep2s-plus]=deep2s-plus)
for arch in "${!method[@]}"; do
  run reconstruct "$work/test.h5" --out "$work/rec-$arch.h5" --method "${method[$arch]}" --model "$work/$arch.h5" \
    --device cpu
done
run reconstruct "$work/test.h5" --out "$work/rec-pnp.h5" --method pnp --model "$work/denoiser.h5" --device cpu \
  --param iterations=2
run synthesize --out "$work/paper.h5" --device cpu --count 2 --system paper --freqs 15 --seed 7 --snr 30
run reconstruct "$work/paper.h5" --out "$work/rec-shipped.h5" --method deep2s \
  --model "$src/models/trained/deep2s_paper_k15_snr30.h5" --device cpu

"${PYTHON:-/usr/bin/python3}" - "$work" <<'PY'
import hashlib, os, sys
import h5py
work = sys.argv[1]
for name in sorted(os.listdir(work)):
    if not name.endswith(".h5") or name.endswith(".checkpoint.h5") or name in ("test.h5", "paper.h5"):
        continue
    with h5py.File(os.path.join(work, name), "r") as f:
        items = []
        f.visititems(lambda path, obj: items.append(path) if isinstance(obj, h5py.Dataset) else None)
        for path in sorted(items):
            d = f[path]
            if d.dtype.kind not in "fiuc":
                continue
            print(f"{name}:{path} {hashlib.sha256(d[()].tobytes()).hexdigest()}")
PY
