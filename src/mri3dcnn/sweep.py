"""When does a model win? Accuracy across effect size and cohort size, by simulation.

Each cell of the grid is a fresh synthetic cohort (the default effects with every target d
times a scale, at one cohort size), split like the study (stratified folds, independent
site), and a model cross-validated on it. The table is tidy: one row per (scale, n, set),
with the cell's oracle and Bayes ceiling beside the model, so any figure is a pivot away.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import Cohort
from .config import Profile
from .crossval import CHAPTER_SWEEP, ModelSpec, cross_validate
from .features import masked_voxels
from .results import ResultsStore, predictions_of
from .space import brain_mask
from .splits import make_split_plan
from .synthetic import DEFAULT_EFFECTS, Effects, generate_cohort, oracle_table, read_truth
from .volumes import file_hash, load_maps


def linear_svm_cv(X: np.ndarray, y: np.ndarray, ids: list[str], plan: pd.DataFrame,
                  store: ResultsStore, context: dict, maps: tuple[str, ...] = ("gm",),
                  C_grid: tuple[float, ...] = Profile.svm_C,
                  inner_folds: int = 3) -> pd.DataFrame:
    """The linear SVM (nested CV for C) through the one cross-validation runner, stored like
    every other model; one row per subject and set (the fold models' predictions on the
    independent set by majority). The one place the sweep calls a model: point it at
    another to sweep that."""
    from .svm import SklearnFit, linear_svm

    spec = ModelSpec(CHAPTER_SWEEP, "svm_linear", tuple(maps),
                     fusion="concatenated" if len(maps) > 1 else "none", features="voxels")
    make = partial(linear_svm, C_grid=C_grid, inner_folds=inner_folds)
    records = cross_validate(store, spec, SklearnFit(make, X, y, ids), plan, context)
    p = predictions_of(records)
    return (p.groupby(["set", "participant_id"], as_index=False)
            .agg(y_true=("y_true", "first"), pred=("pred", "mean"))
            .assign(pred=lambda d: (d["pred"] > 0.5).astype(int)))


def _accuracy(pred: pd.DataFrame) -> dict:
    sens = (pred.loc[pred.y_true == 1, "pred"] == 1).mean()
    spec = (pred.loc[pred.y_true == 0, "pred"] == 0).mean()
    acc = float((pred.y_true == pred.pred).mean())
    se = np.sqrt(acc * (1 - acc) / len(pred))
    return {"n_test": len(pred), "accuracy": acc, "balanced_accuracy": float((sens + spec) / 2),
            "CI low": acc - 1.96 * se, "CI high": acc + 1.96 * se}


def sweep(scales: tuple[float, ...] = (0.5, 1.0, 1.5), sizes: tuple[int, ...] = (100, 200, 400),
          maps: tuple[str, ...] = ("gm",), grid_mm: float = 8.0, n_folds: int = 3,
          n_sites: int = 3, seed: int = 0, effects: Effects = DEFAULT_EFFECTS,
          workdir: str | Path | None = None,
          results_dir: str | Path | None = None) -> pd.DataFrame:
    """Linear-SVM accuracy over effect scale x cohort size, with each cell's oracle and
    Bayes ceiling.

    Parameters
    ----------
    scales : factors on every target d (1: the default cohort; 0: the null cohort).
    sizes : cohort sizes (all sites together).
    maps : maps the SVM reads (masked voxels, concatenated).
    grid_mm, n_folds, n_sites, seed : grid, CV folds, sites and base seed of every cell.
    effects : the effects scaled.
    workdir : where cohorts are written (a temporary folder if None).
    results_dir : the results store the SVM fits land in (under the `sweep` chapter);
        a cell already stored is read back, not refitted. Default: inside `workdir`.

    Returns
    -------
    One row per (scale, n_subjects, model, set): n_test, accuracy, balanced accuracy and a
    binomial 95 % CI (test subjects only; it ignores training variance), the model being
    `svm_linear`, `oracle` or `bayes_ceiling` (population, balanced accuracy only).
    """
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = ResultsStore(Path(results_dir) if results_dir else Path(tmp) / "results")
        for i, scale in enumerate(scales):
            for j, n in enumerate(sizes):
                root = generate_cohort(Path(tmp) / f"s{i}-n{j}", n, seed=seed + 1000 * i + j,
                                       grid_mm=grid_mm, effects=effects.scaled(scale),
                                       n_sites=n_sites, progress=False)
                cohort = Cohort.from_bids(root, maps)
                arrays = load_maps(cohort, maps, grid_mm, Path(tmp) / "cache", progress=False)
                plan = make_split_plan(cohort.participants, n_folds, seed=seed)
                X = masked_voxels(arrays, maps, brain_mask(grid_mm))
                cell = {"scale": scale, "n_subjects": n, "maps": "+".join(maps)}
                context = {"cell": {**cell, "seed": seed + 1000 * i + j, "grid_mm": grid_mm,
                                    "n_sites": n_sites, "effects": effects.as_dict()},
                           "cohort": file_hash(root / "participants.tsv")}
                pred = linear_svm_cv(X, cohort.labels, cohort.subjects, plan, store, context,
                                     maps)
                rows += [{**cell, "model": "svm_linear", "set": s, **_accuracy(g)}
                         for s, g in pred.groupby("set")]
                oracle = oracle_table(root, plan).set_index("row")
                rows += [{**cell, "model": "oracle", "set": s,
                          "n_test": oracle.loc[f"oracle ({s})", "n"],
                          **oracle.loc[f"oracle ({s})", ["accuracy", "balanced_accuracy",
                                                         "CI low", "CI high"]].to_dict()}
                         for s in ("cv", "independent") if f"oracle ({s})" in oracle.index]
                ceiling = read_truth(root)["bayes_ceiling"]
                rows.append({**cell, "model": "bayes_ceiling", "set": "population",
                             "balanced_accuracy": ceiling["balanced_accuracy"]})
    return pd.DataFrame(rows)
