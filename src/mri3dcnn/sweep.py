"""When does a model win? Accuracy across effect size and cohort size, by simulation.

Each cell of the grid is a synthetic cohort (the default effects with every target d times
a scale, at one cohort size), generated once and kept, split like the study (stratified
folds, independent site), and each model cross-validated on it through the one runner into
the results store under the `sweep` chapter, so a sweep that was stopped resumes and one
that is stored is read back, never refitted. Models: the linear SVM on grey-matter voxels,
the linear SVM on the four whole-brain measures adjusted for age, sex and head size, and a
3D CNN family on the cells chosen for it.

Intervals are those of every cross-validated result in the book: the corrected
repeated-CV t-test on fold scores (`stats.summarise`), and the CNN is compared with the
better SVM of its cell by the same test, paired on folds (`stats.cv_test`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import Cohort
from .config import Profile
from .crossval import CHAPTER_SWEEP, ModelSpec, cross_validate
from .features import GLOBAL_FEATURES, covariates, global_measures, masked_voxels
from .maps import MAPS
from .results import ResultsStore, predictions_of
from .space import brain_mask
from .splits import make_split_plan
from .stats import cv_test, summarise
from .synthetic import DEFAULT_EFFECTS, Effects, generate_cohort, oracle_table, read_truth
from .volumes import file_hash, load_maps

#: the two SVMs of every cell, by family
SVM_FAMILIES = ("svm_linear", "svm_linear_global")
#: the reference rows beside the models: the oracle on the cell's folds, the Bayes ceiling
REFERENCES = ("oracle", "bayes_ceiling")
#: the columns of the sweep table
TABLE_COLUMNS = ["scale", "n_subjects", "model", "kind", "set", "n", "accuracy",
                 "accuracy_low", "accuracy_high", "balanced_accuracy", "auc", "p_chance",
                 "test"]
#: the columns of the CNN-against-SVM comparisons, one row per cell the CNN ran on
COMPARISON_COLUMNS = ["scale", "n_subjects", "cnn", "svm", "cnn_accuracy", "svm_accuracy",
                      "difference", "ci_low", "ci_high", "p_value", "n", "test", "result"]


@dataclass(frozen=True)
class CNNSettings:
    """The CNN a sweep cross-validates on its chosen cells (grey matter only)."""

    family: str = "sequential_2"
    epochs: int = 30
    batch_size: int = 8
    patience: int = 8
    seed: int = 0
    augment: bool = False


@dataclass(frozen=True)
class SweepResult:
    """`table`: one row per (scale, n, model, set), models and references;
    `comparisons`: the CNN against the better SVM of each cell it ran on."""

    table: pd.DataFrame
    comparisons: pd.DataFrame


def cell_seed(base: int, n_subjects: int) -> int:
    """The generator seed of a cell: the same for every scale at one size, so cells of one
    column differ in their effects, not in their subjects' anatomy and noise."""
    return int(base) + int(n_subjects)


def cell_cohort(scale: float, n_subjects: int, grid_mm: float, n_sites: int, seed: int,
                effects: Effects, data_dir: str | Path) -> Path:
    """A cell's cohort, generated on first use and kept under `data_dir` in a folder named
    by its settings, so a rerun (or another profile with the same cell) reuses it."""
    settings = {"scale": float(scale), "n": int(n_subjects), "grid_mm": float(grid_mm),
                "n_sites": int(n_sites), "seed": int(seed),
                "effects": effects.scaled(scale).as_dict()}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    root = Path(data_dir) / f"d{scale:g}-n{n_subjects}-{grid_mm:g}mm-{digest}"
    if not (root / "participants.tsv").exists() or read_truth(root) is None:
        generate_cohort(root, n_subjects, seed=seed, grid_mm=grid_mm,
                        effects=effects.scaled(scale), n_sites=n_sites, progress=False)
    return root


