"""Training recipes as data: the study's original protocol and a modern one, side by side.

A recipe decides how a network is trained, not what the network is, so any family can be
trained with any recipe and a comparison can separate architecture from training. Each
recipe is a frozen dataclass (hashable into result keys with `as_dict`) that builds its
Keras objects on demand:

    recipe = get_recipe("modern")
    model.compile(optimizer=recipe.optimizer(steps_per_epoch, epochs), loss=recipe.loss(),
                  metrics=["accuracy"])          # or recipe.compile(model, ...)
    model.fit(..., callbacks=recipe.callbacks(patience))
    for seed in recipe.seeds(base_seed): ...     # one fit per ensemble member

`epochs`, `batch_size` and `patience` left as None follow the run's profile. Labels are
one-hot, as everywhere in the project; `flip_lr` is the left-right flip augmentation the
modern recipe adds to the original affine one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

OPTIMIZERS = ("adadelta", "adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
LOSSES = ("binary", "categorical")


@dataclass(frozen=True)
class Recipe:
    """Everything about training that is not the architecture (see `RECIPES`)."""

    name: str
    optimizer_name: str
    learning_rate: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    #: "constant", or "cosine": linear warm-up to `learning_rate`, then cosine decay to 0
    schedule: str = "constant"
    warmup_epochs: int = 0
    #: "binary" (sigmoid-style, per output) or "categorical" (softmax-style) cross-entropy
    loss_name: str = "binary"
    label_smoothing: float = 0.0
    #: the original random shifts, rotations and zooms
    augment: bool = False
    #: random left-right flips (MNI x) of each training subject with probability 1/2
    flips: bool = False
    #: stop when the inner validation loss has not improved for `patience` epochs and
    #: restore the best epoch's weights
    early_stopping: bool = False
    patience: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    #: seeds added to the fit's base seed; the ensemble averages their probabilities
    ensemble_seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.optimizer_name, OPTIMIZERS, "optimizer"),
                                     (self.schedule, SCHEDULES, "schedule"),
                                     (self.loss_name, LOSSES, "loss")):
            if value not in allowed:
                raise ValueError(f"Recipe {self.name!r}: unknown {what} {value!r}; "
                                 f"choose one of {allowed}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"Recipe {self.name!r}: label_smoothing must be in [0, 1), "
                             f"got {self.label_smoothing}.")
        if not self.ensemble_seeds:
            raise ValueError(f"Recipe {self.name!r}: ensemble_seeds needs at least one seed.")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ensemble_seeds"] = list(self.ensemble_seeds)
        return d

    def replace(self, **changes) -> Recipe:
        return replace(self, **changes)

    def learning_rate_schedule(self, steps_per_epoch: int | None = None,
                               epochs: int | None = None):
        """The learning rate, or a Keras schedule laid out over `epochs` x `steps_per_epoch`.

        Without both numbers a schedule cannot be laid out, and the peak rate is used as a
        constant (what `models.build` compiles with before a fit knows its data size).
        """
        import keras

        epochs = epochs or self.epochs
        if self.schedule == "constant" or not steps_per_epoch or not epochs:
            return self.learning_rate
        total = max(1, int(steps_per_epoch) * int(epochs))
        warmup = min(int(steps_per_epoch) * self.warmup_epochs, total - 1)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else self.learning_rate,
            decay_steps=total - warmup, alpha=0.0,
            warmup_target=self.learning_rate if warmup else None, warmup_steps=warmup)

    def optimizer(self, steps_per_epoch: int | None = None, epochs: int | None = None):
        """A fresh Keras optimizer (one per fit: optimizers hold state)."""
        import keras

        lr = self.learning_rate_schedule(steps_per_epoch, epochs)
        if self.optimizer_name == "adadelta":
            return keras.optimizers.Adadelta(learning_rate=lr, rho=0.95, epsilon=1e-7)
        if self.optimizer_name == "adam":
            return keras.optimizers.Adam(learning_rate=lr)
        if self.optimizer_name == "adamw":
            return keras.optimizers.AdamW(learning_rate=lr, weight_decay=self.weight_decay)
        return keras.optimizers.SGD(learning_rate=lr, momentum=self.momentum, nesterov=True,
                                    weight_decay=self.weight_decay or None)

    def loss(self):
        """Cross-entropy on one-hot labels, with the recipe's label smoothing.

        Keras' categorical cross-entropy renormalises probabilities that do not sum to one,
        so it also trains the original families' two sigmoid outputs.
        """
        import keras

        if self.loss_name == "binary":
            return keras.losses.BinaryCrossentropy(label_smoothing=self.label_smoothing)
        return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)

    def callbacks(self, patience: int | None = None) -> list:
        """Early stopping on the inner validation loss (none if the recipe runs every epoch).

        `patience` is the profile's, used when the recipe sets none. Stopping waits until
        the warm-up is over, when the loss first means something.
        """
        import keras

        if not self.early_stopping:
            return []
        wait = self.patience if self.patience is not None else patience
        if wait is None:
            raise ValueError(f"Recipe {self.name!r} stops early but has no patience: pass "
                             "the profile's patience to callbacks().")
        return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(wait),
                                              restore_best_weights=True,
                                              start_from_epoch=self.warmup_epochs)]

    def compile(self, model, steps_per_epoch: int | None = None, epochs: int | None = None):
        """Compile `model` with this recipe's optimizer and loss, accuracy as the metric."""
        model.compile(optimizer=self.optimizer(steps_per_epoch, epochs), loss=self.loss(),
                      metrics=["accuracy"])
        return model

    def seeds(self, base_seed: int = 0) -> tuple[int, ...]:
        """The seeds of the ensemble members for a fit whose own seed is `base_seed`."""
        return tuple(int(base_seed) + s for s in self.ensemble_seeds)


