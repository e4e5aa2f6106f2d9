#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, after tools/scripts/device_bundle.sh here and the device tool
# with carry [".device"]. One call: the GPU tests, our benchmark side by side with the PyTorch peer, and the
# check of the default inference precision, everything written under $OUT (or ./device-out).
#
# Environment (all optional):
#   PHASES     comma list of tests,bench,precision (default: all three)
#   METHODS    benchmark rows (default adjoint,unet3d,deep2s,train-unet3d)
#   BATCHES    (default 1,64,512)   PRECISIONS (default fp32,tf32,fp16)   SECONDS per row (default 1)
#   PEER_COMPILE  ops whose torch.compile variants the peer runs (default unet3d; "all" or "none")
#   MODEL      weights file for the precision check (default models/trained/deep2s_paper_k15_snr30.h5)
#   TEST_FILTER   gtest filter for the GPU tests (default *)
# Budget: tests ~3 min, bench ~3 min, peer ~3 min with one compiled network, precision check ~1 min: run the
# phases in separate calls if the lease is short (timeout_s 600 per call).
set -uo pipefail
out=${OUT:-device-out}
phases=${PHASES:-tests,bench,precision}
mkdir -p "$out"
if [ -f .device/bundle.tar.xz ] && [ ! -x .device/bin/nfmimo ]; then
  xz -dc .device/bundle.tar.xz | tar -C .device -xf -
fi
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/lib/x86_64-linux-gnu:/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
export PATH=$PWD/.device/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
status=0
has() { [[ ",$phases," == *",$1,"* ]]; }

if has tests; then
  for t in .device/bin/test_gpu_* .device/bin/test_*_gpu; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    timeout 420 "$t" --gtest_color=no --gtest_filter="${TEST_FILTER:-*}" --gtest_output="xml:$out/$name.xml" \
      > "$out/$name.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || status=1
    echo "$name: exit $rc, $(grep -c '^\[       OK \]' "$out/$name.log") passed," \
      "$(grep -c '^\[  FAILED  \].*ms)$' "$out/$name.log") failed, $(grep -c '^\[  SKIPPED \]' "$out/$name.log") skipped" \
      | tee -a "$out/gpu-tests.summary"
    grep '^\[  FAILED  \].*ms)$' "$out/$name.log" | head -40 | tee -a "$out/gpu-tests.summary"
  done
fi

if has bench; then
  timeout 540 python3 tools/bench/side_by_side.py --binary .device/bin/nfmimo --device cuda \
    --batch "${BATCHES:-1,64,512}" --methods "${METHODS:-adjoint,unet3d,deep2s,train-unet3d}" \
    --precision "${PRECISIONS:-fp32,tf32,fp16}" --seconds "${SECONDS_PER_ROW:-1}" --peer-compile "${PEER_COMPILE:-unet3d}" \
    --out-dir "$out" --python python3 --plot > "$out/bench.log" 2>&1
  [ $? -eq 0 ] || status=1
  sed -n '/^op /,$p' "$out/bench.log" | head -120
  grep -E "FAILED|error|Error" "$out/bench.log" | head -20
fi

if has precision; then
  # The default-precision rule (docs/networks.md): the fastest precision whose mean PSNR on a held-out set stays
  # within 0.1 dB of fp32. 200 scenes of a seed never used in training.
  model=${MODEL:-models/trained/deep2s_paper_k15_snr30.h5}
  if [ -f "$model" ]; then
    nfmimo synthesize --out "$out/precision-test.h5" --count 200 --system paper --freqs 15 --snr 30 --seed 424242 \
      --device cuda --force > "$out/precision.log" 2>&1
    for p in fp32 tf32 fp16 bf16; do
      nfmimo evaluate --data "$out/precision-test.h5" --methods deep2s --model "$model" --device cuda --batch 64 \
        --precision "$p" --json "$out/precision-$p.json" --force >> "$out/precision.log" 2>&1 || status=1
    done
    rm -f "$out/precision-test.h5"
    python3 - "$out" <<'PY' | tee -a "$out/precision.log"
import json, sys, os
out = sys.argv[1]
res = {}
for p in ("fp32", "tf32", "fp16", "bf16"):
    f = os.path.join(out, f"precision-{p}.json")
    if os.path.exists(f):
        m = json.load(open(f))["methods"][0]
        res[p] = (m["psnr_db"]["mean"], m["ms_per_frame"])
for p, (psnr, ms) in res.items():
    print(f"precision {p}: PSNR {psnr:.3f} dB ({psnr - res['fp32'][0]:+.3f} vs fp32), {ms:.3f} ms/frame")
PY
  else
    echo "precision check skipped: no model at $model" | tee "$out/precision.log"
  fi
fi
exit $status
