"""GPU throughput per family against the GPU's measured matmul peaks (see device_check.sh).

    python benchmarks/device.py [--mixed-precision bfloat16|float16] [--grid-mm 3]
                                [--models ...] [--batch 32] [--batches 8] [--xla]
                                [--deterministic] [--dry-run]

Prints, for each family, training and inference samples/s and their share of the peak
that applies: the float32 matmul peak (TensorFlow lets float32 matmuls and convolutions
use TF32 tensor cores on Ampere and later, so this is the TF32 rate there), or with
`--mixed-precision` the bfloat16/float16 peak. Exits with status 3 and a message when
TensorFlow sees no GPU; `--dry-run` runs the same code on the CPU instead, to check it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    from run import arguments, bench_model, matmul_flops, model_rows

    from mri3dcnn.config import study_grid

    ap = arguments(__doc__, batch=32, batches=8)
    ap.add_argument("--mixed-precision", choices=("bfloat16", "float16"))
    ap.add_argument("--xla", action="store_true", help="compile the steps with XLA")
    ap.add_argument("--deterministic", action="store_true", help="op determinism on")
    ap.add_argument("--dry-run", action="store_true", help="run on the CPU if no GPU is seen")
    a = ap.parse_args()

    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not a.dry_run:
        build = tf.sysconfig.get_build_info()
        print("device_check: TensorFlow sees no GPU (CUDA build: "
              f"{build.get('is_cuda_build', False)}). Install the CUDA build with "
              "'make env DEVICE=gpu' and check the driver with nvidia-smi.", file=sys.stderr)
        return 3
    if a.deterministic:
        tf.config.experimental.enable_op_determinism()
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    device = "/GPU:0" if gpus else "/CPU:0"
    name = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            if gpus else "CPU (dry run)")
    n = 8192 if gpus else 512
    peaks = {"float32": matmul_flops(n, repeats=10, dtype="float32", device=device),
             "bfloat16": matmul_flops(n, repeats=10, dtype="bfloat16", device=device)}
    if a.mixed_precision == "float16":
        peaks["float16"] = matmul_flops(n, repeats=10, dtype="float16", device=device)
    print(f"device: {name}; TensorFlow {tf.__version__}; matmul peaks "
          + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items()))
    if a.mixed_precision:
        keras.mixed_precision.set_global_policy(f"mixed_{a.mixed_precision}")
    peak = peaks[a.mixed_precision or "float32"]
    _, grid = study_grid(a.grid_mm)
    print(f"grid {'x'.join(map(str, grid))} ({a.grid_mm:g} mm), batch {a.batch}, policy "
          f"{keras.mixed_precision.global_policy().name}, XLA {'on' if a.xla else 'off'}, "
          f"shares of the {a.mixed_precision or 'float32'} peak (targets: train 70 %, "
          "infer 60 %)\n")
    rows = model_rows([], peak)
    print("\n".join(rows), flush=True)
    with tf.device(device):
        for model in a.models:
            r = bench_model(model, grid, a.batch, a.batches, jit_compile=a.xla)
            print(model_rows([r], peak)[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