def cell_models(cohort: Cohort, arrays: dict[str, np.ndarray], grid_mm: float,
                svm_C: tuple[float, ...], inner_folds: int,
                cnn: CNNSettings | None) -> list[tuple[ModelSpec, object]]:
    """The (key, estimator) pairs of one cell: the voxel SVM, the adjusted whole-brain SVM
    and, when `cnn` is given, the CNN on grey matter."""
    from .svm import SklearnFit, adjusted_linear_svm, linear_svm

    mask = brain_mask(grid_mm)
    y, ids = cohort.labels, cohort.subjects
    voxels = masked_voxels(arrays, ["gm"], mask)
    cov, names = covariates(cohort.participants.loc[ids], arrays, mask)
    glob = np.column_stack([cov, global_measures(arrays, list(MAPS), mask)])
    out = [(ModelSpec(CHAPTER_SWEEP, "svm_linear", ("gm",), features="voxels"),
            SklearnFit(partial(linear_svm, svm_C, inner_folds), voxels, y, ids)),
           (ModelSpec(CHAPTER_SWEEP, "svm_linear_global", tuple(MAPS),
                      fusion="concatenated", features=GLOBAL_FEATURES),
            SklearnFit(partial(adjusted_linear_svm, cov.shape[1], inner_folds=inner_folds),
                       glob, y, ids, {"covariates": names}))]
    if cnn is not None:
        from .training import CNNFit, FitSpec

        spec = FitSpec(model=cnn.family, maps=("gm",), epochs=cnn.epochs,
                       batch_size=cnn.batch_size, patience=cnn.patience, seed=cnn.seed,
                       augment=cnn.augment)
        out.append((ModelSpec(CHAPTER_SWEEP, cnn.family, ("gm",), seed=cnn.seed),
                    CNNFit(spec, {"gm": arrays["gm"]}, y, ids, grid_mm)))
    return out


def _references(root: Path, plan: pd.DataFrame) -> list[dict]:
    """The oracle on the cell's folds and the Bayes ceiling, as lines to read models
    against (no interval: they are not compared by a test)."""
    oracle = oracle_table(root, plan).set_index("row")
    rows = [{"model": "oracle", "kind": "reference", "set": s,
             "n": oracle.loc[f"oracle ({s})", "n"],
             "accuracy": oracle.loc[f"oracle ({s})", "accuracy"],
             "balanced_accuracy": oracle.loc[f"oracle ({s})", "balanced_accuracy"],
             "test": "none: a reference line (logistic regression on the true features)"}
            for s in ("cv", "independent") if f"oracle ({s})" in oracle.index]
    ceiling = read_truth(root)["bayes_ceiling"]
    rows.append({"model": "bayes_ceiling", "kind": "reference", "set": "population",
                 "accuracy": ceiling["balanced_accuracy"],
                 "balanced_accuracy": ceiling["balanced_accuracy"],
                 "test": "none: population expectation (balanced accuracy, Monte Carlo)"})
    return rows


def compare_cell(preds: pd.DataFrame, summary: pd.DataFrame, cnn: str) -> dict:
    """The CNN against the better SVM of one cell (higher cross-validated accuracy), paired
    on the same folds by the corrected repeated-CV t-test."""
    cv = summary[summary.set == "cv"].set_index("model")
    svm = cv.loc[[f for f in SVM_FAMILIES if f in cv.index]].sort_values(
        ["accuracy", "auc"], ascending=False).index[0]
    d = cv_test(preds[preds.model == cnn], preds[preds.model == svm], metric="accuracy")
    return {"cnn": cnn, "svm": svm, "cnn_accuracy": cv.loc[cnn, "accuracy"],
            "svm_accuracy": cv.loc[svm, "accuracy"], "difference": d["difference"],
            "ci_low": d["ci_low"], "ci_high": d["ci_high"], "p_value": d["p_value"],
            "n": d["n"], "test": d["test"],
            "result": cell_result(d["ci_low"], d["ci_high"])}


