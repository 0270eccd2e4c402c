"""Speed benchmarks, printed beside their targets (never asserted: machines are shared).

    python benchmarks/run.py [--grid-mm 3] [--models sequential_2 sfcn] [--batch 8]
                             [--batches 6] [--write benchmarks/README.md]

For each family on the study grid: training and inference samples per second, the FLOPs
per sample counted exactly per layer (`mri3dcnn.models.flops`: forward, and training =
forward + weight gradient + input gradient, the first convolution's input gradient left
out), and the achieved share of this machine's measured float32 matmul FLOP/s, against the
targets (training >= 70 %, inference >= 60 %); then the augmentation pipeline's samples per
second against twice the fastest family's training rate, and the synthetic cohort
generator's speed. `--write` puts the table, with the host it came from, into the
benchmarks README between its markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGETS = {"train": 0.70, "infer": 0.60, "augment": 2.0}
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def cpu_peak_flops() -> float:
    """The best float32 matmul rate over sizes 1024-2048: at 1024 alone some runs fell 15 %
    short of the larger sizes' rate on the same host, which would flatter every share."""
    return max(matmul_flops(1024, repeats=10, rounds=5), matmul_flops(1536, repeats=4),
               matmul_flops(2048, repeats=2))


def matmul_flops(n: int = 1024, repeats: int = 10, rounds: int = 3, dtype: str = "float32",
                 device: str | None = None) -> float:
    """Best of `rounds` timings of `repeats` n x n matmuls: this machine's peak FLOP/s
    through TensorFlow (the same kernels' library the models run on)."""
    import tensorflow as tf

    with tf.device(device or ("/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0")):
        rng = np.random.default_rng(0)
        a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
        b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
        for _ in range(3):  # warm-up: kernel selection, thread pools, clocks
            float(tf.linalg.matmul(a, b)[0, 0])
        best = 0.0
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(repeats):  # queued back to back on a GPU, synchronised once
                c = tf.linalg.matmul(a, b)
            float(c[0, 0])
            best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t))
    return best


