"""GPU throughput per family against the GPU's measured matmul peaks (see device_check.sh).

    python benchmarks/device.py [--mixed-precision bfloat16|float16] [--grid-mm 3]
                                [--models ...] [--batch 32] [--batches 8] [--xla]
                                [--deterministic] [--fold PROFILE] [--dry-run]

Prints, for each family, training and inference samples/s and their share of the peak
that applies: the float32 matmul peak (TensorFlow lets float32 matmuls and convolutions
use TF32 tensor cores on Ampere and later, so this is the TF32 rate there), or with
`--mixed-precision` the bfloat16/float16 peak. `--fold PROFILE` then runs the first fold
of that profile's study end to end for each family on grey matter, as a chapter does:
cohort (generated if missing), maps, normalisation, training with the profile's budget,
predictions, the results store; it prints the wall time and the fold's accuracy.
(`device_check.sh` asks for `--fold full`.) Exits with status 3 and a message when
TensorFlow sees no GPU; `--dry-run` runs the same code on the CPU instead, to check it.
"""

from __future__ import annotations

import os
import sys
import time
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
    ap.add_argument("--fold", metavar="PROFILE", default="none",
                    help="then one fold of this profile's study end to end ('none': skip)")
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
        if a.fold != "none":
            one_fold(a.fold, a.models)
    return 0


def one_fold(profile: str, families: list[str]) -> None:
    """The first fold of the profile's first repeat, each family on grey matter, through
    the study as a chapter runs it; stored, so a second call reads it back."""
    from mri3dcnn.crossval import cross_validate
    from mri3dcnn.stats import metrics
    from mri3dcnn.study import Study

    t = time.perf_counter()
    study = Study.open(profile, progress=True)
    print(f"\none fold of '{profile}' ({study.profile.n_subjects} subjects, "
          f"{study.profile.grid_mm:g} mm, {study.profile.epochs} epochs at most): cohort "
          f"ready in {time.perf_counter() - t:.0f} s", flush=True)
    for family in families:
        t = time.perf_counter()
        model = study.cnn(family, ("gm",))
        (record,) = cross_validate(study.store, model.spec, model.estimator, study.plan,
                                   study.context, repeats=[0], folds=[0])
        cv = record.predictions.query("set == 'cv'")
        acc = metrics(cv["y_true"], cv["score"], cv["pred"])["accuracy"]
        print(f"  {family}: {time.perf_counter() - t:.0f} s end to end "
              f"({record.info['timings']['fit_s']:.0f} s training, "
              f"{record.info['epochs_run']} epochs), fold accuracy {acc:.3f} "
              f"on {len(cv)} subjects", flush=True)


if __name__ == "__main__":
    sys.exit(main())
