"""One cross-validation runner for every model: the split plan in, one record per unit out.

A *unit* is one fit of one model on one fold of one repeat. Its key names the model with
explicit fields (chapter, family, maps, fusion, protocol, variant, features, seed) plus
the fold, the repeat and a `config` (cohort, grid, profile, the estimator's description
and the training subjects) whose hash names the record. Nothing is encoded in a name and
parsed back: `display_name` builds the label tables show, in one direction only.

Any *estimator-like* object runs through `cross_validate`: it needs `describe()` (what of
it decides the result, JSON-able) and `fit_predict(unit)` returning what
`ResultsStore.put` takes. A scikit-learn pipeline (`svm.SklearnFit`), a CNN fit
(`training.CNNFit`) and late fusion of stored records (`LateFusion`) all do. `unit_keys`
lists the units of a model on a plan without running anything, for planning and for
distributing the grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from .splits import iter_folds

#: the result chapters; the CNN chapters 4-7 share one, so a model trained for one chapter
#: is reused by the next
CHAPTER_SVM = "02_svm"
CHAPTER_2D = "03_pretrained_2d"
CHAPTER_CNN = "3d_cnn"
#: fits on the simulated cohorts of the effect-size x cohort-size sweep
CHAPTER_SWEEP = "sweep"
CHAPTERS = (CHAPTER_SVM, CHAPTER_2D, CHAPTER_CNN, CHAPTER_SWEEP)

#: how several maps meet: not at all (one map), concatenated features, a CNN branch per
#: map, maps as CNN channels, or single-map models' probabilities averaged
FUSIONS = ("none", "concatenated", "branch", "channel", "late")
#: fusions that are a model's own way of reading several maps, left out of its label
PLAIN_FUSIONS = ("none", "concatenated", "branch")
#: model variants beside the plain model: a null model and the published code's wiring
VARIANTS = ("none", "shuffled-labels", "published-wiring")
#: epoch selection on training subjects only, on the test fold as published, or on training
#: subjects with every epoch run and the held-out fold predicted after each (`training`)
PROTOCOLS = ("inner", "published", "traced")
#: the explicit fields of a record key, in the order tables show them
KEY_FIELDS = ("chapter", "family", "maps", "fusion", "protocol", "variant", "features",
              "fold", "repeat", "seed")
#: key fields a record holds only when they differ from their default (the training
#: recipe and the pretraining task), so records made before they existed keep their keys
OPTIONAL_KEY_FIELDS = {"recipe": "original", "pretrain": "none"}


class Estimator(Protocol):
    """What the runner needs from a model."""

    def describe(self) -> dict:
        """The settings that decide its results (hashed into every unit key)."""

    def fit_predict(self, unit: Unit) -> dict:
        """Fit on `unit.train`, predict `unit.test` and `unit.independent`; return a dict
        with `predictions` and optionally `history`, `info`, `artifacts`."""


class Store(Protocol):
    """What the runner needs from a results store."""

    def get_or_compute(self, key: dict, compute) -> Any: ...


@dataclass(frozen=True)
class ModelSpec:
    """Which model a record holds: every field a table may group or filter by."""

    chapter: str
    family: str
    maps: tuple[str, ...]
    fusion: str = "none"
    protocol: str = "inner"
    variant: str = "none"
    features: str = "volumes"
    seed: int = 0
    recipe: str = OPTIONAL_KEY_FIELDS["recipe"]
    pretrain: str = OPTIONAL_KEY_FIELDS["pretrain"]

    def __post_init__(self) -> None:
        for name, value, valid in (("fusion", self.fusion, FUSIONS),
                                   ("protocol", self.protocol, PROTOCOLS),
                                   ("variant", self.variant, VARIANTS)):
            if value not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {value!r}.")
        if not self.maps:
            raise ValueError(f"{self.family}: a model needs at least one map.")

    def fields(self) -> dict:
        return {"chapter": self.chapter, "family": self.family, "maps": list(self.maps),
                "fusion": self.fusion, "protocol": self.protocol, "variant": self.variant,
                "features": self.features, "seed": self.seed,
                **{f: getattr(self, f) for f, default in OPTIONAL_KEY_FIELDS.items()
                   if getattr(self, f) != default}}


@dataclass(frozen=True)
class Model:
    """A model to cross-validate: its key fields and the estimator that fits it."""

    spec: ModelSpec
    estimator: Estimator


@dataclass(frozen=True)
class Unit:
    """One fold of one repeat for one model: its key and its subjects."""

    key: dict
    train: list[str]
    test: list[str]
    independent: list[str] = field(default_factory=list)

    @property
    def fold(self) -> int:
        return int(self.key["fold"])

    @property
    def repeat(self) -> int:
        return int(self.key["repeat"])


def display_name(key: dict) -> str:
    """The label tables show: the family, plus the fusion when it is not the model's own,
    the variant when there is one, the recipe when it is not the original and the
    pretraining task when there is one. Built from the fields, never parsed back."""
    name = key["family"]
    if key.get("fusion", "none") not in PLAIN_FUSIONS:
        name += f"-{key['fusion']}"
    if key.get("variant", "none") != "none":
        name += f"-{key['variant']}"
    if key_field(key, "recipe") != OPTIONAL_KEY_FIELDS["recipe"]:
        name += f"-{key['recipe']}"
    if key_field(key, "pretrain") != OPTIONAL_KEY_FIELDS["pretrain"]:
        name += f"-pretrained-{key['pretrain']}"
    return name


def key_field(key: dict, name: str):
    """A key's field, with the default of an optional field the key leaves out."""
    return key.get(name, OPTIONAL_KEY_FIELDS.get(name))