RECIPES: dict[str, Recipe] = {
    # The study's notebooks: Adadelta with the Keras 2 defaults of the time (learning rate
    # 1.0, rho 0.95), binary cross-entropy on one-hot labels, no weight decay, no schedule,
    # no label smoothing; augmentation by random shifts, rotations and zooms; every epoch
    # run (no early stopping); one model per fold. Batch size and epochs are not stated in
    # the original, so they follow the profile.
    "original": Recipe(
        name="original", optimizer_name="adadelta", learning_rate=1.0,
        loss_name="binary", augment=True),
    # The modern recipe, each choice a standard answer to small, noisy data:
    # - AdamW (Loshchilov & Hutter, ICLR 2019): weight decay decoupled from the adaptive
    #   step is a real L2 penalty, unlike Adam's coupled decay; 1e-3 is Adam's usual rate,
    #   weight decay 0.01 a common default for small convnets.
    # - Linear warm-up then cosine decay to zero (Goyal et al. 2017; Loshchilov & Hutter,
    #   ICLR 2017): warm-up keeps early batch-norm statistics from derailing the first
    #   steps, cosine decay removes a step-schedule's hand-tuned milestones.
    # - Label smoothing 0.1 (Szegedy et al., CVPR 2016; Mueller et al., NeurIPS 2019):
    #   calibrates probabilities and regularises when labels are noisy, as diagnoses are.
    # - Augmentation: the original affine ranges plus left-right flips; SFCN's authors
    #   (Peng et al. 2021) trained with shifts and mirroring. Group differences in the
    #   planted cohort and in the schizophrenia literature are largely bilateral.
    # - Early stopping on the inner validation loss with the best epoch restored
    #   (Prechelt 1998), never on the test fold.
    # - An ensemble of three seeds averaged (Lakshminarayanan et al., NeurIPS 2017): the
    #   cheapest reliable gain in accuracy and calibration for nets trained from scratch on
    #   a few hundred subjects, whose fits vary widely with the seed.
    "modern": Recipe(
        name="modern", optimizer_name="adamw", learning_rate=1e-3, weight_decay=1e-2,
        schedule="cosine", warmup_epochs=2, loss_name="categorical", label_smoothing=0.1,
        augment=True, flips=True, early_stopping=True, ensemble_seeds=(0, 1, 2)),
}


def get_recipe(name: str | Recipe) -> Recipe:
    """A recipe by name, with the valid names in the error."""
    if isinstance(name, Recipe):
        return name
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"Unknown recipe {name!r}; choose one of {sorted(RECIPES)}.") from None


def flip_lr(batch, rng: np.random.Generator, axis: int = 0, p: float = 0.5):
    """Flip each subject left-right with probability `p`, the same way in every map.

    `batch` is an array with subjects first, `(n, *grid)` or `(n, *grid, channels)`, or a
    dict of such arrays (one per map, same subjects). `axis` is the spatial axis of a
    volume: 0, the study grid's first axis, runs along MNI x (left to right), so flipping
    it mirrors the brain about the midline (the study box spans x = -90..90 mm, symmetric
    about x = 0). Returns new arrays; the input is not modified.
    """
    arrays = batch if isinstance(batch, dict) else {None: batch}
    n = len(next(iter(arrays.values())))
    flip = rng.random(n) < p
    out = {}
    for key, a in arrays.items():
        a = np.array(a, copy=True)
        if len(a) != n:
            raise ValueError(f"flip_lr: map {key!r} has {len(a)} subjects, expected {n}.")
        a[flip] = np.flip(a[flip], axis=axis + 1)
        out[key] = a
    return out if isinstance(batch, dict) else out[None]
