#!/usr/bin/env bash
# Runs on the GPU machine (from the repository root, after tools/scripts/device_bundle.sh here; device tool with
# carry [".device"], timeout_s 600): trains the shipped Deep2S 3D U-Net (paper system, K = 15, 30 dB, paper grid)
# on the fly within TRAIN_BUDGET (default 7m), scores it against the analytic methods on 500 test scenes of seed
# 9001 (never used in training) with fp32 and fp16 inference, times training steps at batch 32, and returns the
# weights (train-model.h5) and everything else packed in $OUT/train.tar.gz (tools/scripts/device_common.sh;
# phase budget 570 s). docs/models.md says how to record the result. DRY_RUN=1 runs the same steps here on the
# CPU, small (a width-4 network for TRAIN_BUDGET 20s, 20 test scenes, fp32, no step timing).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tools/scripts/device_common.sh
device_unpack
device_wrap
run=.device/run
phase_begin train 570
status=0
if [ "$dry_run" = 1 ]; then
  budget=${TRAIN_BUDGET:-20s} device=cpu size=(--width 4 --epoch-size 64 --batch 4 --val-count 8) precision=fp32
  count=20 fp16="" timings=""
else
  budget=${TRAIN_BUDGET:-7m} device=cuda size=(--epoch-size 8192 --batch 32 --val-count 256) precision=bf16
  count=500 fp16="deep2s@fp16" timings="bf16 fp16 tf32"
fi
model="$work/deep2s_paper_k15_snr30.h5"
run_step train "$work/train.log" "$run/nfmimo" train --arch unet3d --system paper --freqs 15 --snr 30 --synthesize \
  --seed 1 "${size[@]}" --lr 1e-3 --schedule cosine --min-lr 1e-5 --time-budget "$budget" --device "$device" \
  --precision "$precision" --out "$model" --force || status=1
tail -3 "$work/train.log" >> "$summary"
run_step synthesize "$work/synthesize.log" "$run/nfmimo" synthesize --out "$work/test.h5" --count "$count" \
  --system paper --freqs 15 --snr 30 --seed 9001 --device "$device" --force || status=1
run_step evaluate "$work/evaluate.log" "$run/nfmimo" evaluate --data "$work/test.h5" --system paper --freqs 15 \
  --device "$device" --methods "adjoint,backprojection,kirchhoff,deep2s${fp16:+,$fp16}" --model "$model" \
  ${fp16:+--param deep2s@fp16.precision=fp16} --json "$work/evaluate.json" --csv "$work/evaluate.csv" \
  --png "$work/evaluate.png" --png-frames 3 --force || status=1
tail -12 "$work/evaluate.log" >> "$summary"
if [ -f models/trained/deep2s_paper_k15_snr30.h5 ]; then  # the shipped (CPU-trained, provisional) model
  run_step shipped "$work/evaluate_shipped.log" "$run/nfmimo" evaluate --data "$work/test.h5" --device "$device" \
    --methods deep2s@shipped --model deep2s@shipped=models/trained/deep2s_paper_k15_snr30.h5 \
    --json "$work/evaluate_shipped.json" --force
  tail -2 "$work/evaluate_shipped.log" >> "$summary"
fi
rm -f "$work/test.h5"
for p in $timings; do
  run_step "bench_training $p" "$work/bench_training-$p.jsonl" "$run/nfmimo_bench_training" --device cuda \
    --batch 32 --precision "$p" --steps 20 --warmup 3 --data-batches 8
  cat "$work/bench_training-$p.jsonl" >> "$summary"
done
[ -f "$model" ] && cp "$model" "$device_out/train-model.h5"
phase_end $status
