#!/usr/bin/env bash
# Regenerates the numbers and figures of docs/results.md: for each setting a test set and a validation set
# (fixed seeds), the weight sweeps of the iterative methods on the validation set, the learned models (trained
# here on the CPU when missing and TRAIN=1), and one `nfmimo evaluate` run over every method.
#
#   tools/scripts/results.sh [OUT_DIR]        (default results/, outside git's view: .gitignore)
#
# Environment: BUILD (build dir, default build), FRAMES (test scenes, default 50), TRAIN=1 (train missing models),
# BUDGET_SCALE (times the training budgets below, default 1), THREADS (default 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/results}
build=${BUILD:-$root/build}
frames=${FRAMES:-50}
threads=${THREADS:-1}
nf="$build/nfmimo"
sweep="$build/nfmimo_sweep_lambda"
table="$root/tools/scripts/results_table.py"
[ -x "$nf" ] || { echo "results.sh: $nf not built (run tools/scripts/test.sh or cmake --build $build)" >&2; exit 2; }
mkdir -p "$out/models"
export OMP_WAIT_POLICY=passive

# name K SNR test-seed validation-seed
settings=("k15_snr30 15 30 9001 9101" "k10_snr20 10 20 9002 9102")

# Model file of a learned method in a setting: the shipped model (models/trained/METHOD_paper_SETTING.h5, the
# model zoo of docs/models.md) where there is one, else OUT_DIR/models/METHOD_SETTING.h5.
model_file() { # method setting
  local shipped="$root/models/trained/${1}_paper_$2.h5"
  if [ -f "$shipped" ]; then echo "$shipped"; else echo "$out/models/${1}_$2.h5"; fi
}
arch_of() {
  case "$1" in
  deep2s) echo "unet3d" ;; cv-deep2s) echo "cv-unet3d" ;; deep2s-unet2d) echo "unet2d" ;;
  deep2s-resnet) echo "resnet --width 32 --blocks 4" ;; deepdi) echo "deepdi" ;; deep2s-plus) echo "deep2s-plus" ;;
  esac
}
learned=(deep2s cv-deep2s deep2s-unet2d deep2s-resnet deepdi deep2s-plus)

# Training on this 2-core CPU (docs/results.md, "Models"): the paper setting's models from random weights, the
# harder setting's by transfer (--init) from the paper setting's (same grid and network, other system). Budgets
# (minutes of training) per model as used for the published table; BUDGET_SCALE multiplies them.
budget_of() { # method setting
  case "$1:$2" in
  cv-deep2s:k15_snr30) echo 12 ;; deep2s-unet2d:k15_snr30 | deep2s-resnet:k15_snr30 | deep2s:k10_snr20) echo 10 ;;
  deepdi:* | deep2s-plus:*) echo 8 ;; *) echo 5 ;;
  esac
}
train_missing() { # setting K snr
  local m f init seconds
  for m in "${learned[@]}"; do
    f=$(model_file "$m" "$1")
    [ -f "$f" ] && continue
    [ "${TRAIN:-0}" = 1 ] || { echo "results.sh: missing $f (TRAIN=1 trains it)" >&2; exit 2; }
    init=()
    # DeepDI from random weights (the paper's purely learned baseline); Deep2S+ from A^H and the setting's
    # cv-deep2s U-Net (so it starts as that model); the rest of the harder setting by transfer.
    case "$m" in
    deepdi) ;;
    deep2s-plus) init=(--init "$(model_file cv-deep2s "$1")") ;;
    *) [ "$1" = k15_snr30 ] || init=(--init "$(model_file "$m" k15_snr30)") ;;
    esac
    seconds=$(python3 -c "print(int($(budget_of "$m" "$1") * 60 * ${BUDGET_SCALE:-1}))")
    # shellcheck disable=SC2046
    "$nf" --threads "$threads" train --arch $(arch_of "$m") --system paper --freqs "$2" --snr "$3" --synthesize \
      --seed 1 --epoch-size 128 --batch 4 --val-count 16 --lr 1e-3 --schedule cosine --min-lr 2e-5 \
      --time-budget "${seconds}s" --device cpu "${init[@]}" --out "$f"
  done
  f="$out/models/denoiser.h5"
  if [ ! -f "$f" ]; then
    [ "${TRAIN:-0}" = 1 ] || { echo "results.sh: missing $f (TRAIN=1 trains it)" >&2; exit 2; }
    "$nf" --threads "$threads" train --arch denoiser --denoiser-net resnet --width 16 --blocks 4 --synthesize \
      --grid paper --seed 1 --epoch-size 256 --batch 8 --val-count 32 --lr 1e-3 --schedule cosine --min-lr 2e-5 \
      --time-budget "$(python3 -c "print(int(480 * ${BUDGET_SCALE:-1}))")s" --device cpu --out "$f"
  fi
}

