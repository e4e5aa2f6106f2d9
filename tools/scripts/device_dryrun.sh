#!/usr/bin/env bash
# The device scripts' dry run: bundles the CPU build here and runs device_check.sh's phases with DRY_RUN=1, so
# that what a GPU call depends on is checked before a GPU is lent: the bundle fits the carry, each phase leaves
# at most 8 files in $OUT (the device tool brings back no more) with its logs, XML and JSON inside the archive,
# each phase ends within its budget, a budget too small for a phase cuts it off and still packs, and the
# PyTorch side runs without nfmimo's libraries on its path. CTest runs it (label device-dryrun).
#
#   tools/scripts/device_dryrun.sh [BUILD_DIR] [PHASES]      (default build, "tests bench"; all: "tests bench
#                                                             precision train", train being device_train.sh)
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
phases=${2:-tests bench}
fail=0
check() {  # check CONDITION_STATUS MESSAGE
  if [ "$1" -eq 0 ]; then echo "ok: $2"; else echo "FAILED: $2"; fail=1; fi
}
out_root=$(mktemp -d)
trap 'rm -rf "$out_root"' EXIT

XZ_LEVEL=0 tools/scripts/device_bundle.sh "$build" > "$out_root/bundle.log" 2>&1
check $? "device_bundle.sh ($(tail -1 "$out_root/bundle.log"))"
rm -rf .device/bin .device/lib .device/run  # unpacked from the bundle, as on the device

for phase in $phases; do
  case $phase in tests) budget=300 ;; train) budget=570 ;; *) budget=240 ;; esac
  out="$out_root/$phase"
  start=$(date +%s)
  script=tools/scripts/device_check.sh
  [ "$phase" = train ] && script=tools/scripts/device_train.sh
  OUT="$out" DRY_RUN=1 PHASE="$phase" $script > "$out_root/$phase.log" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  check $rc "phase $phase exits 0 (see its summary below)"
  check $([ "$took" -le "$budget" ]; echo $?) "phase $phase took $took s of its $budget s budget"
  n=$(find "$out" -type f | wc -l)
  check $([ "$n" -le 8 ]; echo $?) "phase $phase leaves $n files in \$OUT (at most 8)"
  check $([ -f "$out/$phase.tar.gz" ] && [ -f "$out/$phase-summary.txt" ]; echo $?) "phase $phase: archive and summary"
  members=$(tar -tzf "$out/$phase.tar.gz" 2>/dev/null)
  case $phase in
  tests)
    xml=$(echo "$members" | grep -c '\.xml$')
    bins=$(ls .device/bin/test_gpu_* .device/bin/test_*_gpu 2>/dev/null | wc -l)
    check $([ "$xml" -ge 1 ] && [ "$xml" -eq "$bins" ]; echo $?) "tests: $xml XML reports for $bins GPU test binaries"
    ;;
  bench)
    for f in nfmimo.json torch.json side_by_side.json bench.log; do
      check $(echo "$members" | grep -q "/$f\$"; echo $?) "bench: $f in the archive"
    done
    ;;
  train)
    check $([ -f "$out/train-model.h5" ]; echo $?) "train: the weights come back as a file of their own"
    for f in train.log evaluate.json evaluate.csv; do
      check $(echo "$members" | grep -q "/$f\$"; echo $?) "train: $f in the archive"
    done
    ;;
  esac
  sed 's/^/    /' "$out/$phase-summary.txt" 2>/dev/null || sed 's/^/    /' "$out_root/$phase.log"
done

# LD_LIBRARY_PATH is scoped: nothing exported to python3, the wrappers set it for nfmimo's binaries only.
. tools/scripts/device_common.sh
device_wrap
check $(env -u NFMIMO_BINARY /usr/bin/python3 -c 'import os,sys; sys.exit(".device/lib" in os.environ.get("LD_LIBRARY_PATH", ""))'; echo $?) \
  "python3 sees no .device/lib on LD_LIBRARY_PATH"
check $(grep -q "LD_LIBRARY_PATH=$PWD/.device/lib" .device/run/nfmimo; echo $?) "the nfmimo wrapper sets .device/lib"

# A budget too small for the phase (30 s per benchmark row against 10 s): cut off, the call still ends in time
# with its archive.
start=$(date +%s)
OUT="$out_root/short" DRY_RUN=1 PHASE=bench BUDGET=10 PACK_MARGIN_S=2 SECONDS_PER_ROW=30 tools/scripts/device_check.sh \
  > "$out_root/short.log" 2>&1
took=$(($(date +%s) - start))
check $([ "$took" -le 15 ]; echo $?) "bench with a 10 s budget ends after $took s"
check $([ -f "$out_root/short/bench.tar.gz" ]; echo $?) "the cut-off phase is packed"
check $(grep -q "cut off" "$out_root/short/bench-summary.txt"; echo $?) "its summary says it was cut off"
exit $fail
