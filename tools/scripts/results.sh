#!/usr/bin/env bash
# Regenerates the numbers and figures of docs/results.md: for each setting a test set and a validation set
# (fixed seeds), the weight sweeps of the iterative methods on the validation set, the learned models (trained
# here on the CPU when missing and TRAIN=1), and one `nfmimo evaluate` run over every method.
#
#   tools/scripts/results.sh [OUT_DIR]        (default results/, outside git's view: .gitignore)
#
# Environment: BUILD (build dir, default build), FRAMES (test scenes, default 50), TRAIN=1 (train missing models),
# BUDGET_SCALE (times the training budgets below, default 1), THREADS (default 1), SETTINGS (default
# k15_snr30,k10_snr20), ZOO (train_zoo.sh's work folder, default results/zoo), DOCS=1 (also write the tables,
# training records and figures into docs/results.md and docs/images/ once both settings are done).
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
only=${SETTINGS:-k15_snr30,k10_snr20} # a comma-separated subset (two CPU lanes: one setting each)

# Model file of a learned method in a setting, first found of:
#   models/trained/METHOD_paper_SETTING.h5   the shipped model zoo (docs/models.md): the paper setting's U-Nets
#   $ZOO/METHOD/best.h5                      train_zoo.sh's composites (deepdi, deep2s-plus; 0.6 GB, not shipped)
#   OUT_DIR/models/METHOD_SETTING.h5         trained by this script (TRAIN=1): the harder setting's models
zoo=${ZOO:-$root/results/zoo}
model_file() { # method setting
  local shipped="$root/models/trained/${1}_paper_$2.h5"
  if [ -f "$shipped" ]; then
    echo "$shipped"
  elif [ "$2" = k15_snr30 ] && { [ "$1" = deepdi ] || [ "$1" = deep2s-plus ]; }; then
    echo "$zoo/$1/best.h5"
  else
    echo "$out/models/${1}_$2.h5"
  fi
}
arch_of() {
  case "$1" in
  deep2s) echo "unet3d" ;; cv-deep2s) echo "cv-unet3d" ;; deep2s-unet2d) echo "unet2d" ;;
  deep2s-resnet) echo "resnet --width 32 --blocks 4" ;; deepdi) echo "deepdi" ;; deep2s-plus) echo "deep2s-plus" ;;
  esac
}
learned=(deep2s cv-deep2s deep2s-unet2d deep2s-resnet deepdi deep2s-plus)

# The paper setting's models are the model zoo's (tools/scripts/train_zoo.sh, docs/models.md); a missing composite
# is trained there (TRAIN=1), with its data-fitted or A^H start. Every other setting's model is a fine-tuning of the
# paper setting's by transfer (--init: same grid and network, other system), with the zoo's loss and validation:
#   deep2s, cv-deep2s, deep2s-unet2d, deep2s-resnet   from the paper setting's model of the same method;
#   deep2s-plus                                       from A^H and this setting's cv-deep2s U-Net;
#   deepdi                                            from its LMMSE start fitted on this setting's pairs
#                                                     (tools/scripts/fit_lmmse.py) and this setting's cv-deep2s U-Net.
# Budgets are minutes of one CPU thread (BUDGET_SCALE multiplies them); the cosine schedule spans the budget and the
# last epoch's weights are kept.
budget_of() { # method
  case "$1" in deep2s) echo 12 ;; cv-deep2s) echo 10 ;; deepdi | deep2s-plus) echo 8 ;; *) echo 6 ;; esac
}
lr_of() { # method: fine-tuning peak learning rates (the zoo's sessions; the composites lower: pretrained starts)
  case "$1" in deep2s-resnet) echo 5e-4 ;; deep2s-plus) echo 1e-4 ;; *) echo 3e-4 ;; esac
}
# fit_lmmse.py needs numpy: the project's virtual environment (tools/scripts/setup.sh) where there is one.
numpy_python=$root/.venv/bin/python
[ -x "$numpy_python" ] || numpy_python=python3
minutes() { python3 -c "print(int($1 * 60 * ${BUDGET_SCALE:-1}))"; }
need_training() { # file
  [ "${TRAIN:-0}" = 1 ] || { echo "results.sh: missing $1 (TRAIN=1 trains it)" >&2; exit 2; }
}
train_missing() { # setting K snr
  local m f init
  for m in "${learned[@]}"; do
    f=$(model_file "$m" "$1")
    [ -f "$f" ] && continue
    need_training "$f"
    if [ "$1" = k15_snr30 ]; then
      python3 "$root/tools/scripts/train_zoo.py" --models "$m" --work "$zoo" --nfmimo "$nf" --threads "$threads" \
        --budget "$(minutes "$(budget_of "$m")")s"
      continue
    fi
    case "$m" in
    deep2s-plus) init=$(model_file cv-deep2s "$1") ;;
    deepdi)
      init="$out/models/deepdi_$1.lmmse.h5"
      [ -f "$init" ] || OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$numpy_python" \
        "$root/tools/scripts/fit_lmmse.py" --unet "$(model_file cv-deep2s "$1")" --snr "$3" --out "$init" \
        --threads "$threads" --python "$build/python" --json "$out/models/deepdi_$1.lmmse.json"
      ;;
    *) init=$(model_file "$m" k15_snr30) ;;
    esac
    # shellcheck disable=SC2046
    "$nf" --threads "$threads" train --arch $(arch_of "$m") --system paper --freqs "$2" --snr "$3" --synthesize \
      --seed 1 --val-count 32 --epoch-size 128 --batch 4 --lr "$(lr_of "$m")" --schedule cosine \
      --min-lr "$(python3 -c "print($(lr_of "$m") / 30)")" --loss mse+ssim --ssim-weight 0.1 \
      --time-budget "$(minutes "$(budget_of "$m")")s" --device cpu --init "$init" --out "$f"
  done
  f="$out/models/denoiser.h5"
  if [ ! -f "$f" ]; then
    need_training "$f"
    "$nf" --threads "$threads" train --arch denoiser --denoiser-net resnet --width 16 --blocks 4 --synthesize \
      --grid paper --seed 1 --epoch-size 256 --batch 8 --val-count 32 --lr 1e-3 --schedule cosine --min-lr 2e-5 \
      --time-budget "$(minutes 8)s" --device cpu --out "$f"
  fi
}

for s in "${settings[@]}"; do
  read -r name K snr test_seed val_seed <<<"$s"
  [[ ",$only," == *",$name,"* ]] || continue
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

# The training records of every learned model, then (DOCS=1) the page itself: its three marked blocks and figures.
python3 "$table" records "$out" k15_snr30 k10_snr20 >"$out/records.md"
if [ "${DOCS:-0}" = 1 ]; then
  for name in k15_snr30 k10_snr20; do
    [ -f "$out/results_$name.md" ] || { echo "results.sh: DOCS=1 needs both settings ($out/results_$name.md)" >&2; exit 2; }
  done
  python3 "$table" splice "$root/docs/results.md" "k15_snr30=$out/results_k15_snr30.md" \
    "k10_snr20=$out/results_k10_snr20.md" "records=$out/records.md"
  for name in k15_snr30 k10_snr20; do
    cp "$out/results_${name}_a.png" "$out/results_${name}_b.png" "$root/docs/images/"
  done
  echo "results.sh: docs/results.md and docs/images/results_*.png updated"
fi
