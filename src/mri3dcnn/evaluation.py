"""Metrics with uncertainty, computed from stored predictions only.

Accuracy alone hides class imbalance and threshold choice, so every table reports accuracy,
balanced accuracy, sensitivity (patients found), specificity (controls kept) and AUC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")


def metrics(y_true, score, pred) -> dict[str, float]:
    """The five metrics; AUC is NaN when only one class is present."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(pred).astype(int)
    s = np.asarray(score, dtype=float)
    pos, neg = y == 1, y == 0
    sens = float((p[pos] == 1).mean()) if pos.any() else float("nan")
    spec = float((p[neg] == 0).mean()) if neg.any() else float("nan")
    auc = float(roc_auc_score(y, s)) if pos.any() and neg.any() else float("nan")
    return {
        "accuracy": float((p == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(np.nanmean([sens, spec])),
        "sensitivity": sens,
        "specificity": spec,
        "auc": auc,
    }


def bootstrap_ci(y_true, score, pred, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> pd.DataFrame:
    """Point estimate and percentile bootstrap CI over subjects for every metric."""
    y, s, p = (np.asarray(a) for a in (y_true, score, pred))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        boots.append(metrics(y[idx], s[idx], p[idx]))
    b = pd.DataFrame(boots)
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    point = metrics(y, s, p)
    return pd.DataFrame({
        "estimate": pd.Series(point),
        "ci_low": b.quantile(lo),
        "ci_high": b.quantile(hi),
    }).loc[list(METRICS)]


def per_fold_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per stored record and evaluation set, with the five metrics."""
    keys = ["chapter", "model", "maps", "protocol", "repeat", "fold", "seed", "set"]
    keys = [k for k in keys if k in predictions.columns]
    rows = []
    for k, g in predictions.groupby(keys, dropna=False):
        rows.append({**dict(zip(keys, k, strict=True)),
                     **metrics(g["y_true"], g["score"], g["pred"]), "n": len(g)})
    return pd.DataFrame(rows)


def summarise(predictions: pd.DataFrame, n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """Per model and evaluation set: metrics on pooled predictions with bootstrap CIs.

    Cross-validation predictions are pooled over folds (each subject once per repeat); the
    independent set is scored per fold model and then averaged over fold models' scores.
    """
    model_keys = ["chapter", "model", "maps", "protocol"]
    rows = []
    for k, g in predictions.groupby(model_keys + ["set"], dropna=False):
        if k[-1] == "independent":
            g = (g.groupby(["participant_id", "repeat"], as_index=False)
                 .agg(y_true=("y_true", "first"), score=("score", "mean"),
                      pred=("pred", "mean")))
            g["pred"] = (g["pred"] >= 0.5).astype(int)  # majority vote of fold models
        ci = bootstrap_ci(g["y_true"], g["score"], g["pred"], n_boot=n_boot, seed=seed)
        row = dict(zip(model_keys + ["set"], k, strict=True))
        row["n"] = int(g["participant_id"].nunique())
        for m in METRICS:
            row[m] = ci.loc[m, "estimate"]
            row[f"{m}_low"] = ci.loc[m, "ci_low"]
            row[f"{m}_high"] = ci.loc[m, "ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)
