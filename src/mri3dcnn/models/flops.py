"""Floating-point operations of a model's convolutions and dense layers, counted exactly.

Throughput only means something against the arithmetic it did. Per sample and per layer:

- forward: one multiply-add (2 FLOPs) per kernel tap that lands inside the input, per input
  and output channel, plus the bias add. Taps that fall on `same` padding multiply zeros;
  kernels may skip them, so they are not counted.
- training adds the two backward products: the weight gradient (the same multiply-adds as
  the forward pass, plus the bias gradient's sum) and the input gradient (the same again),
  except where the layer reads a model input directly: nothing needs that gradient, and
  TensorFlow prunes it from the graph.

Batch norm, pooling, activations and additions are elementwise and memory-bound; they are
left out, so the counts slightly understate the work done.
"""

from __future__ import annotations

import numpy as np

CONV_KINDS = ("Conv1D", "Conv2D", "Conv3D")


def _valid_taps(n_in: int, n_out: int, k: int, stride: int, padding: str) -> int:
    """(output position, kernel tap) pairs along one axis whose input index is in range."""
    pad = max((n_out - 1) * stride + k - n_in, 0) // 2 if padding == "same" else 0
    o = np.arange(n_out)[:, None] * stride + np.arange(k)[None, :] - pad
    return int(((o >= 0) & (o < n_in)).sum())


def _spatial(shape, channels_first: bool) -> tuple[int, ...]:
    return tuple(int(s) for s in (shape[2:] if channels_first else shape[1:-1]))


def layer_flops(layer, reads_model_input: bool = False) -> dict[str, float]:
    """Forward and training FLOPs per sample of one Conv or Dense layer (zeros otherwise)."""
    kind = type(layer).__name__
    if kind in CONV_KINDS:
        if any(d != 1 for d in layer.dilation_rate) or layer.groups != 1:
            raise ValueError(f"{layer.name}: dilated or grouped convolutions are not counted.")
        cf = layer.data_format == "channels_first"
        cin = int(layer.input.shape[1 if cf else -1])
        cout = int(layer.filters)
        n_in, n_out = _spatial(layer.input.shape, cf), _spatial(layer.output.shape, cf)
        pairs = np.prod([_valid_taps(i, o, k, s, layer.padding) for i, o, k, s in
                         zip(n_in, n_out, layer.kernel_size, layer.strides, strict=True)])
        macs = float(pairs) * cin * cout
        bias = float(np.prod(n_out)) * cout if layer.use_bias else 0.0
    elif kind == "Dense":
        rows = float(np.prod([int(s) for s in layer.input.shape[1:-1]] or [1]))
        macs = rows * int(layer.input.shape[-1]) * layer.units
        bias = rows * layer.units if layer.use_bias else 0.0
    else:
        return {"forward": 0.0, "weight_grad": 0.0, "input_grad": 0.0, "train": 0.0}
    forward = 2 * macs + bias
    weight_grad = 2 * macs + bias
    input_grad = 0.0 if reads_model_input else 2 * macs
    return {"forward": forward, "weight_grad": weight_grad, "input_grad": input_grad,
            "train": forward + weight_grad + input_grad}


def model_flops(model) -> dict[str, float]:
    """Per-sample FLOPs of `model`: forward, and training (forward + both backward products)."""
    inputs = {id(t) for t in model.inputs}
    total = {"forward": 0.0, "weight_grad": 0.0, "input_grad": 0.0, "train": 0.0}
    for layer in model.layers:
        if type(layer).__name__ not in (*CONV_KINDS, "Dense"):
            continue
        f = layer_flops(layer, reads_model_input=id(layer.input) in inputs)
        for k in total:
            total[k] += f[k]
    return total
