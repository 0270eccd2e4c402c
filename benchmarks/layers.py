"""Where a family's training step spends its time: every layer timed alone.

    python benchmarks/layers.py [--models sfcn sequential_2] [--grid-mm 3] [--batch 8]

`run.py` gives one share of peak per family; this script says why it is what it is. Each
layer runs alone on random inputs of its own shape at the benchmark's batch size, forward
(training mode, as in `fit`) and forward plus backward (the gradients of the layer's
weights and of its input, except for layers that read the model input, whose input
gradient TensorFlow prunes). The table lists, per kind of layer, the share of the summed
training time and, for convolutions and dense layers, the FLOP rate against the matmul
peak; the layers' sum is set beside the whole `fit` step, the difference being the
optimizer's update, the loss and the framework.
"""

from __future__ import annotations

import collections
import datetime
import sys
from pathlib import Path

import numpy as np
from run import arguments, bench_model, cpu_setup, fastest, write_readme

MARKERS = ("<!-- layers:start -->", "<!-- layers:end -->")


def _timed(fn, args, repeats: int) -> float:
    """Best of `repeats` calls of a traced function, after one warm-up call; each call's
    outputs are read back, so the time covers the work, not its dispatch."""
    def call():
        out = fn(*args)
        return [float(np.asarray(o).ravel()[0]) for o in (out if isinstance(out, list)
                                                           else [out])]

    call()
    return fastest(repeats, call)


def layer_times(model, batch: int, repeats: int = 3) -> list[dict]:
    """Forward and forward+backward seconds per batch of every layer, alone."""
    import tensorflow as tf

    from mri3dcnn.models.flops import layer_flops

    inputs = {id(t) for t in model.inputs}
    rows = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        sources = layer.input if isinstance(layer.input, list) else [layer.input]
        reads_input = all(id(t) in inputs for t in sources)
        xs = [tf.random.normal((batch, *t.shape[1:])) for t in sources]
        dy = tf.random.normal((batch, *layer.output.shape[1:]))

        def call(z: list, layer=layer):
            return layer(z if len(z) > 1 else z[0], training=True)

        @tf.function
        def forward(*z, call=call):
            return call(list(z))

        @tf.function
        def train(*z, call=call, dy=dy, layer=layer, reads_input=reads_input):
            with tf.GradientTape() as tape:
                if not reads_input:
                    tape.watch(z)
                loss = tf.reduce_sum(call(list(z)) * dy)
            wrt = [*([] if reads_input else z), *layer.trainable_variables]
            grads = tape.gradient(loss, wrt) if wrt else [loss]
            return [g for g in grads if g is not None] or [loss]

        fwd = _timed(forward, xs, repeats)
        step = _timed(train, xs, repeats)
        flops = layer_flops(layer, reads_model_input=reads_input)
        kind = type(layer).__name__ + (" on the model input" if reads_input else "")
        rows.append({"layer": layer.name, "kind": kind, "fwd_s": fwd,
                     "train_s": step, "fwd_flops": flops["forward"] * batch,
                     "train_flops": flops["train"] * batch})
    return rows


def summary(name: str, rows: list[dict], step_s: float, peak: float) -> list[str]:
    """Markdown: time per kind of layer, the FLOP rate where there are FLOPs."""
    kinds = collections.defaultdict(lambda: np.zeros(4))
    for r in rows:
        kinds[r["kind"]] += [r["fwd_s"], r["train_s"], r["fwd_flops"], r["train_flops"]]
    total = sum(v[1] for v in kinds.values())
    outside = (f"{100 * (step_s - total) / step_s:.0f} % of it outside the layers: optimizer, "
               "loss, framework" if step_s > total else "no time measurable outside the layers")
    out = [f"**{name}**: layers alone {1e3 * total:.0f} ms per training batch, whole `fit` "
           f"step {1e3 * step_s:.0f} ms ({outside}).", "",
           "| layer kind | share of layer time (train) | forward % peak | train % peak |",
           "|---|---:|---:|---:|"]

    def rate(flops: float, seconds: float) -> str:
        return f"{100 * flops / seconds / peak:.0f} %" if flops else ""

    for kind, (f, t, ff, tf_) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        out.append(f"| {kind} | {100 * t / total:.0f} % | {rate(ff, f)} | {rate(tf_, t)} |")
    return out


def main() -> None:
    import keras

    from mri3dcnn.models import build

    ap = arguments(__doc__, batch=8, batches=4)
    ap.add_argument("--detail", action="store_true", help="print every layer")
    ap.add_argument("--write", type=Path, help="README to write the tables into")
    a = ap.parse_args()
    grid, host, peak = cpu_setup(a.grid_mm)
    head = (f"Host: {host}. Grid {'x'.join(map(str, grid))} ({a.grid_mm:g} mm), batch "
            f"{a.batch}; float32 matmul peak {peak / 1e9:.1f} GFLOP/s.")
    print(head, "\n", flush=True)
    text = []
    for name in a.models:
        fit = bench_model(name, grid, a.batch, a.batches)
        keras.utils.set_random_seed(0)
        model = build(name, ["gm"], grid, compile=False)
        rows = layer_times(model, a.batch)
        if a.detail:
            for r in rows:
                print(f"  {r['layer']:<32} {r['kind']:<22} fwd {1e3 * r['fwd_s']:7.1f} ms  "
                      f"train {1e3 * r['train_s']:7.1f} ms  "
                      f"{r['train_flops'] / r['train_s'] / 1e9:6.1f} GFLOP/s")
        lines = summary(name, rows, a.batch / fit["train_sps"], peak)
        text += [*lines, ""]
        print("\n".join(lines), "\n", flush=True)
        keras.backend.clear_session()
    if a.write:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = " ".join(["python benchmarks/layers.py", *sys.argv[1:]])
        write_readme(a.write, "\n".join([f"Measured {when} with `{command}`.", "", head, "",
                                         *text]).rstrip(), MARKERS)
        print(f"tables written to {a.write}")


if __name__ == "__main__":
    main()
