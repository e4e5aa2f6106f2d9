#!/usr/bin/env bash
# Prepares .device/ for a run on the lent GPU machine (see docs/performance.md, "Device runs"): the binaries built
# here and every shared library they need that the device machine lacks (not glibc, libstdc++, libgcc_s, CUDA,
# cuBLAS or cuDNN, which it has; oneDNN's libdnnl and its libOpenCL, HDF5 and the rest do travel), packed into
# .device/bundle.tar.xz so that the whole carry stays under the device tool's 64 MiB (libdnnl alone is ~38 MB
# unpacked). Then call the device tool with carry [".device"] and the command
#   PHASE=tests tools/scripts/device_check.sh    (unpacks the bundle, runs one phase: tests, bench, precision)
#
#   [XZ_LEVEL=0..9] tools/scripts/device_bundle.sh [BUILD_DIR]      (XZ_LEVEL default 6; the dry run uses 0)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
rm -rf .device && mkdir -p .device/stage/bin .device/stage/lib
cp "$build/nfmimo" .device/stage/bin/
# The GPU tests (label gpu: test_gpu_* and test_*_gpu) and the benchmark programs; CPU-only tests stay here.
for t in "$build"/tests/test_gpu_* "$build"/tests/test_*_gpu; do [ -x "$t" ] && cp "$t" .device/stage/bin/; done
for b in nfmimo_bench_networks nfmimo_bench_training bench_synthesizer; do
  [ -x "$build/$b" ] && cp "$build/$b" .device/stage/bin/ || true
done
for b in .device/stage/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libresolv.so*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda*|libcudnn*|libcufft*|libcublas*|libcudart*|libnvrtc*|libnvJitLink*) ;;
    *) cp -L "$lib" .device/stage/lib/ ;;
  esac
done
strip --strip-unneeded .device/stage/bin/* .device/stage/lib/* 2>/dev/null || true
tar -C .device/stage -cf - bin lib | xz -T2 "-${XZ_LEVEL:-6}" > .device/bundle.tar.xz
rm -rf .device/stage
bytes=$(stat -c %s .device/bundle.tar.xz)
echo "bundle: .device/bundle.tar.xz, $((bytes / 1048576)) MiB"
# The device tool carries 64 MiB in all, the working tree's tracked files included.
[ "$bytes" -lt $((56 * 1048576)) ] || { echo "the bundle is over 56 MiB: the carry would not fit" >&2; exit 1; }
