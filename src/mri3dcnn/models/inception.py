"""Inception_1/2: conv_pool, one or two inception modules, Conv(32, 1x1x1), Dropout, Dense(2)."""

from __future__ import annotations

from keras import layers

from .blocks import conv, conv_pool, inception_module


def inception_trunk(x, prefix: str, n_modules: int = 1):
    """One branch up to the flattened 1x1x1 projection."""
    if n_modules not in (1, 2):
        raise ValueError(f"Inception takes 1 or 2 modules, got {n_modules}.")
    x = conv_pool(x, name=f"{prefix}_block1")
    for m in range(n_modules):
        x = inception_module(x, name=f"{prefix}_inception{m + 1}")
    x = conv(x, 32, 1, name=f"{prefix}_project")
    return layers.Flatten(name=f"{prefix}_flatten")(x)


def dropout_head(features):
    """Dropout(0.5) before the output, with no Dense(128): the inception families' head."""
    return layers.Dropout(0.5, name="dropout")(features)
