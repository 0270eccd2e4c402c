#!/usr/bin/env bash
# Per-family training and inference throughput on an NVIDIA GPU, as shares of the GPU's
# measured float32 and bfloat16 matmul peaks.
#
#   benchmarks/device_check.sh [--mixed-precision bfloat16|float16] [--grid-mm 3]
#                              [--models sfcn sequential_2 ...] [--batch 32] [--xla]
#                              [--fold full|quick|tiny|none]
#
# Needs an NVIDIA GPU, its driver (nvidia-smi) and the CUDA build of TensorFlow
# (`make env DEVICE=gpu`); without them it says which is missing and exits with status 3.
set -euo pipefail
cd "$(dirname "$0")/.."
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if ! command -v "$NVIDIA_SMI" >/dev/null 2>&1; then
  echo "device_check: no NVIDIA GPU driver here ('$NVIDIA_SMI' not found)." \
       "Run this on a machine with an NVIDIA GPU, after 'make env DEVICE=gpu'." >&2
  exit 3
fi
if ! gpus=$("$NVIDIA_SMI" --query-gpu=name,memory.total,driver_version \
            --format=csv,noheader 2>&1) || [ -z "$gpus" ]; then
  echo "device_check: '$NVIDIA_SMI' found no usable GPU: ${gpus:-no output}" >&2
  exit 3
fi
echo "GPU (nvidia-smi): $gpus"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# one fold of the full study end to end after the throughput table (`--fold none` skips it)
exec "$PYTHON" benchmarks/device.py --fold full "$@"
