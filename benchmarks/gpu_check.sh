#!/usr/bin/env bash
# The GPU path against the CPU in under 8 minutes (issue 20 item 5).
#
#   benchmarks/gpu_check.sh              # on a CUDA machine: calibration with selection, a 512^3 twin and a
#                                        # 256^3 transport on cuda, each checked against the CPU; prints a table
#   benchmarks/gpu_check.sh --cpu-only   # no GPU: the device half runs on the CPU (every comparison still runs)
#   benchmarks/gpu_check.sh --cpu-only --quick   # what CI runs (small sizes, well under a minute)
#   GPU_CHECK_DEVICE=cuda:1 benchmarks/gpu_check.sh
#
# Exits 1 if a check fails, 124 if the 8-minute budget is exceeded. Without CUDA (and without
# --cpu-only) it says so and runs the CPU half.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$python" "$here/gpu_check.py" --device "${GPU_CHECK_DEVICE:-cuda}" "$@"
