"""How well anything could do on a synthetic cohort: the cross-validated oracle on the
study's own splits, the Bayes ceiling of the region features, and a strict bound.

Three numbers, three meanings:

- the **oracle** is a classifier (logistic regression) given the truth's features: each
  planted region's mean, each map's brain mean, site, age, sex and head size. It is trained and tested
  on the same split plan as every model (same folds, same independent site), so it is an
  achievable accuracy to compare with, not a bound: a model can beat it by chance or by
  reading information the region means do not carry.
- the **Bayes ceiling** is the accuracy of the ideal observer of the region means, from the
  generator's own likelihood: Gaussian residuals with the covariance measured on simulated
  controls, and patients shifted by the calibrated amplitudes times strengths drawn from
  the generator's pattern model. It is a population quantity (no training-set noise), so
  the oracle should sit below it; a model reading whole images sees more than region means
  and is not bounded by it.
- the **strict bound** holds for any classifier of anything the generator writes: patients
  without a change are drawn exactly like controls, so no rule can tell them apart. In
  expectation no classifier exceeds it; a finite test set can, by chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .effects import Effects, draw_strengths


def strict_bound(eff: Effects, patient_share: float = 0.5) -> dict[str, float]:
    """Expected accuracy and balanced accuracy no classifier can exceed, because unaffected
    patients (share `p_unaffected`) are distributed exactly like controls."""
    if not any(r.d for r in eff.regions):
        return {"accuracy": max(patient_share, 1 - patient_share), "balanced_accuracy": 0.5}
    p0 = eff.p_unaffected
    return {"accuracy": 1.0 - patient_share * p0, "balanced_accuracy": 1.0 - p0 / 2.0}


def bayes_ceiling(eff: Effects, calibration: dict, n_test: int = 4000, n_draws: int = 4000,
                  seed: int = 0) -> dict[str, float]:
    """Monte-Carlo Bayes accuracy (equal priors) of an observer of the region means.

    Residuals are Gaussian with the calibration's covariance; a patient's mean shift is
    C (a * s), s drawn from the pattern model. The likelihood ratio of each simulated
    subject is averaged over `n_draws` fresh strength draws; the Bayes rule says patient
    when it exceeds 1. Returns the balanced accuracy and its Monte-Carlo standard error.
    """
    a = np.asarray(calibration["amplitude"], float)
    if not np.any(a):
        return {"balanced_accuracy": 0.5, "mc_se": 0.0, "n_test": 0}
    rng = np.random.default_rng(seed)
    C = np.asarray(calibration["slope"], float)
    cov = np.asarray(calibration["residual_cov"], float)
    L = np.linalg.cholesky(cov + 1e-12 * np.eye(len(cov)) * np.trace(cov))

    def shifts(n: int) -> np.ndarray:
        s, _ = draw_strengths(eff, n, rng)
        return np.linalg.solve(L, C @ (a[:, None] * s.T)).T  # whitened

    w = shifts(n_draws)
    half = 0.5 * (w**2).sum(axis=1)
    z_control = rng.standard_normal((n_test, len(a)))
    z_patient = rng.standard_normal((n_test, len(a))) + shifts(n_test)

    def log_lr(z: np.ndarray) -> np.ndarray:
        e = z @ w.T - half[None, :]
        top = e.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(e - top).mean(axis=1, keepdims=True))).ravel()

    sens = (log_lr(z_patient) > 0).mean()
    spec = (log_lr(z_control) <= 0).mean()
    se = 0.5 * np.sqrt(sens * (1 - sens) / n_test + spec * (1 - spec) / n_test)
    return {"balanced_accuracy": float((sens + spec) / 2), "mc_se": float(se),
            "n_test": int(n_test)}


def _oracle_X(participants: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    from .generator import covariates

    f = feats.set_index("participant_id").loc[participants["participant_id"]]
    cols = [c for c in f.columns if c.startswith(("region:", "global:"))]
    return np.column_stack([f[cols].to_numpy(float),
                            covariates(participants, f["head_size"].to_numpy())[:, 1:]])


def oracle_on_plan(participants: pd.DataFrame, feats: pd.DataFrame,
                   plan: pd.DataFrame | None = None, n_folds: int = 3,
                   seed: int = 0) -> pd.DataFrame:
    """The oracle cross-validated on a split plan (made with `make_split_plan(participants,
    n_folds, seed=seed)` when none is given): one row per set (cv, independent)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..splits import iter_folds, make_split_plan

    if plan is None:
        plan = make_split_plan(participants, n_folds, seed=seed)
    p = participants.reset_index(drop=True)
    X = _oracle_X(p, feats)
    y = (p["group"] == "patient").to_numpy(int)
    pos = {s: i for i, s in enumerate(p["participant_id"])}
    scores: dict[str, dict[str, list[float]]] = {"cv": {}, "independent": {}}
    for r in sorted(plan["repeat"].unique()):
        for _, train, test, indep in iter_folds(plan, int(r)):
            idx = [pos[s] for s in train]
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            clf.fit(X[idx], y[idx])
            for part, ids in (("cv", test), ("independent", indep)):
                if ids:
                    prob = clf.predict_proba(X[[pos[s] for s in ids]])[:, 1]
                    for s, q in zip(ids, prob, strict=True):
                        scores[part].setdefault(s, []).append(float(q))
    rows = []
    for part, by_subject in scores.items():
        if not by_subject:
            continue
        ids = list(by_subject)
        truth = y[[pos[s] for s in ids]]
        pred = np.array([np.mean(by_subject[s]) > 0.5 for s in ids]).astype(int)
        acc = float((pred == truth).mean())
        sens = float(pred[truth == 1].mean()) if (truth == 1).any() else np.nan
        spec = float(1 - pred[truth == 0].mean()) if (truth == 0).any() else np.nan
        lo, hi = _wilson(acc, len(ids))
        rows.append({"set": part, "n": len(ids), "accuracy": acc,
                     "balanced_accuracy": (sens + spec) / 2, "CI low": lo, "CI high": hi})
    return pd.DataFrame(rows)


