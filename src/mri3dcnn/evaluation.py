"""Metrics with uncertainty, computed from stored predictions only.

Accuracy alone hides class imbalance and threshold choice, so every table reports accuracy,
balanced accuracy, sensitivity (patients found), specificity (controls kept) and AUC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
#: the columns of a summary that chapters show
SUMMARY_COLUMNS = ["model", "maps", "set", "n", "accuracy", "accuracy_low", "accuracy_high",
                   "balanced_accuracy", "sensitivity", "specificity", "auc", "auc_low",
                   "auc_high"]


def metrics(y_true, score, pred) -> dict[str, float]:
    """The five metrics; AUC is NaN when only one class is present."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(pred).astype(int)
    s = np.asarray(score, dtype=float)
    pos, neg = y == 1, y == 0
    sens = float((p[pos] == 1).mean()) if pos.any() else float("nan")
    spec = float((p[neg] == 0).mean()) if neg.any() else float("nan")
    auc = float("nan")
    if pos.any() and neg.any():  # Mann-Whitney U with mid-ranks for ties
        ranks = rankdata(s)
        auc = float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2)
                    / (pos.sum() * neg.sum()))
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


def delong_test(y_true, score_a, score_b) -> dict[str, float]:
    """DeLong's test for two correlated AUCs on the same subjects (fast version of Sun and
    Xu 2014): AUC difference, z and two-sided p."""
    from scipy import stats

    y = np.asarray(y_true).astype(int)
    scores = np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)])
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        return {"auc_difference": float("nan"), "z": float("nan"), "p_value": float("nan")}

    def midrank(x):
        return stats.rankdata(x, axis=-1)

    tx, ty, tz = midrank(pos), midrank(neg), midrank(np.hstack([pos, neg]))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    if var <= 0:
        return {"auc_difference": float(diff), "z": float("nan"),
                "p_value": 1.0 if diff == 0 else 0.0}
    z = diff / np.sqrt(var)
    return {"auc_difference": float(diff), "z": float(z),
            "p_value": float(2 * stats.norm.sf(abs(z)))}


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control)."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        adjusted[i] = min(running, 1.0)
    return adjusted


def compare_auc(predictions: pd.DataFrame, pairs: list[tuple[str, str]],
                set_name: str = "independent") -> pd.DataFrame:
    """DeLong tests of AUC for pairs of model labels on the same subjects, Holm-corrected.

    Labels are `model [maps] (protocol)` as in `label()`.
    """
    lab = predictions.assign(label=label(predictions))
    rows = []
    for a, b in pairs:
        pa = pooled(lab[lab["label"] == a], set_name)
        pb = pooled(lab[lab["label"] == b], set_name)
        m = pa.merge(pb, on=["participant_id", "repeat"], suffixes=("_a", "_b"))
        test = delong_test(m["y_true_a"], m["score_a"], m["score_b"])
        rows.append({"model_a": a, "model_b": b, "set": set_name, "n": len(m), **test})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out["p_value"].fillna(1.0))
    return out


def label(df: pd.DataFrame) -> pd.Series:
    """A readable model label: `model [maps]`, with the protocol when it is not ours."""
    lab = df["model"] + " [" + df["maps"] + "]"
    return lab.where(df["protocol"] == "inner", lab + " (published protocol)")