def sweep(scales: Iterable[float] = (0.5, 1.0, 1.5), sizes: Iterable[int] = (100, 200, 400),
          grid_mm: float = 8.0, n_folds: int = 3, n_repeats: int = 1, n_sites: int = 3,
          seed: int = 0, effects: Effects = DEFAULT_EFFECTS,
          data_dir: str | Path = "data/sweep", cache_dir: str | Path = "cache",
          results_dir: str | Path = "results/sweep",
          svm_C: tuple[float, ...] = Profile.svm_C, inner_folds: int = 3,
          cnn: CNNSettings | None = None,
          cnn_cells: Iterable[tuple[float, int]] = ()) -> SweepResult:
    """The SVMs (and a CNN on chosen cells) over effect scale x cohort size, with each
    cell's oracle and Bayes ceiling.

    Parameters
    ----------
    scales : factors on every target d (1: the default cohort; 0: the null cohort).
    sizes : cohort sizes (all sites together).
    grid_mm, n_folds, n_repeats, n_sites, seed : grid, CV plan, sites and base seed of
        every cell (`cell_seed`).
    effects : the effects scaled.
    data_dir : where cell cohorts are generated once and kept (`cell_cohort`).
    cache_dir : the array cache (keyed by file content).
    results_dir : the results store the fits land in, under the `sweep` chapter; a unit
        already stored is read back, not refitted.
    svm_C, inner_folds : the voxel SVM's C grid and inner folds (the whole-brain SVM uses
        its own grid, `svm.GLOBAL_C`).
    cnn, cnn_cells : the CNN and the (scale, n) cells it runs on.

    Returns
    -------
    SweepResult
        `table` (TABLE_COLUMNS): per cell and model, the cross-validated set with the
        corrected repeated-CV t-test interval and the independent site with a subject
        bootstrap (the `test` column says which), then the reference rows `oracle` and
        `bayes_ceiling`; `comparisons` (COMPARISON_COLUMNS).
    """
    store = ResultsStore(Path(results_dir))
    cnn_cells = {(float(s), int(n)) for s, n in cnn_cells}
    rows, comparisons = [], []
    for scale in scales:
        for n in sizes:
            s_seed = cell_seed(seed, n)
            root = cell_cohort(scale, n, grid_mm, n_sites, s_seed, effects, data_dir)
            cohort = Cohort.from_bids(root, MAPS)
            arrays = load_maps(cohort, MAPS, grid_mm, Path(cache_dir), progress=False)
            plan = make_split_plan(cohort.participants, n_folds, n_repeats, seed=seed)
            cell = {"scale": float(scale), "n_subjects": int(n)}
            context = {"cell": {**cell, "seed": s_seed, "grid_mm": grid_mm,
                                "n_sites": n_sites, "effects": effects.as_dict()},
                       "cohort": file_hash(root / "participants.tsv")}
            with_cnn = cnn if (float(scale), int(n)) in cnn_cells else None
            records = [r for spec, est in cell_models(cohort, arrays, grid_mm, svm_C,
                                                      inner_folds, with_cnn)
                       for r in cross_validate(store, spec, est, plan, context)]
            preds = predictions_of(records)
            summary = summarise(preds)
            rows += [{**cell, **r, "kind": "cnn" if with_cnn and r["model"] == cnn.family
                      else "svm"} for r in summary.to_dict("records")]
            rows += [{**cell, **r} for r in _references(root, plan)]
            if with_cnn is not None:
                comparisons.append({**cell, **compare_cell(preds, summary, cnn.family)})
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    return SweepResult(table, pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS))


def _cells(rows: pd.DataFrame) -> str:
    """`d x 1, n = 400 and d x 2, n = 400`."""
    cells = [f"d x {r.scale:g}, n = {r.n_subjects}" for r in rows.itertuples()]
    return cells[0] if len(cells) == 1 else ", ".join(cells[:-1]) + " and " + cells[-1]


def cell_result(ci_low: float, ci_high: float) -> str:
    """A cell's comparison as the verdict reads it: the CNN `ahead` (the interval of CNN
    minus SVM above zero), `behind` (below zero) or `undecided`."""
    return "ahead" if ci_low > 0 else "behind" if ci_high < 0 else "undecided"


