"""A small 3D ResNet: the residual baseline most 3D medical-imaging studies start from.

He et al.'s basic block (CVPR 2016: two 3x3x3 convolutions with batch norm, an identity
shortcut, or a strided 1x1x1 convolution + batch norm where the shape changes) in the 3D
form of Hara et al. (CVPR 2018) and MedicalNet (Chen et al., 2019). `blocks_per_stage=1`
is ResNet-10, `2` ResNet-18.

Sized for the study grid: a 3x3x3 stride-2 stem (the 7x7x7 stem + max-pool of ImageNet
nets would discard most of a 61-voxel grid at once) then `halvings(grid)` stages, the first
at stride 1 and the others at stride 2, with 32-64-128-256 channels, so the last stage sees
a map of at least 3 voxels a side; global average pooling feeds the same 1x1x1 softmax head
as SFCN.
"""

from __future__ import annotations

from keras import layers

from .batchnorm import FusedBatchNormalization
from .blocks import channel_axis, halvings

RESNET_CHANNELS = (32, 64, 128, 256, 256)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str):
    x = layers.Conv3D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    return FusedBatchNormalization(axis=channel_axis(), name=f"{name}_bn")(x)


def basic_block(x, filters: int, stride: int, name: str):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU (He et al. 2016)."""
    cin = x.shape[channel_axis()]
    y = layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, filters, 3, stride, f"{name}_a"))
    y = _conv_bn(y, filters, 3, 1, f"{name}_b")
    shortcut = x
    if stride != 1 or cin != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_proj")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet3d_trunk(x, prefix: str, blocks_per_stage: int = 1):
    """One branch: stem, residual stages, global average (spatial axes kept)."""
    if blocks_per_stage < 1:
        raise ValueError(f"A ResNet stage needs at least one block, got {blocks_per_stage}.")
    grid = x.shape[2:] if channel_axis() == 1 else x.shape[1:-1]
    widths = RESNET_CHANNELS[:halvings(grid)]
    x = layers.ReLU(name=f"{prefix}_stem_relu")(_conv_bn(x, widths[0], 3, 2, f"{prefix}_stem"))
    for s, c in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if s > 0 and b == 0 else 1
            x = basic_block(x, c, stride, name=f"{prefix}_stage{s + 1}_block{b + 1}")
    return layers.GlobalAveragePooling3D(keepdims=True, name=f"{prefix}_gap")(x)