def _families(summary: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Which stored models belong to which kind, for the study's claims."""
    cv = summary[(summary["set"] == "cv") & (summary["protocol"] == "inner")]
    plain = ~cv["model"].str.contains("shuffled-labels|published-wiring")
    cnn = cv[(cv["chapter"] == "3d_cnn") & plain]
    return {
        "3D CNN": cnn,
        "3D CNN, one map": cnn[~cnn["maps"].str.contains(r"\+")],
        "3D CNN, several maps": cnn[cnn["maps"].str.contains(r"\+")],
        "SVM": cv[(cv["chapter"] == "02_svm") & cv["model"].str.startswith("svm")],
        "2D pretrained": cv[cv["chapter"] == "03_pretrained_2d"],
    }


def _best(rows: pd.DataFrame) -> str | None:
    if rows.empty:
        return None
    r = rows.sort_values("auc", ascending=False).iloc[0]
    return f"{r['model']} [{r['maps']}]"


def _auc_drop_difference(predictions: pd.DataFrame, a: str, b: str, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, float]:
    """(CV AUC - independent AUC) of a minus that of b, with a bootstrap CI that resamples
    the CV and independent subjects separately."""
    lab = predictions.assign(label=label(predictions))
    sets = {(m, s): pooled(lab[lab["label"] == m], s) for m in (a, b)
            for s in ("cv", "independent")}
    rng = np.random.default_rng(seed)

    def drop(m, idx_cv, idx_ind):
        c, i = sets[(m, "cv")], sets[(m, "independent")]
        auc_c = metrics(c["y_true"].iloc[idx_cv], c["score"].iloc[idx_cv],
                        c["pred"].iloc[idx_cv])["auc"]
        auc_i = metrics(i["y_true"].iloc[idx_ind], i["score"].iloc[idx_ind],
                        i["pred"].iloc[idx_ind])["auc"]
        return auc_c - auc_i

    n_cv, n_ind = len(sets[(a, "cv")]), len(sets[(a, "independent")])
    if n_ind == 0 or n_cv != len(sets[(b, "cv")]):
        return {"estimate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    full = drop(a, np.arange(n_cv), np.arange(n_ind)) - drop(b, np.arange(n_cv),
                                                              np.arange(n_ind))
    boots = []
    for _ in range(n_boot):
        ic, ii = rng.integers(0, n_cv, n_cv), rng.integers(0, n_ind, n_ind)
        boots.append(drop(a, ic, ii) - drop(b, ic, ii))
    boots = np.asarray(boots)
    boots = boots[np.isfinite(boots)]
    return {"estimate": float(full), "ci_low": float(np.quantile(boots, 0.025)),
            "ci_high": float(np.quantile(boots, 0.975))}


def headline_claims(summary: pd.DataFrame, predictions: pd.DataFrame,
                    alpha: float = 0.05) -> pd.DataFrame:
    """The study's claims, each tested on this cohort's stored predictions.

    Models are chosen by cross-validated AUC and compared on the independent site (DeLong,
    Holm-corrected), so the selection never sees the data of the test.
    """
    fam = _families(summary)
    claims = [("3D CNNs beat 2D ImageNet features", "3D CNN", "2D pretrained"),
              ("3D CNNs beat the SVM", "3D CNN", "SVM"),
              ("Several maps beat one map", "3D CNN, several maps", "3D CNN, one map")]
    rows = []
    for text, ka, kb in claims:
        a, b = _best(fam[ka]), _best(fam[kb])
        row = {"claim": text, "model_a": a, "model_b": b, "test": "DeLong AUC, independent"}
        if a is None or b is None:
            row["verdict"] = f"not tested: no {ka if a is None else kb} results"
        else:
            t = compare_auc(predictions, [(a, b)], "independent").iloc[0]
            row.update(estimate=t["auc_difference"], p_value=t["p_value"])
        rows.append(row)
    tested = [r for r in rows if "p_value" in r]
    for r, p in zip(tested, holm([r["p_value"] for r in tested]), strict=True):
        r["p_holm"] = float(p)
        if r["p_holm"] < alpha:
            r["verdict"] = "supported" if r["estimate"] > 0 else "contradicted"
        else:
            r["verdict"] = "not supported"
    a, b = _best(fam["3D CNN"]), _best(fam["SVM"])
    row = {"claim": "3D CNNs generalise better to the independent site",
           "model_a": a, "model_b": b,
           "test": "bootstrap CI of (CV - independent AUC), a minus b"}
    if a is None or b is None:
        row["verdict"] = "not tested: missing 3D CNN or SVM results"
    else:
        d = _auc_drop_difference(predictions, a, b)
        row.update(estimate=d["estimate"], ci_low=d["ci_low"], ci_high=d["ci_high"])
        if not np.isfinite(d["estimate"]):
            row["verdict"] = "not tested: no independent set"
        elif d["ci_high"] < 0:
            row["verdict"] = "supported"
        elif d["ci_low"] > 0:
            row["verdict"] = "contradicted"
        else:
            row["verdict"] = "not supported"
    rows.append(row)
    return pd.DataFrame(rows)
