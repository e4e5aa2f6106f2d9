#!/usr/bin/env bash
# Runs on the GPU machine (from the repository root, after tools/scripts/device_bundle.sh here): the GPU tests,
# the benchmark side by side with the PyTorch peer, writing everything under $OUT (or ./device-out).
set -uo pipefail
out=${OUT:-device-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/lib/x86_64-linux-gnu:/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
export PATH=$PWD/.device/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
status=0
for t in .device/bin/test_gpu_*; do
  echo "== $t" | tee -a "$out/gpu-tests.log"
  "$t" --gtest_color=no 2>&1 | tee -a "$out/gpu-tests.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED " || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done
timeout 420 python3 tools/bench/side_by_side.py --binary .device/bin/nfmimo --device cuda --batch 1,64,512 \
  --seconds 2 --out-dir "$out" --python python3 2>&1 | tee "$out/bench.log" | tail -40
exit $status
