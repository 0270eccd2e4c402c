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
        g = pooled(g, k[-1])
        ci = bootstrap_ci(g["y_true"], g["score"], g["pred"], n_boot=n_boot, seed=seed)
        row = dict(zip(model_keys + ["set"], k, strict=True))
        row["n"] = int(g["participant_id"].nunique())
        for m in METRICS:
            row[m] = ci.loc[m, "estimate"]
            row[f"{m}_low"] = ci.loc[m, "ci_low"]
            row[f"{m}_high"] = ci.loc[m, "ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)


def pooled(predictions: pd.DataFrame, set_name: str = "cv") -> pd.DataFrame:
    """One row per subject and repeat: CV predictions as they are (each subject is tested
    once per repeat); independent-set scores averaged over fold models, votes by majority."""
    g = predictions[predictions["set"] == set_name]
    out = g.groupby(["participant_id", "repeat"], as_index=False).agg(
        y_true=("y_true", "first"), score=("score", "mean"), pred=("pred", "mean"))
    out["pred"] = (out["pred"] >= 0.5).astype(int)
    return out


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str = "accuracy",
                      set_name: str = "cv", n_boot: int = 2000, seed: int = 0) -> dict:
    """metric(a) - metric(b) on the same subjects, with a paired bootstrap 95 % CI and a
    two-sided bootstrap p-value."""
    pa, pb = pooled(a, set_name), pooled(b, set_name)
    m = pa.merge(pb, on=["participant_id", "repeat"], suffixes=("_a", "_b"))
    if len(m) != len(pa) or len(m) != len(pb):
        raise ValueError("Paired comparison needs predictions on the same subjects.")
    ya = m["y_true_a"].to_numpy()

    def diff(idx):
        ma = metrics(ya[idx], m["score_a"].to_numpy()[idx], m["pred_a"].to_numpy()[idx])
        mb = metrics(ya[idx], m["score_b"].to_numpy()[idx], m["pred_b"].to_numpy()[idx])
        return ma[metric] - mb[metric]

    rng = np.random.default_rng(seed)
    full = np.arange(len(m))
    boots = np.array([diff(rng.integers(0, len(m), len(m))) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    p = 2 * min((boots <= 0).mean(), (boots >= 0).mean())
    return {"difference": float(diff(full)), "ci_low": float(np.quantile(boots, 0.025)),
            "ci_high": float(np.quantile(boots, 0.975)), "p_value": float(min(p, 1.0)),
            "n": int(len(m))}
