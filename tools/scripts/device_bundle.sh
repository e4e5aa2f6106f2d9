#!/usr/bin/env bash
# Prepares .device/ for a run on the lent GPU machine (see docs/performance.md, "Device runs"): the binaries built
# here and every shared library they need that the device machine lacks (not glibc, libstdc++, libgcc_s, CUDA or
# cuDNN, which it has). Then call the device tool with carry [".device"] and the command
#   tools/scripts/device_check.sh
#   tools/scripts/device_bundle.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/bin .device/lib
cp "$build/nfmimo" .device/bin/
for t in "$build"/tests/test_*; do [ -x "$t" ] && cp "$t" .device/bin/; done
for b in nfmimo_bench_networks nfmimo_bench_training bench_synthesizer; do
  [ -x "$build/$b" ] && cp "$build/$b" .device/bin/ || true
done
for b in .device/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libresolv.so*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda*|libcudnn*|libcufft*|libcublas*|libcudart*|libnvrtc*|libnvJitLink*) ;;
    *) cp -L "$lib" .device/lib/ ;;
  esac
done
strip --strip-unneeded .device/bin/* 2>/dev/null || true
du -sh .device
