"""The study's five 3D CNN families, two modern 3D nets, and `build()` to pick one.

`build(name, maps, grid)` returns a compiled Keras model. With several maps, `fusion`
chooses how they meet: `"branch"` (the original: one branch per map, joined before the
head) or `"channel"` (maps stacked as channels of one branch). Late fusion averages
single-map models' probabilities and needs no model of its own.

The original families end in two sigmoid units (as published); SFCN and the 3D ResNet end
in a 1x1x1 convolution and a softmax over the two classes. Each family compiles by default
with its own recipe ("original" or "modern", see `mri3dcnn.recipes`); pass `recipe` (and
`steps_per_epoch`, `epochs` to lay out a learning-rate schedule) to train it another way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import keras
from keras import layers

from ..recipes import Recipe, get_recipe
from .blocks import channel_axis, sigmoid_head, softmax_head
from .inception import dropout_head, inception_trunk
from .inception_resnet import inception_resnet_trunk
from .resnet3d import resnet3d_trunk
from .sequential import sequential_head, sequential_trunk
from .sfcn import sfcn_trunk


@dataclass(frozen=True)
class Family:
    """A trunk (one branch per input, `trunk(x, prefix)`), a head on the joined branches
    that returns the outputs, and the recipe the family is trained with by default."""

    trunk: Callable
    head: Callable
    recipe: str


def _sigmoid(head: Callable) -> Callable:
    return lambda features: sigmoid_head(head(features))


FAMILIES: dict[str, Family] = {
    "sequential_1": Family(partial(sequential_trunk, depth=1), _sigmoid(sequential_head),
                           "original"),
    "sequential_2": Family(partial(sequential_trunk, depth=2), _sigmoid(sequential_head),
                           "original"),
    "sequential_3": Family(partial(sequential_trunk, depth=3), _sigmoid(sequential_head),
                           "original"),
    "inception_1": Family(partial(inception_trunk, n_modules=1), _sigmoid(dropout_head),
                          "original"),
    "inception_2": Family(partial(inception_trunk, n_modules=2), _sigmoid(dropout_head),
                          "original"),
    "inception_resnet_1": Family(partial(inception_resnet_trunk, n_blocks=1),
                                 _sigmoid(dropout_head), "original"),
    "inception_resnet_2": Family(partial(inception_resnet_trunk, n_blocks=2),
                                 _sigmoid(dropout_head), "original"),
    "sfcn": Family(sfcn_trunk, softmax_head, "modern"),
    "resnet3d": Family(partial(resnet3d_trunk, blocks_per_stage=1), softmax_head, "modern"),
}
#: the study's families, as published
ORIGINAL_FAMILIES = tuple(n for n, f in FAMILIES.items() if f.recipe == "original")
#: the modern baselines: SFCN and a ResNet-10-style 3D ResNet
MODERN_FAMILIES = tuple(n for n, f in FAMILIES.items() if f.recipe == "modern")
FUSIONS = ("branch", "channel")


def build(name: str, maps: list[str] | tuple[str, ...], grid: tuple[int, int, int],
          fusion: str = "branch", published_wiring: bool = False, compile: bool = True,
          recipe: str | Recipe | None = None, steps_per_epoch: int | None = None,
          epochs: int | None = None) -> keras.Model:
    """A model of family `name` taking one volume per map on a `grid`-shaped input.

    Parameters
    ----------
    name : str
        A key of `FAMILIES`.
    maps : list of str
        The input maps, one input (branch fusion) or one channel (channel fusion) each.
    grid : tuple of int
        The study grid's shape; the modern nets size their depth to it.
    fusion : {"branch", "channel"}
        How several maps meet.
    published_wiring : bool
        Inception_resnet_2 as published (its second block unused).
    compile : bool
        Compile with `recipe` (default: the family's own).
    recipe : str or Recipe, optional
        The training recipe whose optimizer and loss the model is compiled with.
    steps_per_epoch, epochs : int, optional
        Lay out the recipe's learning-rate schedule; without them its peak rate is constant.

    Returns
    -------
    keras.Model
    """
    if name not in FAMILIES:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(FAMILIES)}.")
    if fusion not in FUSIONS:
        raise ValueError(f"Unknown fusion {fusion!r}; choose one of {FUSIONS}.")
    maps = list(maps)
    if not maps:
        raise ValueError("A model needs at least one input map.")
    family = FAMILIES[name]
    trunk = family.trunk
    if name == "inception_resnet_2":
        trunk = partial(trunk, published_wiring=published_wiring)
    grid = tuple(int(g) for g in grid)

    def shape(channels: int) -> tuple[int, ...]:
        return (channels, *grid) if channel_axis() == 1 else (*grid, channels)

    if fusion == "branch" or len(maps) == 1:
        inputs = [keras.Input(shape=shape(1), name=m) for m in maps]
        feats = [trunk(x, prefix=m) for x, m in zip(inputs, maps, strict=True)]
        joined = (feats[0] if len(feats) == 1
                  else layers.Concatenate(axis=channel_axis(), name="fusion")(feats))
    else:
        inputs = [keras.Input(shape=shape(len(maps)), name="_".join(maps))]
        joined = trunk(inputs[0], prefix="stack")
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], family.head(joined),
                        name=f"{name}_{fusion}_{'_'.join(maps)}")
    if compile:
        get_recipe(recipe or family.recipe).compile(model, steps_per_epoch, epochs)
    return model


def load_model(path):
    """A model this package saved, in any process: the layers it registers with Keras
    (the fused batch norm, an exported model's normalisation and score) are imported
    first, which a bare `keras.models.load_model` in a fresh process would not do."""
    from . import batchnorm, export_layers  # noqa: F401  (registers their layers)

    return keras.models.load_model(path)


__all__ = ["FAMILIES", "FUSIONS", "MODERN_FAMILIES", "ORIGINAL_FAMILIES", "Family", "build",
           "load_model"]
