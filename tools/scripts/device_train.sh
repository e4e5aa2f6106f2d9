#!/usr/bin/env bash
# Runs on the GPU machine (from the repository root, after tools/scripts/device_bundle.sh here; device tool with
# carry [".device"], timeout_s 600): trains the shipped Deep2S 3D U-Net (paper system, K = 15, 30 dB, paper grid)
# on the fly within BUDGET (default 7m), scores it against the analytic methods on 500 test scenes of seed 9001
# (never used in training) with fp32 and fp16 inference, times training steps at batch 32, and returns the
# weights, logs and tables through $OUT. docs/models.md says how to record the result.
set -uo pipefail
out=${OUT:-device-out}
budget=${BUDGET:-7m}
mkdir -p "$out"
if [ -f .device/bundle.tar.xz ] && [ ! -x .device/bin/nfmimo ]; then
  xz -dc .device/bundle.tar.xz | tar -C .device -xf -
fi
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/lib/x86_64-linux-gnu:/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
bin=.device/bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
model="$out/deep2s_paper_k15_snr30.h5"
"$bin/nfmimo" train --arch unet3d --system paper --freqs 15 --snr 30 --synthesize --seed 1 --epoch-size 8192 \
  --batch 32 --val-count 256 --lr 1e-3 --schedule cosine --min-lr 1e-5 --time-budget "$budget" \
  --device cuda --precision bf16 --out "$model" --force 2>&1 | tee "$out/train.log"
"$bin/nfmimo" synthesize --out test.h5 --count 500 --system paper --freqs 15 --snr 30 --seed 9001 --device cuda \
  --force 2>&1 | tail -1
"$bin/nfmimo" evaluate --data test.h5 --system paper --freqs 15 --device cuda \
  --methods adjoint,backprojection,kirchhoff,deep2s,deep2s@fp16 --model "$model" \
  --param deep2s@fp16.precision=fp16 --json "$out/evaluate.json" --csv "$out/evaluate.csv" \
  --png "$out/evaluate.png" --png-frames 3 --force 2>&1 | tee "$out/evaluate.log"
if [ -f models/trained/deep2s_paper_k15_snr30.h5 ]; then  # the shipped (CPU-trained, provisional) model
  "$bin/nfmimo" evaluate --data test.h5 --device cuda --methods deep2s@shipped \
    --model deep2s@shipped=models/trained/deep2s_paper_k15_snr30.h5 --json "$out/evaluate_shipped.json" \
    --force 2>&1 | tail -2 | tee -a "$out/evaluate.log"
fi
for p in bf16 fp16 tf32; do
  timeout 60 "$bin/nfmimo_bench_training" --device cuda --batch 32 --precision "$p" --steps 20 --warmup 3 \
    --data-batches 8 2>&1 | tee -a "$out/bench_training.jsonl"
done