def verdict(comparisons: pd.DataFrame) -> tuple[str, str]:
    """Where, if anywhere, the CNN overtakes the SVMs, from the paired comparisons
    (`COMPARISON_COLUMNS`, one row per cell the CNN ran on).

    A cell counts for the CNN only when the 95 % interval of CNN minus the better SVM lies
    above zero (`cell_result`): an accuracy ahead by chance is not overtaking.

    Returns
    -------
    tuple of str
        The verdict (`overtakes`, `never`, `open` or `not tested`) and the sentence the
        appendix prints.
    """
    if comparisons.empty:
        return ("not tested", "The CNN ran on no cell of this sweep, so it says nothing "
                              "about where a 3D CNN overtakes the SVMs.")
    c = comparisons.sort_values(["scale", "n_subjects"])
    result = [cell_result(lo, hi) for lo, hi in zip(c.ci_low, c.ci_high, strict=True)]
    ahead, behind, undecided = (c[[r == k for r in result]]
                                for k in ("ahead", "behind", "undecided"))
    n, one = len(c), len(c) == 1
    if not ahead.empty:
        best = ahead.sort_values("difference", ascending=False).iloc[0]
        where = ("in the one cell it ran on" if one
                 else f"in {len(ahead)} of the {n} cells it ran on")
        return ("overtakes", (
            f"The CNN overtakes the SVMs {where} ({_cells(ahead)}): at best by "
            f"{100 * best.difference:.1f} points of cross-validated accuracy (95 % CI "
            f"{100 * best.ci_low:+.1f} to {100 * best.ci_high:+.1f}) over {best.svm} at "
            f"d x {best.scale:g}, n = {best.n_subjects}."))
    if undecided.empty:
        closest = behind.sort_values("difference").iloc[-1]
        head = ("The CNN does not overtake the SVMs in the one cell it ran on: the better "
                "SVM is ahead there" if one
                else f"The CNN overtakes the SVMs in none of the {n} cells it ran on: the "
                     "better SVM is ahead in every one")
        return ("never", (
            f"{head}, by at least "
            f"{100 * -closest.difference:.1f} points (95 % CI of CNN minus SVM "
            f"{100 * closest.ci_low:+.1f} to {100 * closest.ci_high:+.1f} at d x "
            f"{closest.scale:g}, n = {closest.n_subjects})."))
    if one:
        return ("open", (
            f"The sweep leaves it open: in the one cell the CNN ran on ({_cells(c)}) the "
            "interval of CNN minus the better SVM includes zero."))
    return ("open", (
        f"The sweep leaves it open: the CNN is ahead with an interval above zero in none of "
        f"the {n} cells it ran on, and in {len(undecided)} ({_cells(undecided)}) the "
        "interval of CNN minus the better SVM includes zero"
        + (f"; the better SVM is ahead in {len(behind)}." if len(behind) else ".")))


def sweep_description(p: Profile) -> str:
    """What the profile's sweep runs, as the appendix states it."""
    cnn = cnn_cells(p)
    return (f"Effect scales {', '.join(f'{s:g}' for s in p.sweep_scales)} (times every "
            f"planted d) x cohort sizes {', '.join(map(str, p.sweep_sizes))}: "
            f"{len(p.sweep_scales) * len(p.sweep_sizes)} cohorts on a {p.sweep_grid_mm:g} mm "
            f"grid, {p.n_sites} sites (the last held out), {p.n_folds}-fold CV x "
            f"{p.sweep_repeats} repeat(s). Every cell: the linear SVM on grey-matter voxels "
            f"and the linear SVM on the whole-brain means of {', '.join(MAPS)} adjusted for "
            f"age, sex and head size. The CNN ({p.sweep_cnn}, up to "
            f"{p.sweep_epochs or p.epochs} epochs, patience {p.patience}) on "
            f"{len(cnn)} cell(s)"
            + (": " + ", ".join(f"d x {s:g}, n = {n}" for s, n in cnn) + "." if cnn else "."))


def cnn_settings(p: Profile) -> CNNSettings:
    """The sweep's CNN with the profile's training budget."""
    return replace(CNNSettings(), family=p.sweep_cnn, epochs=p.sweep_epochs or p.epochs,
                   batch_size=p.batch_size, patience=p.patience, seed=p.seed,
                   augment=p.augment)


def cnn_cells(p: Profile) -> list[tuple[float, int]]:
    """The cells of the profile's sweep the CNN runs on."""
    return [(s, n) for s in p.sweep_scales for n in p.sweep_sizes
            if s in p.sweep_cnn_scales and n in p.sweep_cnn_sizes]
