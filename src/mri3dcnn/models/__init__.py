"""The five 3D CNN families of the study, one builder each, and `build()` to pick one.

`build(name, maps, grid)` returns a compiled Keras model. With several maps, `fusion`
chooses how they meet: `"branch"` (the original: one branch per map, flattened and
joined before the head) or `"channel"` (maps stacked as channels of one branch). Late
fusion averages single-map models' probabilities and needs no model of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import keras
from keras import layers

from .blocks import adadelta, sigmoid_head
from .inception import dropout_head, inception_trunk
from .inception_resnet import inception_resnet_trunk
from .sequential import sequential_head, sequential_trunk

#: name -> (trunk builder(x, prefix), head builder(features))
FAMILIES: dict[str, tuple[Callable, Callable]] = {
    "sequential_1": (partial(sequential_trunk, depth=1), sequential_head),
    "sequential_2": (partial(sequential_trunk, depth=2), sequential_head),
    "sequential_3": (partial(sequential_trunk, depth=3), sequential_head),
    "inception_1": (partial(inception_trunk, n_modules=1), dropout_head),
    "inception_2": (partial(inception_trunk, n_modules=2), dropout_head),
    "inception_resnet_1": (partial(inception_resnet_trunk, n_blocks=1), dropout_head),
    "inception_resnet_2": (partial(inception_resnet_trunk, n_blocks=2), dropout_head),
}
FUSIONS = ("branch", "channel")


def build(name: str, maps: list[str] | tuple[str, ...], grid: tuple[int, int, int],
          fusion: str = "branch", published_wiring: bool = False,
          compile: bool = True) -> keras.Model:
    """A model of family `name` taking one volume per map on a `grid`-shaped input."""
    if name not in FAMILIES:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(FAMILIES)}.")
    if fusion not in FUSIONS:
        raise ValueError(f"Unknown fusion {fusion!r}; choose one of {FUSIONS}.")
    maps = list(maps)
    if not maps:
        raise ValueError("A model needs at least one input map.")
    trunk, head = FAMILIES[name]
    if name == "inception_resnet_2":
        trunk = partial(trunk, published_wiring=published_wiring)
    grid = tuple(int(g) for g in grid)
    if fusion == "branch" or len(maps) == 1:
        inputs = [keras.Input(shape=(*grid, 1), name=m) for m in maps]
        feats = [trunk(x, prefix=m) for x, m in zip(inputs, maps, strict=True)]
        joined = feats[0] if len(feats) == 1 else layers.Concatenate(name="fusion")(feats)
    else:
        inputs = [keras.Input(shape=(*grid, len(maps)), name="_".join(maps))]
        joined = trunk(inputs[0], prefix="stack")
    outputs = sigmoid_head(head(joined))
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs,
                        name=f"{name}_{fusion}_{'_'.join(maps)}")
    if compile:
        model.compile(optimizer=adadelta(), loss="binary_crossentropy", metrics=["accuracy"])
    return model


__all__ = ["FAMILIES", "FUSIONS", "build"]