def maps_label(key: dict) -> str:
    """A key's maps as tables and folder names show them: `gm+fa`."""
    return "+".join(key["maps"])


def iter_units(spec: ModelSpec, estimator: Estimator, plan: pd.DataFrame, context: dict,
               repeats: list[int] | None = None,
               folds: list[int] | None = None) -> Iterator[Unit]:
    """The units of `spec` on `plan`, in plan order, with their full keys."""
    repeats = sorted(int(r) for r in plan["repeat"].unique()) if repeats is None else repeats
    described = estimator.describe()
    for r in repeats:
        for fold, train, test, indep in iter_folds(plan, int(r)):
            if folds is not None and fold not in folds:
                continue
            key = {**spec.fields(), "fold": int(fold), "repeat": int(r),
                   "config": {**context, "estimator": described, "train": sorted(train)}}
            yield Unit(key=key, train=list(train), test=list(test), independent=list(indep))


def unit_keys(spec: ModelSpec, estimator: Estimator, plan: pd.DataFrame, context: dict,
              repeats: list[int] | None = None, folds: list[int] | None = None) -> list[dict]:
    """The keys of every unit `cross_validate` would run, without running any.

    Parameters
    ----------
    spec, estimator, plan, context, repeats, folds
        As for `cross_validate`.

    Returns
    -------
    list of dict
        One result key per unit, as the results store hashes it.
    """
    return [u.key for u in iter_units(spec, estimator, plan, context, repeats, folds)]


def cross_validate(store: Store, spec: ModelSpec, estimator: Estimator, plan: pd.DataFrame,
                   context: dict, repeats: list[int] | None = None,
                   folds: list[int] | None = None) -> list:
    """Run (or read back) every unit of one model over the split plan.

    Parameters
    ----------
    store : ResultsStore
        Where records are read from and written to; a stored unit is never refitted.
    spec : ModelSpec
        The model's key fields (chapter, family, maps, fusion, protocol, variant, ...).
    estimator : Estimator
        Any object with `describe()` and `fit_predict(unit)`.
    plan : pandas.DataFrame
        The split plan (`splits.make_split_plan`).
    context : dict
        Cohort fingerprint, grid and profile: part of every key, so records made on
        another cohort or grid are never reused.
    repeats, folds : list of int, optional
        Restrict to these repeats or folds (default: all).

    Returns
    -------
    list of Record
        One record per unit, in plan order.
    """
    return [store.get_or_compute(u.key, lambda u=u: estimator.fit_predict(u))
            for u in iter_units(spec, estimator, plan, context, repeats, folds)]


@dataclass
class LateFusion:
    """Late fusion as an estimator: per unit, the average of the stored single-map
    models' probabilities on the same fold. It fits nothing; its description is the list
    of the records it averages, so it is recomputed whenever one of them changes."""

    parts: dict[str, list]

    def describe(self) -> dict:
        return {"late_fusion_of": sorted(r.info["hash"] for recs in self.parts.values()
                                         for r in recs)}

    def fit_predict(self, unit: Unit) -> dict:
        recs = [r for recs in self.parts.values() for r in recs
                if (r.key["repeat"], r.key["fold"]) == (unit.repeat, unit.fold)]
        if len(recs) != len(self.parts):
            raise ValueError(f"Late fusion: fold {unit.fold} of repeat {unit.repeat} lacks "
                             f"a model of one of the maps {sorted(self.parts)}; run every "
                             "single-map model on the same plan first.")
        p = pd.concat([r.predictions for r in recs])
        avg = p.groupby(["participant_id", "set"], as_index=False).agg(
            y_true=("y_true", "first"), score=("score", "mean"))
        avg["pred"] = (avg["score"] > 0.5).astype(int)
        return {"predictions": avg[["participant_id", "set", "y_true", "score", "pred"]]}
