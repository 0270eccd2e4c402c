"""Building blocks shared by the families.

The originals' `conv_pool` and 3D inception module are faithful to the published code:
ReLU, `same` padding, stride 1, default initialisers, no batch normalisation, no
regulariser. Channels-last by default (Keras 3), which leaves parameter counts as in the
channels-first original; every block follows `keras.config.image_data_format()` so the
layout can be benchmarked both ways. The modern nets share `halvings` (how often a grid
can be halved) and the 1x1x1 softmax head.
"""

from __future__ import annotations

import keras
from keras import layers


def conv(x, filters: int, kernel, name: str | None = None):
    """Conv3D with the original's settings."""
    return layers.Conv3D(filters, kernel, padding="same", activation="relu", name=name)(x)


def conv_pool(x, name: str, filters: int = 32):
    """Conv3D(32, 3x3x3) then MaxPooling3D(3x3x3, stride 3, `valid`)."""
    x = conv(x, filters, 3, name=f"{name}_conv")
    return layers.MaxPooling3D(pool_size=3, strides=3, padding="valid", name=f"{name}_pool")(x)


def inception_module(x, name: str, filters: int = 32):
    """Four towers (1x1x1; factorised 3x3x3; factorised 5x5x5; pool + 1x1x1) -> 128 channels."""
    t1 = conv(x, filters, 1, name=f"{name}_1x1")
    t2 = conv(x, filters, 1, name=f"{name}_3_reduce")
    t2 = conv(t2, filters, (3, 1, 1), name=f"{name}_3a")
    t2 = conv(t2, filters, (1, 3, 1), name=f"{name}_3b")
    t2 = conv(t2, filters, (1, 1, 3), name=f"{name}_3c")
    t3 = conv(x, filters, 1, name=f"{name}_5_reduce")
    t3 = conv(t3, filters, (5, 1, 1), name=f"{name}_5a")
    t3 = conv(t3, filters, (1, 5, 1), name=f"{name}_5b")
    t3 = conv(t3, filters, (1, 1, 5), name=f"{name}_5c")
    t4 = layers.MaxPooling3D(pool_size=3, strides=1, padding="same", name=f"{name}_pool")(x)
    t4 = conv(t4, filters, 1, name=f"{name}_pool_proj")
    return layers.Concatenate(axis=channel_axis(), name=f"{name}_concat")([t1, t2, t3, t4])


def scaled_residual(shortcut, branch, name: str, scale: float = 0.3):
    """shortcut + scale * branch, with no activation after the sum (as published)."""
    scaled = layers.Rescaling(scale, name=f"{name}_scale")(branch)
    return layers.Add(name=f"{name}_add")([shortcut, scaled])


def channel_axis() -> int:
    """The channel axis of Keras' current image layout (-1 channels-last, 1 channels-first)."""
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def halvings(grid: tuple[int, ...], smallest: int = 3, most: int = 5) -> int:
    """How many times the grid can be halved (floor) before its smallest side drops below
    `smallest` voxels, at most `most`.

    Sizes the modern nets to the grid: SFCN halves its 160x192x160 input five times to
    5x6x5; the study's 61x73x61 (3 mm) allows four halvings to 3x4x3, 31x37x31 (6 mm) three,
    23x28x23 (8 mm) two, so the last feature map always keeps a 3-voxel context.
    """
    side, n = min(int(g) for g in grid), 0
    while n < most and side // 2 >= smallest:
        side //= 2
        n += 1
    if n == 0:
        raise ValueError(f"Grid {tuple(grid)} is too small to pool: every side needs at least "
                         f"{2 * smallest} voxels; use a finer grid_mm.")
    return n


def softmax_head(features, n_classes: int = 2, dropout: float = 0.5):
    """Dropout then a 1x1x1 convolution to class scores and a softmax (SFCN's head).

    `features` are globally pooled with the spatial axes kept (1x1x1), so the convolution
    is the linear classifier of the paper, with the paper's dropout rate.
    """
    x = layers.Dropout(dropout, name="dropout")(features)
    x = layers.Conv3D(n_classes, 1, name="classifier")(x)
    x = layers.Flatten(name="scores")(x)
    return layers.Softmax(name="output", dtype="float32")(x)  # float32 under mixed precision


def sigmoid_head(features, name: str = "output"):
    """Dense(2, sigmoid) on one-hot labels, as in the original; in float32 under mixed
    precision, as Keras advises for a model's outputs."""
    return layers.Dense(2, activation="sigmoid", name=name, dtype="float32")(features)
