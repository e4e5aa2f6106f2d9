# Sourced by the device scripts (device_check.sh, device_train.sh): the bundle, nfmimo's libraries scoped to
# nfmimo's binaries, a phase's time budget, and the packing of its results. Not run on its own.
#
# The device tool brings back at most 8 files from $OUT and each call has its own time limit, so a phase
# writes its logs, XML and JSON into a work folder and leaves exactly two files in $OUT: <phase>.tar.gz with
# all of them and <phase>-summary.txt (the lines worth reading first).
#
# DRY_RUN=1: the same steps on a machine without a GPU, against the CPU build (tools/scripts/device_dryrun.sh
# checks the packing, the file count and the time limits with it).

device_out=${OUT:-device-out}
dry_run=${DRY_RUN:-0}

# The bundle made by device_bundle.sh, unpacked once into .device/bin and .device/lib.
device_unpack() {
  if [ -f .device/bundle.tar.xz ] && [ ! -x .device/bin/nfmimo ]; then
    xz -dc .device/bundle.tar.xz | tar -C .device -xf -
  fi
  [ -x .device/bin/nfmimo ] || { echo "no .device/bin/nfmimo: run tools/scripts/device_bundle.sh first" >&2; exit 2; }
}

# nfmimo's libraries reach nfmimo's binaries only: each binary gets a wrapper in .device/run that sets
# LD_LIBRARY_PATH for itself. Nothing is exported, so python3 and the PyTorch peer keep their own cuDNN and
# CUDA libraries. NFMIMO_BINARY points the tests at the wrapped CLI (tests/cli_util.hpp).
device_wrap() {
  local libs="$PWD/.device/lib:/usr/lib/x86_64-linux-gnu:/usr/local/cuda-13.0/targets/x86_64-linux/lib"
  rm -rf .device/run && mkdir -p .device/run
  for b in .device/bin/*; do
    [ -x "$b" ] || continue
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s "$@"\n' \
      "$libs" "$PWD/$b" > ".device/run/$(basename "$b")"
    chmod +x ".device/run/$(basename "$b")"
  done
  export NFMIMO_BINARY=$PWD/.device/run/nfmimo
}

# phase_begin NAME BUDGET_S: a work folder for the phase's files and a deadline PACK_MARGIN_S (default 15)
# seconds before BUDGET_S, so that packing still fits.
phase_begin() {
  phase=$1
  phase_budget=${BUDGET:-$2}
  phase_start=$(date +%s)
  phase_deadline=$((phase_start + phase_budget - ${PACK_MARGIN_S:-15}))
  work=$(mktemp -d)
  mkdir -p "$device_out"
  summary="$work/$phase-summary.txt"
  echo "phase $phase, budget ${phase_budget} s, dry run $dry_run, $(date -u +%FT%TZ)" > "$summary"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$work/gpu.txt" 2>&1
  else
    echo "no nvidia-smi" > "$work/gpu.txt"
  fi
  cat "$work/gpu.txt" >> "$summary"
}

# Seconds left before the deadline (0 when spent).
phase_left() {
  local left=$((phase_deadline - $(date +%s)))
  echo $((left > 0 ? left : 0))
}

# run_step NAME LOG COMMAND...: the command under what is left of the budget (TERM, then KILL 5 s later); a
# step that does not fit is skipped and says so. Returns the command's status (124 when cut off).
run_step() {
  local name=$1 log=$2 left rc
  shift 2
  left=$(phase_left)
  if [ "$left" -lt 5 ]; then
    echo "$name: skipped, the phase's budget is spent" | tee -a "$summary"
    return 124
  fi
  timeout -k 5 "$left" "$@" > "$log" 2>&1
  rc=$?
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "$name: cut off at the phase's budget (${left} s left)" | tee -a "$summary"
  return $rc
}

# Packs the work folder into $OUT/<phase>.tar.gz and copies the summary next to it: two files.
phase_end() {
  local status=$1
  echo "phase $phase: exit $status after $(($(date +%s) - phase_start)) s" >> "$summary"
  cp "$summary" "$device_out/$phase-summary.txt"
  tar -C "$work" -czf "$device_out/$phase.tar.gz" .
  rm -rf "$work"
  cat "$device_out/$phase-summary.txt"
  return "$status"
}
