"""Speed benchmarks, printed as numbers and ratios (never asserted: machines are shared).

    python benchmarks/run.py [--grid-mm 3] [--models sequential_2 inception_1] [--batches 6]

For each family on the study grid: training and inference samples per second, forward
FLOPs per sample counted from the layer shapes, and the achieved share of this machine's
measured float32 matmul FLOP/s; then the augmentation pipeline's samples per second
against the training rate it must feed, and the synthetic cohort generator's speed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """This machine's float32 matmul FLOP/s through TensorFlow (the same kernels' library)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    tf.linalg.matmul(a, b).numpy()
    t = time.perf_counter()
    for _ in range(repeats):
        tf.linalg.matmul(a, b).numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def forward_flops(model) -> float:
    """Multiply-adds x 2 of every Conv3D and Dense layer, from their output shapes."""
    total = 0.0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv3D":
            k = np.prod(layer.kernel_size)
            cin = layer.input.shape[-1]
            out = np.prod(layer.output.shape[1:])
            total += 2.0 * k * cin * out
        elif kind == "Dense":
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def bench_model(name: str, grid, batch: int, batches: int) -> dict:
    import keras

    from mri3dcnn.models import build

    keras.utils.set_random_seed(0)
    model = build(name, ["gm"], grid)
    x = np.random.default_rng(0).standard_normal((batch * batches, *grid, 1)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(len(x)) % 2]
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # warm-up
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    train = len(x) / (time.perf_counter() - t)
    model.predict(x[:batch], verbose=0)
    t = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    infer = len(x) / (time.perf_counter() - t)
    keras.backend.clear_session()
    return {"model": name, "params": model.count_params(), "flops": forward_flops(model),
            "train_sps": train, "infer_sps": infer}


def bench_augmentation(grid, grid_mm: float, n: int = 16) -> float:
    from mri3dcnn.training import augment_batch

    rng = np.random.default_rng(0)
    batch = {"gm": rng.random((n, *grid), dtype=np.float32)}
    t = time.perf_counter()
    augment_batch(batch, rng, grid_mm)
    return n / (time.perf_counter() - t)


def bench_generator(grid_mm: float, n: int = 20) -> float:
    from mri3dcnn.space import templates
    from mri3dcnn.synthetic import generate_cohort

    templates(grid_mm)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate_cohort(f"{tmp}/c", n, grid_mm=grid_mm, progress=False)
        return n / (time.perf_counter() - t)


def main() -> None:
    from mri3dcnn.config import study_grid
    from mri3dcnn.hardware import describe
    from mri3dcnn.models import FAMILIES
    from mri3dcnn.training import configure_tensorflow

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grid-mm", type=float, default=3.0)
    ap.add_argument("--models", nargs="*", default=sorted(FAMILIES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=6)
    a = ap.parse_args()
    configure_tensorflow()
    _, grid = study_grid(a.grid_mm)
    print(f"host: {describe()}")
    peak = matmul_flops()
    print(f"grid {grid} ({a.grid_mm:g} mm), batch {a.batch}; matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':20s} {'params':>10s} {'GFLOP/fwd':>10s} {'train/s':>8s} {'infer/s':>8s} "
          f"{'train %peak':>11s} {'infer %peak':>11s}")
    rates = []
    for name in a.models:
        r = bench_model(name, grid, a.batch, a.batches)
        rates.append(r["train_sps"])
        # training costs about three forward passes (forward, two backward products)
        tr = 3 * r["flops"] * r["train_sps"] / peak
        inf = r["flops"] * r["infer_sps"] / peak
        print(f"{name:20s} {r['params']:>10,d} {r['flops'] / 1e9:>10.2f} {r['train_sps']:>8.1f} "
              f"{r['infer_sps']:>8.1f} {100 * tr:>10.1f}% {100 * inf:>10.1f}%", flush=True)
    aug = bench_augmentation(grid, a.grid_mm)
    print(f"augmentation: {aug:.1f} samples/s; ratio to the fastest training rate "
          f"{aug / max(rates):.2f} (>1: augmentation keeps up)")
    gen = bench_generator(a.grid_mm)
    print(f"synthetic generator: {gen:.1f} subjects/s at {a.grid_mm:g} mm")


if __name__ == "__main__":
    main()
