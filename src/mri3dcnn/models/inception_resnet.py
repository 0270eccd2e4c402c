"""Inception_resnet_1/2: inception modules with scaled (0.3) residual additions.

In the published Inception_resnet_2 the head reads the first block's output, so its
second block is dead code and the model equals Inception_resnet_1. The intended wiring
(head on the second block) is the default; `published_wiring=True` rebuilds the original.
"""

from __future__ import annotations

from keras import layers

from .blocks import conv, conv_pool, inception_module, scaled_residual


def inception_resnet_trunk(x, prefix: str, n_blocks: int = 1, published_wiring: bool = False):
    """One branch: conv_pool, residual inception block(s), flattened 1x1x1 projection."""
    if n_blocks not in (1, 2):
        raise ValueError(f"Inception_resnet takes 1 or 2 blocks, got {n_blocks}.")
    x1 = conv_pool(x, name=f"{prefix}_block1")
    shortcut = conv(x1, 128, 1, name=f"{prefix}_shortcut")
    x2 = scaled_residual(shortcut, inception_module(x1, name=f"{prefix}_inception1"),
                         name=f"{prefix}_res1")
    out = x2
    if n_blocks == 2 and not published_wiring:
        out = scaled_residual(x2, inception_module(x2, name=f"{prefix}_inception2"),
                              name=f"{prefix}_res2")
    out = conv(out, 32, 1, name=f"{prefix}_project")
    return layers.Flatten(name=f"{prefix}_flatten")(out)
