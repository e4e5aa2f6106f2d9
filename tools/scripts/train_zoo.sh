#!/usr/bin/env bash
# Trains the model zoo of the paper setting in sessions that accumulate (docs/models.md, "Model zoo"): every
# model resumes from its last weights and schedule position, is kept only when its validation improves, and
# every call is logged under models/trained/zoo/ (commit that folder and models/trained/*.h5 afterwards).
#
#   tools/scripts/train_zoo.sh [--device cpu|cuda] [--budget 2h] [--models deep2s,cv-deep2s,...]
#                              [--work results/zoo] [--nfmimo build/nfmimo] [--threads 1] [--dry-run]
#
# On the CPU run it in the background on one thread while other work goes on:
#   nice -n 10 tools/scripts/train_zoo.sh --budget 2h > zoo.log 2>&1 &
# Ctrl-C or SIGTERM stops after the current step with a checkpoint; the next call resumes it.
set -euo pipefail
exec python3 "$(dirname "$0")/train_zoo.py" "$@"