for s in "${settings[@]}"; do
  read -r name K snr test_seed val_seed <<<"$s"
  test="$out/test_$name.h5"
  val="$out/val_$name.h5"
  [ -f "$test" ] || "$nf" synthesize --out "$test" --count "$frames" --system paper --freqs "$K" --snr "$snr" --seed "$test_seed"
  [ -f "$val" ] || "$nf" synthesize --out "$val" --count 16 --system paper --freqs "$K" --snr "$snr" --seed "$val_seed"

  train_missing "$name" "$K" "$snr"
  # Weights by the rule of docs/results.md: the highest mean PSNR on the validation set.
  [ -f "$out/sweep_l1_$name.csv" ] || "$sweep" --data "$val" --methods l1 --lambdas 0.01,0.02,0.05,0.1 --device cpu \
    --csv "$out/sweep_l1_$name.csv"
  [ -f "$out/sweep_tv_$name.csv" ] || "$sweep" --data "$val" --methods tv --lambdas 0.003,0.01,0.03 \
    --param tv.l1_weight=0.02 --device cpu --csv "$out/sweep_tv_$name.csv"
  [ -f "$out/sweep_pnp_$name.csv" ] || "$sweep" --data "$val" --methods pnp --lambdas 0.02,0.05,0.2 \
    --model "$out/models/denoiser.h5" --device cpu --csv "$out/sweep_pnp_$name.csv"
  l1=$(python3 "$table" best "$out/sweep_l1_$name.csv" l1)
  tv=$(python3 "$table" best "$out/sweep_tv_$name.csv" tv)
  rho=$(python3 "$table" best "$out/sweep_pnp_$name.csv" pnp)

  # Two evaluate runs per setting (same test scenes): the methods that need no large model, then pnp and the
  # purely learned first stages (their dense layers are 0.4-0.6 GB each and are trained separately).
  models=()
  for m in "${learned[@]:0:4}"; do models+=(--model "$m=$(model_file "$m" "$name")"); done
  [ -f "$out/results_${name}_a.json" ] || "$nf" --threads "$threads" evaluate --data "$test" --device cpu \
    --methods adjoint,backprojection,kirchhoff,l1,tv,deep2s,cv-deep2s,deep2s-unet2d,deep2s-resnet "${models[@]}" \
    --param "l1.lambda=$l1" --param "tv.lambda=$tv" --param tv.l1_weight=0.02 \
    --json "$out/results_${name}_a.json" --png "$out/results_${name}_a.png" --png-frames 2
  [ -f "$out/results_${name}_b.json" ] || "$nf" --threads "$threads" evaluate --data "$test" --device cpu \
    --methods pnp,deepdi,deep2s-plus --model "pnp=$out/models/denoiser.h5" \
    --model "deepdi=$(model_file deepdi "$name")" --model "deep2s-plus=$(model_file deep2s-plus "$name")" \
    --param "pnp.rho=$rho" --json "$out/results_${name}_b.json" --png "$out/results_${name}_b.png" --png-frames 2
  printf '{"l1": "lambda_rel %s", "tv": "lambda_rel %s, l1_weight 0.02", "pnp": "rho %s"}\n' "$l1" "$tv" "$rho" \
    >"$out/settings_$name.json"
  python3 "$table" table "$out/settings_$name.json" "$out/results_${name}_a.json" "$out/results_${name}_b.json" >"$out/results_$name.md"
  cat "$out/results_$name.md"
done
