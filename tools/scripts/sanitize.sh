#!/usr/bin/env bash
# Builds the AddressSanitizer + UndefinedBehaviorSanitizer configuration (CMakePresets.json preset `sanitize`:
# clang, CPU only, RelWithDebInfo, folder build-sanitize/, with the fuzz harnesses) and runs the CPU test suite
# under it (labels gpu and fuzz excluded). Any sanitizer report fails its test. See docs/reliability.md.
#   tools/scripts/sanitize.sh [EXTRA CTEST ARGUMENTS...]     (for example -R test_data)
# Environment: NFMIMO_JOBS (parallel jobs, default: all cores), NFMIMO_CMAKE_ARGS (extra CMake arguments).
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${NFMIMO_JOBS:-$(nproc)}
command -v clang++ >/dev/null || { echo "sanitize: clang++ is needed (apt-get install clang)" >&2; exit 2; }
[ -x .venv/bin/python ] || echo "sanitize: note: no .venv (tools/scripts/setup.sh makes it); pytest suites will fail" >&2
# shellcheck disable=SC2086
cmake --preset sanitize ${NFMIMO_CMAKE_ARGS:-} >/dev/null
cmake --build build-sanitize --parallel "$jobs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ctest --preset sanitize -j "$jobs" --timeout 3600 "$@"