def fastest(rounds: int, run) -> float:
    """Seconds of the fastest of `rounds` calls: a single timing on a shared host caught
    one family's inference at half its rate."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def bench_model(name: str, grid, batch: int, batches: int, jit_compile: bool = False,
                maps: tuple[str, ...] = ("gm",), rounds: int = 2) -> dict:
    """Training and inference samples/s of family `name` (its own recipe) on random data,
    each the fastest of `rounds` timed passes."""
    import keras

    from mri3dcnn.models import FAMILIES, build
    from mri3dcnn.models.flops import model_flops
    from mri3dcnn.recipes import get_recipe

    keras.utils.set_random_seed(0)
    model = build(name, list(maps), grid, compile=False)
    recipe = get_recipe(FAMILIES[name].recipe)
    model.compile(optimizer=recipe.optimizer(), loss=recipe.loss(), jit_compile=jit_compile)
    channels_first = keras.config.image_data_format() == "channels_first"
    shape = (1, *grid) if channels_first else (*grid, 1)
    x = np.random.default_rng(0).standard_normal((batch * batches, *shape)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(len(x)) % 2]
    model.fit(x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1, verbose=0)  # warm-up
    train = len(x) / fastest(rounds, lambda: model.fit(x, y, batch_size=batch, epochs=1,
                                                        verbose=0, shuffle=False))
    model.predict(x[:2 * batch], batch_size=batch, verbose=0)
    infer = len(x) / fastest(rounds, lambda: model.predict(x, batch_size=batch, verbose=0))
    flops = model_flops(model)
    keras.backend.clear_session()
    return {"model": name, "params": int(model.count_params()), "fwd_flops": flops["forward"],
            "train_flops": flops["train"], "train_sps": train, "infer_sps": infer}


def bench_augmentation(grid, grid_mm: float, n: int = 16) -> float:
    from mri3dcnn.preprocessing import augment_batch

    rng = np.random.default_rng(0)
    batch = {"gm": rng.random((n, *grid), dtype=np.float32)}
    augment_batch({"gm": batch["gm"][:2]}, rng, grid_mm)
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


def verdict(value: float, target: float) -> str:
    return "meets" if value >= target else "below"


def model_rows(results: list[dict], peak: float) -> list[str]:
    """Markdown rows: each figure beside its target."""
    rows = ["| model | params | GFLOP fwd | GFLOP train | train/s | infer/s "
            "| train % peak (target 70) | infer % peak (target 60) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        tr = r["train_flops"] * r["train_sps"] / peak
        inf = r["fwd_flops"] * r["infer_sps"] / peak
        rows.append(f"| {r['model']} | {r['params']:,d} | {r['fwd_flops'] / 1e9:.2f} "
                    f"| {r['train_flops'] / 1e9:.2f} | {r['train_sps']:.1f} "
                    f"| {r['infer_sps']:.1f} | {100 * tr:.0f} % ({verdict(tr, TARGETS['train'])}) "
                    f"| {100 * inf:.0f} % ({verdict(inf, TARGETS['infer'])}) |")
    return rows


def write_readme(path: Path, text: str, markers: tuple[str, str] = MARKERS) -> None:
    """Replace the generated section of the README between `markers` (atomically)."""
    from mri3dcnn.atomic import write_text

    start, end = markers
    old = path.read_text() if path.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in old or end not in old:
        raise ValueError(f"{path} lacks the markers {markers}; add them where the table goes.")
    pattern = re.escape(start) + ".*?" + re.escape(end)
    write_text(path, re.sub(pattern, lambda _: f"{start}\n{text}\n{end}", old, flags=re.S))


def arguments(description: str, batch: int, batches: int) -> argparse.ArgumentParser:
    """The options every throughput script shares: grid, families, batch size and count."""
    from mri3dcnn.models import FAMILIES

    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid-mm", type=float, default=3.0)
    ap.add_argument("--models", nargs="*", default=list(FAMILIES))
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--batches", type=int, default=batches, help="batches timed per figure")
    return ap


def cpu_setup(grid_mm: float) -> tuple[tuple[int, ...], str, float]:
    """TensorFlow configured as the study runs it, then the study grid, the host line and
    the CPU's peak: what every CPU benchmark reports against."""
    from mri3dcnn.config import study_grid
    from mri3dcnn.hardware import describe
    from mri3dcnn.training import configure_tensorflow

    configure_tensorflow()
    _, grid = study_grid(grid_mm)
    return grid, describe(), cpu_peak_flops()


def main() -> None:
    ap = arguments(__doc__, batch=8, batches=6)
    ap.add_argument("--no-generator", action="store_true", help="skip the cohort generator")
    ap.add_argument("--write", type=Path, help="README to write the table into")
    a = ap.parse_args()
    grid, host, peak = cpu_setup(a.grid_mm)
    head = [f"Host: {host}.",
            f"Grid {'x'.join(map(str, grid))} ({a.grid_mm:g} mm), batch {a.batch}, "
            f"each figure the fastest of 2 passes over {a.batch * a.batches} samples; float32 matmul peak "
            f"{peak / 1e9:.1f} GFLOP/s; TensorFlow intra-op threads "
            f"{os.environ.get('MRI3DCNN_TF_THREADS', os.cpu_count())}.", ""]
    print("\n".join(head), flush=True)
    results = []
    for name in a.models:
        results.append(bench_model(name, grid, a.batch, a.batches))
        print(model_rows(results[-1:], peak)[-1], flush=True)
    fastest = max(r["train_sps"] for r in results)
    aug = bench_augmentation(grid, a.grid_mm)
    tail = ["", f"Augmentation (the original ranges): {aug:.1f} samples/s = "
                f"{aug / fastest:.2f}x the fastest family's training rate ({fastest:.1f}/s); "
                f"target >= {TARGETS['augment']:g}x ({verdict(aug / fastest, TARGETS['augment'])})."]
    if not a.no_generator:
        tail.append(f"Synthetic generator: {bench_generator(a.grid_mm):.1f} subjects/s "
                    f"at {a.grid_mm:g} mm.")
    print("\n".join(tail[1:]), flush=True)
    if a.write:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
        write_readme(a.write, "\n".join([f"Measured {when} with `{command}`.", "", *head,
                                         *model_rows(results, peak), *tail]))
        print(f"table written to {a.write}")


if __name__ == "__main__":
    main()
