"""The two building blocks shared by every family: `conv_pool` and the 3D inception module.

Faithful to the original: ReLU, `same` padding, stride 1, default initialisers, no batch
normalisation, no regulariser. Channels-last (Keras 3), which leaves parameter counts as
in the channels-first original.
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
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([t1, t2, t3, t4])


def scaled_residual(shortcut, branch, name: str, scale: float = 0.3):
    """shortcut + scale * branch, with no activation after the sum (as published)."""
    scaled = layers.Rescaling(scale, name=f"{name}_scale")(branch)
    return layers.Add(name=f"{name}_add")([shortcut, scaled])


def sigmoid_head(features, name: str = "output"):
    """Dense(2, sigmoid) on one-hot labels, as in the original."""
    return layers.Dense(2, activation="sigmoid", name=name)(features)


def adadelta() -> keras.optimizers.Optimizer:
    """The original optimizer with the Keras 2 defaults of its time (lr 1.0, rho 0.95)."""
    return keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7)
