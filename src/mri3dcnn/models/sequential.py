"""Sequential_1/2/3: `depth` conv_pool blocks, Flatten, Dense(128), Dropout(0.5), Dense(2)."""

from __future__ import annotations

from keras import layers

from .blocks import conv_pool


def sequential_trunk(x, prefix: str, depth: int = 2):
    """One branch: `depth` conv_pool blocks, flattened."""
    if depth not in (1, 2, 3):
        raise ValueError(f"Sequential depth must be 1, 2 or 3, got {depth}.")
    for d in range(depth):
        x = conv_pool(x, name=f"{prefix}_block{d + 1}")
    return layers.Flatten(name=f"{prefix}_flatten")(x)


def sequential_head(features):
    """Dense(128, ReLU) then Dropout(0.5): where the branches meet."""
    x = layers.Dense(128, activation="relu", name="dense128")(features)
    return layers.Dropout(0.5, name="dropout")(x)
