#!/usr/bin/env bash
# Builds the libFuzzer harnesses (preset `sanitize`: clang, ASan + UBSan, CPU only, build-sanitize/) and runs
# each for SECONDS (default 20: a smoke). See docs/reliability.md.
#   tools/scripts/fuzz.sh [SECONDS] [HARNESS...]      harnesses: measurements dataset weights points grid param
#                                                      synth_config (default: all)
# Environment: NFMIMO_JOBS (build jobs, default all cores), NFMIMO_CMAKE_ARGS (extra CMake arguments),
#   NFMIMO_FUZZ_SEED (libFuzzer -seed, default 1; 0 draws one),
#   NFMIMO_FUZZ_FORK=1 (keep going after a finding: libFuzzer's -fork=1 with -ignore_crashes/ooms/timeouts,
#   for long runs; every finding is still saved), NFMIMO_FUZZ_ARGS (extra libFuzzer arguments).
# Each harness keeps a growing corpus in build-sanitize/fuzz/corpus/<harness>/ (seeded from the files
# fuzz_make_seeds writes and the committed tests/fuzz/corpus/<harness>/); findings go to
# build-sanitize/fuzz/artifacts/<harness>/. Exit status 1 when a finding's first frame is nfmimo's (or cannot be
# told); findings inside Debian's HDF5 1.10.8 (the first frame in libhdf5: docs/reliability.md, "Open: HDF5
# 1.10.8") are listed as such and do not fail the run unless NFMIMO_FUZZ_STRICT=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(measurements dataset weights points grid param synth_config)
jobs=${NFMIMO_JOBS:-$(nproc)}
command -v clang++ >/dev/null || { echo "fuzz: clang++ is needed (apt-get install clang)" >&2; exit 2; }

# shellcheck disable=SC2086
cmake --preset sanitize ${NFMIMO_CMAKE_ARGS:-} >/dev/null
cmake --build build-sanitize --parallel "$jobs" --target fuzz_all
root=build-sanitize/fuzz
[ -d "$root/seeds/measurements" ] || "$root/fuzz_make_seeds" "$root/seeds"

# allocator_may_return_null=1: an allocation no machine can satisfy (HDF5 asking for 2^64 bytes for a damaged
# object header) returns NULL, as glibc's malloc does in production, and HDF5 reports an error; any allocation
# that could succeed and is over 2 GiB is still a finding (-malloc_limit_mb below).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
status=0
summary=()
for h in "${harnesses[@]}"; do
  bin="$root/fuzz_$h"
  [ -x "$bin" ] || { echo "fuzz: no harness '$h'" >&2; exit 2; }
  mkdir -p "$root/corpus/$h" "$root/artifacts/$h"
  extra=()
  [ -f "tests/fuzz/$h.dict" ] && extra+=("-dict=tests/fuzz/$h.dict")
  # The first folder is where libFuzzer writes new inputs: the working corpus, never the committed one.
  dirs=("$root/corpus/$h" "$root/seeds/$h")
  [ -d "tests/fuzz/corpus/$h" ] && dirs+=("tests/fuzz/corpus/$h")
  if [ "${NFMIMO_FUZZ_FORK:-0}" = 1 ]; then
    extra=("-fork=1" "-ignore_crashes=1" "-ignore_ooms=1" "-ignore_timeouts=1" "${extra[@]}")
  fi
  log="$root/fuzz_$h.log"
  echo "fuzz: $h for ${seconds} s (log $log)"
  # -malloc_limit_mb: one allocation past 2 GiB is a finding (a declared size believed), not a slow death.
  # shellcheck disable=SC2086
  if ! "$bin" -seed="${NFMIMO_FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb=2560 -malloc_limit_mb=2048 -timeout=25 \
      -print_final_stats=1 -artifact_prefix="$root/artifacts/$h/" ${NFMIMO_FUZZ_ARGS:-} "${extra[@]}" \
      "${dirs[@]}" >"$log" 2>&1; then
    # A harness that stops without leaving a finding (a crash outside the input's run) is nfmimo's to explain.
    [ -n "$(find "$root/artifacts/$h" -type f)" ] || status=1
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  # The final stats line (single process) or the last status line's count (fork mode prints no stats).
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' <<<"$last" | tr -d '#' || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  findings=$(find "$root/artifacts/$h" -type f | wc -l)
  summary+=("$(printf '%-13s execs %-10s cov %-6s ft %-7s corpus %-5s findings %s' "$h" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "$(find "$root/corpus/$h" -type f | wc -l)" "$findings")")
done
printf 'fuzz: %s\n' "${summary[@]}"
# What each finding is: the sanitizer's or libFuzzer's one-line summary and the first frame past the sanitizer,
# libFuzzer and libc runtime, which says whose defect it is.
export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
for h in "${harnesses[@]}"; do
  while read -r f; do
    [ -n "$f" ] || continue
    out=$(timeout 120 "$root/fuzz_$h" -rss_limit_mb=2560 -malloc_limit_mb=2048 -timeout=25 "$f" 2>&1 || true)
    what=$(grep -m1 -oE 'SUMMARY: [A-Za-z]+: [^(]*|ERROR: libFuzzer: [a-z-]+|out-of-memory \(malloc\([0-9]+\)\)|terminate called.*' <<<"$out" || true)
    first=$(grep -E '^ +#[0-9]+ ' <<<"$out" | grep -vE 'libclang_rt|compiler-rt|sanitizer|asan|ubsan|fuzzer::|libFuzzer|interceptor|[( ]libc\.so|sysdeps|(^| )in (malloc|calloc|realloc|free|operator new|memcpy|memmove|strdup|strlen)' | head -1 || true)
    if [ -z "$what" ]; then
      owner="no longer reproduces"
    elif grep -q 'libhdf5' <<<"$first"; then
      fn=$(grep -oE 'in H5[A-Za-z0-9_]+' <<<"$first" | head -1 | cut -c4- || true)
      owner="inside HDF5 1.10.8${fn:+ ($fn)}"
      [ "${NFMIMO_FUZZ_STRICT:-0}" = 1 ] && status=1
    else
      fn=$(grep -oE 'in [A-Za-z0-9_:]+' <<<"$first" | head -1 | cut -c4- || true)
      owner="nfmimo${fn:+ ($fn)}"
      status=1
    fi
    echo "fuzz: finding $h/$(basename "$f"): ${what:-none} -- $owner"
  done < <(find "$root/artifacts/$h" -type f | sort | head -40)
done
exit $status
