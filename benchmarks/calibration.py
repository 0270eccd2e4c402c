"""Calibration of the book's decisions on null cohorts (no group difference anywhere).

    python benchmarks/calibration.py [--seeds 100] [--subjects 80] [--grid-mm 8]
                                     [--repeats 3] [--permutations 19]

For each seed a synthetic cohort is generated with every planted effect at zero, split as
the book splits (stratified folds, an independent site), and four pipelines are
cross-validated: a linear SVM with nested choice of C on grey-matter voxels, the same SVM
on atlas-regional means, the SVM on frozen 2D slice features (the 2D-ImageNet pipeline
with a fixed pixel read-out in place of the network) and the SVM on the four whole-brain
measures adjusted for age, sex and head size; on every other seed, the study's default
CNN family too. Every "better than chance" and "A
beats B" decision the book can make is taken at the 5 % level; on a null cohort each one
is a false positive. The table gives each decision's false-positive rate over seeds with
its 95 % Clopper-Pearson interval; a rate whose interval lies above 5 % is flagged. The
fixed-model bootstrap of pooled CV predictions (how intervals were made before) is kept as
a reference: it ignores training variance and counts a subject once per repeat.

The table is written to benchmarks/calibration.md (shown in the book's appendix).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mri3dcnn.cohort import Cohort  # noqa: E402
from mri3dcnn.config import Profile  # noqa: E402
from mri3dcnn.features import (  # noqa: E402
    covariates,
    global_measures,
    masked_voxels,
    regional_means,
)
from mri3dcnn.hardware import describe  # noqa: E402
from mri3dcnn.pretrained2d import slice_stack  # noqa: E402
from mri3dcnn.splits import make_split_plan  # noqa: E402
from mri3dcnn.stats import (  # noqa: E402
    CHANCE_METRIC,
    bootstrap_ci,
    cv_test,
    delong_test,
    metrics,
    plan_folds,
    sklearn_permutation_test,
    subject_level,
)
from mri3dcnn.svm import adjusted_linear_svm, fit_predict_sklearn, linear_svm  # noqa: E402
from mri3dcnn.synthetic import generate_cohort  # noqa: E402
from mri3dcnn.volumes import brain_mask, load_maps  # noqa: E402

ALPHA = 0.05
#: the interval the book used to draw: fitted models held fixed, one row per subject and repeat
REFERENCE = "fixed-model bootstrap of pooled CV rows (reference)"
C_GRID = Profile.svm_C


def null_cohort(out: str | Path, n: int, seed: int, grid_mm: float) -> Path:
    """A synthetic cohort with no group difference (every effect at zero), three sites."""
    return generate_cohort(out, n_subjects=n, seed=seed, grid_mm=grid_mm, null=True,
                           n_sites=3, progress=False)


def slice_features(volumes: np.ndarray, n_per_axis: int = 3, pool: int = 2) -> np.ndarray:
    """Frozen 2D read-out of each subject's central slices: every slice average-pooled in
    pool x pool blocks, concatenated. Nothing is fitted, as with a frozen backbone."""
    rows = []
    for v in np.asarray(volumes):
        parts = []
        for s in slice_stack(v, n_per_axis):
            h, w = (s.shape[0] // pool) * pool, (s.shape[1] // pool) * pool
            parts.append(s[:h, :w].reshape(h // pool, pool, w // pool, pool).mean(axis=(1, 3))
                         .ravel())
        rows.append(np.concatenate(parts))
    return np.asarray(rows, np.float32)


def cross_validate(name: str, X: np.ndarray, y: np.ndarray, ids: list[str],
                   plan: pd.DataFrame, make) -> pd.DataFrame:
    """Stored-format predictions of one pipeline (`make()` a fresh estimator) on every
    fold of every repeat."""
    from mri3dcnn.splits import iter_folds

    frames = []
    for r in sorted(plan["repeat"].unique()):
        for fold, train, test, indep in iter_folds(plan, int(r)):
            with warnings.catch_warnings():  # on null data C often sits at the grid's edge
                warnings.simplefilter("ignore", UserWarning)
                out = fit_predict_sklearn(make(), X, y, ids, train, test, indep)
            frames.append(out["predictions"].assign(repeat=int(r), fold=fold))
    return pd.concat(frames, ignore_index=True).assign(
        chapter="calibration", model=name, maps="gm", protocol="inner", seed=0)


def naive_chance_ci(p: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, float]:
    """The fixed-model bootstrap of pooled CV rows (one per subject and repeat)."""
    cv = p[p["set"] == "cv"]
    ci = bootstrap_ci(cv["y_true"], cv["score"], cv["pred"], n_boot=n_boot, seed=seed)
    return ci.loc[CHANCE_METRIC, "ci_low"], ci.loc[CHANCE_METRIC, "ci_high"]


def naive_paired_p(a: pd.DataFrame, b: pd.DataFrame, n_boot: int, seed: int) -> float:
    """The fixed-model paired bootstrap of pooled CV rows: two-sided p of a - b."""
    keys = ["participant_id", "repeat"]
    m = a[a["set"] == "cv"].merge(b[b["set"] == "cv"], on=keys, suffixes=("_a", "_b"))
    y = m["y_true_a"].to_numpy()
    pa, pb = m["pred_a"].to_numpy(), m["pred_b"].to_numpy()
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(m), len(m))
        diffs.append(metrics(y[i], pa[i], pa[i])[CHANCE_METRIC]
                     - metrics(y[i], pb[i], pb[i])[CHANCE_METRIC])
    diffs = np.asarray(diffs)
    return float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))


PIPELINES = ("SVM, voxels", "SVM, regional means", "SVM, 2D slice features",
             "SVM, whole-brain measures (adjusted)")
#: the small CNN, cross-validated on the first repeat's folds of every `cnn_every`-th seed
CNN = "CNN (Sequential_2), volumes"
CNN_EPOCHS = 10


def cnn_cross_validate(arrays: dict, y: np.ndarray, ids: list[str], plan: pd.DataFrame,
                       grid_mm: float, seed: int) -> pd.DataFrame:
    """Stored-format predictions of the study's default CNN family on grey matter, trained
    as the chapters train it (inner validation split, early stopping), one repeat."""
    from mri3dcnn.splits import iter_folds
    from mri3dcnn.training import FitSpec, fit_predict

    spec = FitSpec(model="sequential_2", maps=("gm",), epochs=CNN_EPOCHS, batch_size=8,
                   patience=3, seed=seed)
    frames = []
    for fold, train, test, indep in iter_folds(plan, 0):
        out = fit_predict(spec, arrays, y, ids, train, test, indep, grid_mm)
        frames.append(out["predictions"].assign(repeat=0, fold=fold))
    return pd.concat(frames, ignore_index=True).assign(
        chapter="calibration", model=CNN, maps="gm", protocol="inner", seed=0)


def seed_decisions(seed: int, n: int, grid_mm: float, folds: int, repeats: int,
                   permutations: int, work: Path, n_boot: int = 300,
                   pipelines: tuple[str, ...] = PIPELINES, cnn: bool = False) -> list[dict]:
    """Every decision on one null cohort: one row per (decision, test), `positive` True when
    the test calls an effect that is not there."""
    root = null_cohort(work / f"null-{seed}", n, seed, grid_mm)
    maps = ["gm", "wm", "fa", "md"]
    cohort = Cohort.from_bids(root, tuple(maps))
    arrays = load_maps(cohort, maps, grid_mm, work / "cache", progress=False)
    gm = {"gm": arrays["gm"]}
    y, ids = cohort.labels, cohort.subjects
    plan = make_split_plan(cohort.participants, folds, repeats, seed=seed)
    inner = max(2, folds - 1)
    mask = brain_mask(grid_mm)
    cov, _ = covariates(cohort.participants, arrays, mask)
    svm = partial(linear_svm, C_GRID, inner)
    make = {"SVM, voxels": (lambda: masked_voxels(gm, ["gm"], mask), svm),
            "SVM, regional means": (lambda: regional_means(gm, ["gm"], grid_mm)[0], svm),
            "SVM, 2D slice features": (lambda: slice_features(gm["gm"]), svm),
            "SVM, whole-brain measures (adjusted)": (
                lambda: np.column_stack([cov, global_measures(arrays, maps, mask)]),
                partial(adjusted_linear_svm, cov.shape[1], inner_folds=inner))}
    features = {k: make[k][0]() for k in pipelines}
    preds = {k: cross_validate(k, X, y, ids, plan, make[k][1]) for k, X in features.items()}
    if cnn:
        preds[CNN] = cnn_cross_validate(gm, y, ids, plan, grid_mm, seed)
    rows = []

    def add(decision, test, positive):
        rows.append({"seed": seed, "decision": decision, "test": test,
                     "positive": bool(positive)})

    for name, p in preds.items():
        t = cv_test(p)  # two-sided: its 95 % interval
        ref_lo, ref_hi = naive_chance_ci(p, n_boot, seed)
        add(f"{name} better than chance", "corrected repeated-CV t, one-sided p < 0.05",
            cv_test(p, alternative="greater")["p_value"] < ALPHA)
        if permutations and name in ("SVM, voxels", "SVM, 2D slice features",
                                     "SVM, whole-brain measures (adjusted)"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                perm = sklearn_permutation_test(
                    make[name][1], features[name], y,
                    plan_folds(plan[plan["repeat"] == 0], ids), permutations, seed=seed,
                    strata=cohort.participants["site"].to_numpy())
            add(f"{name} better than chance",
                f"label permutation of the pipeline ({permutations}), p <= 0.05",
                perm["p_value"] <= ALPHA)
        add(f"{name}: 95 % CI above chance", "corrected repeated-CV t", t["ci_low"] > 0.5)
        add(f"{name}: 95 % CI above chance", REFERENCE, ref_lo > 0.5)
        add(f"{name}: 95 % CI below chance", "corrected repeated-CV t", t["ci_high"] < 0.5)
        add(f"{name}: 95 % CI below chance", REFERENCE, ref_hi < 0.5)
        ind = subject_level(p, "independent")
        ci = bootstrap_ci(ind["y_true"], ind["score"], ind["pred"], n_boot=n_boot, seed=seed)
        lo, hi = ci.loc[CHANCE_METRIC, "ci_low"], ci.loc[CHANCE_METRIC, "ci_high"]
        add(f"{name}, independent site: 95 % CI excludes chance",
            "subject bootstrap, fold models fixed", lo > 0.5 or hi < 0.5)
    for a, b in (("SVM, voxels", "SVM, regional means"),
                 ("SVM, voxels", "SVM, 2D slice features"),
                 ("SVM, whole-brain measures (adjusted)", "SVM, voxels"),
                 (CNN, "SVM, voxels")):
        if a not in preds or b not in preds:
            continue
        decision = f"{a} vs {b.removeprefix('SVM, ')}"
        repeats_a = set(preds[a]["repeat"])  # the CNN runs one repeat: compare on it
        pa, pb = preds[a], preds[b][preds[b]["repeat"].isin(repeats_a)]
        d = cv_test(pa, pb)
        add(decision, "corrected repeated-CV t, paired, two-sided p < 0.05", d["p_value"] < ALPHA)
        add(decision, "fixed-model paired bootstrap of pooled CV rows (reference)",
            naive_paired_p(pa, pb, n_boot, seed) < ALPHA)
        ia, ib = subject_level(pa, "independent"), subject_level(pb, "independent")
        dl = delong_test(ia["y_true"], ia["score"], ib["score"])
        add(decision + " (independent site)", "DeLong AUC, fold models fixed",
            dl["p_value"] < ALPHA)
    return rows


def calibration_table(decisions: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """False-positive rate of each (decision, test) over seeds with its 95 % Clopper-Pearson
    interval, and whether the interval lies above the nominal level."""
    rows = []
    for (decision, test), g in decisions.groupby(["decision", "test"], sort=False):
        k, n = int(g["positive"].sum()), len(g)
        nominal = nominal_rate(decision, alpha)
        ci = sps.binomtest(k, n).proportion_ci(0.95, method="exact")
        rows.append({"decision": decision, "test": test, "false positives": k, "seeds": n,
                     "rate": k / n, "ci_low": ci.low, "ci_high": ci.high,
                     "nominal": nominal, "above nominal": bool(ci.low > nominal)})
    return pd.DataFrame(rows)


def nominal_rate(decision: str, alpha: float = ALPHA) -> float:
    """A one-sided reading of a two-sided 95 % interval errs at alpha / 2."""
    return alpha / 2 if "CI above" in decision or "CI below" in decision else alpha


def binomial_tolerance(n: int, alpha: float = ALPHA, risk: float = 0.001) -> int:
    """The most false positives among n seeds a test of level alpha shows, except with
    probability `risk`: more than this and the test is anti-conservative."""
    return int(sps.binom.ppf(1 - risk, n, alpha))


def run(seeds: list[int], n: int, grid_mm: float, folds: int, repeats: int,
        permutations: int, n_boot: int = 300, permutation_every: int = 1,
        log: Path | None = None, pipelines: tuple[str, ...] = PIPELINES,
        cnn_every: int = 0) -> pd.DataFrame:
    """Every decision on every seed's null cohort (generated in a temporary folder); the
    permutation test on every `permutation_every`-th seed (it refits the pipeline
    `permutations` times) and the small CNN on every `cnn_every`-th (0: never). With
    `log`, each seed's decisions are appended to that TSV."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="mri3dcnn-null-") as tmp:
        for i, seed in enumerate(seeds):
            t = time.perf_counter()
            perms = permutations if i % permutation_every == 0 else 0
            new = seed_decisions(seed, n, grid_mm, folds, repeats, perms, Path(tmp), n_boot,
                                 pipelines, cnn=bool(cnn_every) and i % cnn_every == 0)
            rows += new
            if log is not None:
                pd.DataFrame(new).assign(seconds=round(time.perf_counter() - t, 1)).to_csv(
                    log, sep="\t", index=False, mode="a", header=not log.exists())
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, settings: str) -> str:
    t = table.copy()
    t["rate (95 % CI)"] = [f"{r.rate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                           for r in t.itertuples()]
    t["above nominal"] = t["above nominal"].map({True: "**yes**", False: "no"})
    cols = ["decision", "test", "false positives", "seeds", "rate (95 % CI)", "nominal",
            "above nominal"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in t[cols].to_numpy()]
    return (f"# Calibration on null cohorts\n\n{settings}\n\n" + "\n".join(lines) + "\n\n"
            "A decision is a false positive when the test, at the 5 % level, finds an effect "
            "in a cohort that has none. `above nominal` marks a rate whose 95 % "
            "Clopper-Pearson interval lies entirely above the nominal rate (5 %, or 2.5 % "
            "for one side of a 95 % interval). Intervals below chance are reported apart: "
            "cross-validation on data without signal tends to score below chance (a "
            "held-out subject's own class is under-represented in its training set), which "
            "no one reads as learning. The rows marked "
            "*reference* are the fixed-model bootstrap of pooled cross-validation rows: it "
            "ignores the variance of training and counts a subject once per repeat.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--subjects", type=int, default=80)
    ap.add_argument("--grid-mm", type=float, default=8.0)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--permutations", type=int, default=19)
    ap.add_argument("--permutation-every", type=int, default=1,
                    help="run the permutation test on every k-th seed only")
    ap.add_argument("--cnn-every", type=int, default=2,
                    help="cross-validate the small CNN on every k-th seed (0: never)")
    ap.add_argument("--from-log", action="store_true",
                    help="make the table from the seeds already in --log, running nothing")
    ap.add_argument("--log", type=Path, default=None, help="append each seed's decisions here")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("calibration.md"))
    args = ap.parse_args()
    t = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.from_log:
        decisions = pd.read_csv(args.log, sep="\t")
        seeds = sorted(decisions["seed"].unique())
        args.seeds = len(seeds)
    else:
        decisions = run(seeds, args.subjects, args.grid_mm, args.folds, args.repeats,
                        args.permutations, permutation_every=args.permutation_every,
                        log=args.log, cnn_every=args.cnn_every)
    table = calibration_table(decisions)
    seconds = (decisions.groupby("seed")["seconds"].first().sum() if args.from_log
               else time.perf_counter() - t)
    settings = (f"{args.seeds} null cohorts (seeds {seeds[0]}-{seeds[-1]}), {args.subjects} "
                f"subjects in 3 sites, {args.grid_mm:g} mm grid, grey matter; "
                f"{args.folds}-fold CV x {args.repeats} repeats with the last site held out; "
                f"C from {list(C_GRID)} by inner CV; {args.permutations} label permutations "
                f"(within sites, statistic: mean balanced accuracy over the first repeat's "
                f"folds) on every {args.permutation_every}th seed; the CNN (Sequential_2, "
                f"{CNN_EPOCHS} epochs at most, early stopping on an inner validation split) "
                f"on the first repeat of every {args.cnn_every}th seed. "
                f"Run time {seconds:.0f} s on {describe()}, shared with other jobs (`python "
                f"benchmarks/calibration.py --seeds {args.seeds} --subjects {args.subjects} "
                f"--grid-mm {args.grid_mm:g} --repeats {args.repeats} --permutations "
                f"{args.permutations} --permutation-every {args.permutation_every} "
                f"--cnn-every {args.cnn_every}`).")
    text = markdown(table, settings)
    from mri3dcnn.atomic import write_text

    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
