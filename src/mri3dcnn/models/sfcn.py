"""SFCN (Peng et al., Med Image Anal 2021): the lightweight fully convolutional brain net.

Peng, Gong, Beckmann, Vedaldi & Smith, "Accurate brain age prediction with lightweight deep
neural networks", Med Image Anal 68:101871 (2021), set brain-age records on UK Biobank with
this plain design: blocks of Conv3D(3x3x3) + batch norm + MaxPool(2) + ReLU with 32-64-128-
256-256 channels, a last Conv3D(1x1x1, 64) + batch norm + ReLU block without pooling, global
average pooling, dropout 0.5 and a 1x1x1 convolution to class scores with a softmax.

Sized for the study grid: the paper halves its 160x192x160 (1 mm) input five times; here
the number of pooled blocks is `halvings(grid)` (4 at 3 mm, 3 at 6 mm, 2 at 8 mm), taking
the paper's first channel widths, so every grid ends on a map of at least 3 voxels a side
before the global average. `width` scales every channel count (rounded, at least 1).
"""

from __future__ import annotations

from keras import layers

from .batchnorm import FusedBatchNormalization
from .blocks import channel_axis, halvings

#: the paper's pooled-block widths, then the 1x1x1 block's width
SFCN_CHANNELS = (32, 64, 128, 256, 256)
SFCN_LAST = 64


def sfcn_widths(grid: tuple[int, ...], width: float = 1.0) -> tuple[list[int], int]:
    """Channels of the pooled blocks and of the last 1x1x1 block on `grid`."""
    scale = lambda c: max(1, round(c * width))  # noqa: E731
    return [scale(c) for c in SFCN_CHANNELS[:halvings(grid)]], scale(SFCN_LAST)


def sfcn_trunk(x, prefix: str, width: float = 1.0):
    """One branch: pooled conv blocks, the 1x1x1 block, global average (spatial axes kept)."""
    grid = x.shape[2:] if channel_axis() == 1 else x.shape[1:-1]
    pooled, last = sfcn_widths(grid, width)
    axis = channel_axis()
    for i, c in enumerate(pooled):
        name = f"{prefix}_block{i + 1}"
        x = layers.Conv3D(c, 3, padding="same", name=f"{name}_conv")(x)
        x = FusedBatchNormalization(axis=axis, name=f"{name}_bn")(x)
        x = layers.MaxPooling3D(2, name=f"{name}_pool")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
    name = f"{prefix}_block{len(pooled) + 1}"
    x = layers.Conv3D(last, 1, name=f"{name}_conv")(x)
    x = FusedBatchNormalization(axis=axis, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.GlobalAveragePooling3D(keepdims=True, name=f"{prefix}_gap")(x)