def default_oracle_accuracy(participants: pd.DataFrame, feats: pd.DataFrame,
                            seed: int) -> float:
    """CV accuracy of the oracle on the default plan (3 folds, fewer for a tiny cohort; the
    cohort's seed): what `truth.json` records before any study plan exists."""
    for n_folds in (3, 2):
        try:
            table = oracle_on_plan(participants, feats, n_folds=n_folds, seed=seed)
        except ValueError:
            continue
        return float(table.loc[table["set"] == "cv", "accuracy"].iloc[0])
    return float("nan")


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


def oracle_table(cohort_root: str | Path, plan: pd.DataFrame) -> pd.DataFrame:
    """The oracle on the study's split plan per set, then the Bayes ceiling and the strict
    bound, each labelled with what it is.

    Parameters
    ----------
    cohort_root : folder written by `generate_cohort`.
    plan : the study's split plan (`splits.make_split_plan`); the oracle uses its folds
        and its independent set, and predictions of repeats are averaged per subject.

    Returns
    -------
    Rows: oracle (cv), oracle (independent), Bayes ceiling, strict bound; columns n,
    accuracy, balanced accuracy, CI (Wilson, test subjects only for the oracle; Monte-Carlo
    for the ceiling) and what each number is; no rows for a real cohort.
    """
    from .truth import read_features, read_truth

    columns = ["row", "set", "n", "accuracy", "balanced_accuracy", "CI low", "CI high", "what"]
    truth = read_truth(cohort_root)
    if truth is None:
        return pd.DataFrame(columns=columns)
    participants = pd.read_csv(Path(cohort_root) / "participants.tsv", sep="\t",
                               dtype={"participant_id": str})
    oracle = oracle_on_plan(participants, read_features(cohort_root), plan)
    oracle.insert(0, "what", "oracle: logistic regression on the true region means, "
                  "site, age, sex and head size, trained on the plan's folds "
                  "(achievable, not a bound)")
    oracle.insert(0, "row", "oracle (" + oracle["set"] + ")")
    ceiling = truth["bayes_ceiling"]
    bound = truth["strict_bound"]
    extra = pd.DataFrame([
        {"row": "Bayes ceiling", "set": "population", "n": np.nan, "accuracy": np.nan,
         "balanced_accuracy": ceiling["balanced_accuracy"],
         "CI low": ceiling["balanced_accuracy"] - 1.96 * ceiling["mc_se"],
         "CI high": ceiling["balanced_accuracy"] + 1.96 * ceiling["mc_se"],
         "what": "ideal observer of the region means under the generator's likelihood "
                 "(expected; image-based models see more and are not bounded by it)"},
        {"row": "strict bound", "set": "population", "n": np.nan,
         "accuracy": bound["accuracy"], "balanced_accuracy": bound["balanced_accuracy"],
         "CI low": np.nan, "CI high": np.nan,
         "what": "unaffected patients look exactly like controls: no classifier exceeds "
                 "this in expectation"},
    ])
    return pd.concat([oracle, extra], ignore_index=True)[columns]
