#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, after tools/scripts/device_bundle.sh here and the device tool
# with carry [".device"]. One phase per call, each inside its own time budget, so that a call ends within the
# device tool's limit with its results packed (tools/scripts/device_common.sh):
#   PHASE=tests      the GPU tests (ctest label gpu: test_gpu_*, test_*_gpu)        budget 300 s
#   PHASE=bench      our benchmark side by side with the PyTorch peer                budget 240 s
#   PHASE=precision  the check of the default inference precision                    budget 240 s
# and call the device tool with a timeout_s a little above the budget (e.g. 330 / 270). $OUT then holds two
# files: <phase>.tar.gz (every log, XML and JSON) and <phase>-summary.txt.
#
# Environment (all optional):
#   BUDGET     seconds for the phase (overrides the defaults above)
#   METHODS    benchmark rows (default adjoint,unet3d,deep2s,train-unet3d)
#   BATCHES    (default 1,64,512)   PRECISIONS (default fp32,tf32,fp16)   SECONDS_PER_ROW (default 1)
#   PEER_COMPILE  ops whose torch.compile variants the peer runs (default unet3d; "all" or "none")
#   MODEL      weights file for the precision check (default models/trained/deep2s_paper_k15_snr30.h5)
#   TEST_FILTER   gtest filter for the GPU tests (default *)
#   PYTHON     the Python with PyTorch for the peer (default python3; in a dry run /usr/bin/python3, Debian's)
#   DRY_RUN=1  run here against the CPU build (device cpu, small benchmark) to check packing and time limits
set -uo pipefail
cd "$(dirname "$0")/../.."
. tools/scripts/device_common.sh
phase=${PHASE:-tests}
device_unpack
device_wrap
run=.device/run
status=0
python=${PYTHON:-python3}
[ "$dry_run" = 1 ] && [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ] && python=/usr/bin/python3

case "$phase" in
tests)
  phase_begin tests 300
  for t in .device/bin/test_gpu_* .device/bin/test_*_gpu; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    run_step "$name" "$work/$name.log" "$run/$name" --gtest_color=no --gtest_filter="${TEST_FILTER:-*}" \
      --gtest_output="xml:$work/$name.xml"
    rc=$?
    [ $rc -eq 0 ] || status=1
    echo "$name: exit $rc, $(grep -c '^\[       OK \]' "$work/$name.log") passed," \
      "$(grep -c '^\[  FAILED  \].*ms)$' "$work/$name.log") failed, $(grep -c '^\[  SKIPPED \]' "$work/$name.log") skipped" \
      >> "$summary"
    grep '^\[  FAILED  \].*ms)$' "$work/$name.log" | head -40 >> "$summary"
  done
  ;;
bench)
  phase_begin bench 240
  if [ "$dry_run" = 1 ]; then  # the same path with a narrow network and 4 frequencies: seconds on a CPU
    device=cpu batches=${BATCHES:-1} methods=${METHODS:-unet3d} precisions=fp32 width=4 freqs=4 seconds=0.5 compile=none
  else
    device=cuda batches=${BATCHES:-1,64,512} methods=${METHODS:-adjoint,unet3d,deep2s,train-unet3d}
    precisions=${PRECISIONS:-fp32,tf32,fp16} width=0 freqs=15 seconds=1 compile=unet3d
  fi
  run_step bench "$work/bench.log" "$python" tools/bench/side_by_side.py --binary "$run/nfmimo" --device "$device" \
    --batch "$batches" --methods "$methods" --precision "$precisions" --width "$width" --freqs "$freqs" \
    --train-batch 4 --seconds "${SECONDS_PER_ROW:-$seconds}" --peer-compile "${PEER_COMPILE:-$compile}" \
    --out-dir "$work" --python "$python" --plot
  [ $? -eq 0 ] || status=1
  { sed -n '/^op /,$p' "$work/bench.log" | head -120; grep -E "FAILED|error|Error" "$work/bench.log" | head -20; } \
    >> "$summary"
  ;;
precision)
  phase_begin precision 240
  # The default-precision rule (docs/networks.md): the fastest precision whose mean PSNR on a held-out set stays
  # within 0.1 dB of fp32. 200 scenes of a seed never used in training (20 in a dry run).
  model=${MODEL:-models/trained/deep2s_paper_k15_snr30.h5}
  if [ "$dry_run" = 1 ]; then device=cpu count=20 precisions="fp32"; else device=cuda count=200 precisions="fp32 tf32 fp16 bf16"; fi
  if [ -f "$model" ]; then
    run_step synthesize "$work/synthesize.log" "$run/nfmimo" synthesize --out "$work/precision-test.h5" \
      --count "$count" --system paper --freqs 15 --snr 30 --seed 424242 --device "$device" --force || status=1
    for p in $precisions; do
      run_step "evaluate $p" "$work/evaluate-$p.log" "$run/nfmimo" evaluate --data "$work/precision-test.h5" \
        --methods deep2s --model "$model" --device "$device" --batch 64 --precision "$p" \
        --json "$work/precision-$p.json" --force || status=1
    done
    rm -f "$work/precision-test.h5"
    "$python" - "$work" <<'PY' >> "$summary"
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
    echo "precision check skipped: no model at $model" >> "$summary"
  fi
  ;;
*)
  echo "PHASE must be tests, bench or precision (got '$phase')" >&2
  exit 2
  ;;
esac
phase_end $status
