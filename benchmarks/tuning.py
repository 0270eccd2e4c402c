"""What moves CNN throughput on this host: XLA, batch size, threads, layout, oneDNN.

    python benchmarks/tuning.py [--models sequential_2 sfcn] [--grid-mm 3] [--batches 4]
                                [--write benchmarks/README.md]

Each setting runs in a fresh process (oneDNN and thread pools are fixed when TensorFlow
starts) and changes one thing from the baseline: batch 8, intra-op threads = cores,
inter-op 1, channels-last, oneDNN on, op determinism on, no XLA, batch norm by
TensorFlow's fused kernel (SFCN, 3D ResNet). XLA is measured against
a baseline without op determinism too, because Keras turns XLA off when determinism is on.
Figures are training and inference samples/s and their ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = {"batch": 8, "intra": os.cpu_count() or 1, "inter": 1, "layout": "channels_last",
        "onednn": "1", "determinism": True, "xla": False, "fused_bn": True}
#: (label, changes from BASE)
SETTINGS = [
    ("baseline", {}),
    ("oneDNN off", {"onednn": "0"}),
    ("batch 4", {"batch": 4}),
    ("batch 16", {"batch": 16}),
    ("intra 1 thread", {"intra": 1}),
    ("inter 2 threads", {"inter": 2}),
    ("channels-first", {"layout": "channels_first"}),
    ("no determinism", {"determinism": False}),
    ("XLA (no determinism)", {"determinism": False, "xla": True}),
    ("Keras batch norm", {"fused_bn": False}),  # SFCN and the 3D ResNet only
    ("baseline, again", {}),  # how far the host's load moved the numbers meanwhile
]


def run_one(setting: dict, model: str, grid_mm: float, batches: int) -> None:
    """In a fresh process: apply `setting`, benchmark `model`, print one JSON line."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = setting["onednn"]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(setting["intra"])
    tf.config.threading.set_inter_op_parallelism_threads(setting["inter"])
    if setting["determinism"]:
        tf.config.experimental.enable_op_determinism()
    import keras

    keras.config.set_image_data_format(setting["layout"])
    if not setting["fused_bn"]:
        from mri3dcnn.models import resnet3d, sfcn

        sfcn.FusedBatchNormalization = resnet3d.FusedBatchNormalization = \
            keras.layers.BatchNormalization
    sys.path.insert(0, str(HERE))
    from run import bench_model

    from mri3dcnn.config import study_grid

    _, grid = study_grid(grid_mm)
    r = bench_model(model, grid, setting["batch"], max(1, batches * 8 // setting["batch"]),
                    jit_compile=setting["xla"])
    print(json.dumps({"train_sps": r["train_sps"], "infer_sps": r["infer_sps"]}))


def measure(setting: dict, model: str, grid_mm: float, batches: int) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(setting), "--models", model,
           "--grid-mm", str(grid_mm), "--batches", str(batches)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "Error" in ln] or lines or ["no output"]
        return {"error": errors[-1][:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["sequential_2", "sfcn"])
    ap.add_argument("--grid-mm", type=float, default=3.0)
    ap.add_argument("--batches", type=int, default=4, help="batches of 8 samples timed")
    ap.add_argument("--only", nargs="*", help="labels of the settings to run")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--write", type=Path, help="README to write the table into")
    a = ap.parse_args()
    if a.one:
        run_one(json.loads(a.one), a.models[0], a.grid_mm, a.batches)
        return
    from mri3dcnn.hardware import describe

    host = describe(with_tensorflow=False)
    rows = [f"Host: {host}; {a.grid_mm:g} mm grid, {a.batches * 8} samples per figure.", "",
            "| model | setting | train/s | infer/s | train vs baseline | infer vs baseline |",
            "|---|---|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for model in a.models:
        ref = {}
        for label, change in SETTINGS:
            if a.only and label not in a.only and label not in ("baseline", "no determinism"):
                continue
            r = measure({**BASE, **change}, model, a.grid_mm, a.batches)
            if "error" in r:
                row = f"| {model} | {label} | fails: {r['error']} | | | |"
            else:
                base = ref.get("no determinism" if change.get("xla") else "baseline", r)
                ref[label] = r
                row = (f"| {model} | {label} | {r['train_sps']:.1f} | {r['infer_sps']:.1f} "
                       f"| {r['train_sps'] / base['train_sps']:.2f}x "
                       f"| {r['infer_sps'] / base['infer_sps']:.2f}x |")
            rows.append(row)
            print(row, flush=True)
    if a.write:
        sys.path.insert(0, str(HERE))
        from run import write_readme

        write_readme(a.write, "\n".join(rows), markers=("<!-- tuning:start -->",
                                                        "<!-- tuning:end -->"))
        print(f"table written to {a.write}")


if __name__ == "__main__":
    main()
