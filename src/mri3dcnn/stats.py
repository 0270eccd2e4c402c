"""Metrics and the uncertainty around them, computed from stored predictions.

Accuracy alone hides class imbalance and threshold choice, so every table reports accuracy,
balanced accuracy, sensitivity (patients found), specificity (controls kept) and AUC.

Two rules keep the intervals honest:

- **Subjects count once.** Repeated cross-validation predicts each subject once per repeat
  and the independent site once per fold model; those predictions are averaged per subject
  (`subject_level`) before any statistic over subjects, so `n` is a number of subjects.
- **The test matches what varies.** A cross-validated estimate varies with the training
  sets as much as with the test subjects, and its folds share training subjects; its
  interval comes from the corrected repeated-CV t-test (Nadeau and Bengio 2003; Bouckaert
  and Frank 2004) on fold scores, and "better than chance" for a whole pipeline from a
  label-permutation test (Ojala and Garriga 2010). On the independent site the fitted
  models are fixed, and subjects are the only source of variance: subject bootstrap and
  DeLong's test. Every table names the test that produced its intervals and p-values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
#: the columns of a summary that chapters show
SUMMARY_COLUMNS = ["model", "maps", "set", "n", "accuracy", "accuracy_low", "accuracy_high",
                   "balanced_accuracy", "sensitivity", "specificity", "auc", "auc_low",
                   "auc_high", "p_chance", "p_permutation", "test"]
#: what a chapter's model is, in stored predictions
MODEL_KEYS = ["chapter", "model", "maps", "protocol", "variant"]
#: families a chapter cross-validates without a permutation test: the chance line learns
#: nothing from the labels, so permuting them cannot tell it anything
NOT_PERMUTED = ("chance",)
#: the score of "better than chance" and of model-vs-model tests on folds
CHANCE_METRIC = "balanced_accuracy"


def auc_score(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney U with mid-ranks for ties; NaN with one class only."""
    pos, neg = y == 1, y == 0
    if not (pos.any() and neg.any()):
        return float("nan")
    ranks = sps.rankdata(s)
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2)
                 / (pos.sum() * neg.sum()))


def metrics(y_true, score, pred) -> dict[str, float]:
    """The five metrics; AUC is NaN when only one class is present."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(pred).astype(int)
    s = np.asarray(score, dtype=float)
    pos, neg = y == 1, y == 0
    sens = float((p[pos] == 1).mean()) if pos.any() else float("nan")
    spec = float((p[neg] == 0).mean()) if neg.any() else float("nan")
    return {
        "accuracy": float((p == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(np.nanmean([sens, spec])),
        "sensitivity": sens,
        "specificity": spec,
        "auc": auc_score(y, s),
    }


# --- subjects counted once ------------------------------------------------------------------

def decision_threshold(score, pred) -> float:
    """The score at which a model's stored predictions turn positive.

    Probabilities cut at 0.5 and SVM decision values at 0; the threshold is read from the
    stored (score, pred) pairs so averaged scores are cut where the model cut them.
    """
    s = np.asarray(score, float)
    p = np.asarray(pred).astype(int)
    for t in ((0.0, 0.5) if (s < 0).any() else (0.5, 0.0)):  # probabilities are never < 0
        if not ((s > t) & (p == 0)).any() and not ((s < t) & (p == 1)).any():
            return t
    neg, pos = s[p == 0], s[p == 1]
    if len(neg) and len(pos) and neg.max() <= pos.min():
        return float((neg.max() + pos.min()) / 2)
    raise ValueError("Stored predictions do not follow one threshold on the score: "
                     "pass predictions of one model at a time.")


def subject_level(predictions: pd.DataFrame, set_name: str = "cv") -> pd.DataFrame:
    """One row per subject of one model on one set: the mean of its scores over repeats
    (CV) or fold models (independent site), `pred` from that mean at the model's threshold,
    `vote` the majority of the stored predictions (ties go to `pred`), and `n_predictions`.
    """
    g = predictions[predictions["set"] == set_name]
    cols = ["participant_id", "y_true", "score", "pred", "vote", "n_predictions"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    if (g.groupby("participant_id")["y_true"].nunique() > 1).any():
        raise ValueError("A subject has two different labels in the stored predictions.")
    t = decision_threshold(g["score"], g["pred"])
    out = g.groupby("participant_id", as_index=False, sort=True).agg(
        y_true=("y_true", "first"), score=("score", "mean"), share=("pred", "mean"),
        n_predictions=("pred", "size"))
    out["y_true"] = out["y_true"].astype(int)
    out["pred"] = (out["score"] > t).astype(int)  # as SVC.predict and the CNNs cut
    out["vote"] = np.where(out["share"] == 0.5, out["pred"], out["share"] > 0.5).astype(int)
    return out[cols]



# --- intervals ----------------------------------------------------------------------------

def bootstrap_ci(y_true, score, pred, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> pd.DataFrame:
    """Point estimate and percentile bootstrap CI over subjects for every metric.

    Valid where the models are fixed (the independent site); give it one row per subject.
    """
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


def corrected_ttest(scores, n_train: float, n_test: float, null: float = 0.0,
                    estimate: float | None = None, alternative: str = "two-sided",
                    level: float = 0.95) -> dict:
    """Corrected repeated-CV t-test on J = folds x repeats fold scores (or differences).

    The variance of the mean fold score is s^2 (1/J + n_test/n_train), not s^2 / J: folds
    share training subjects, so their scores are correlated (Nadeau and Bengio 2003), and
    the test has J - 1 degrees of freedom (Bouckaert and Frank 2004). A single k-fold run is
    the case of one repeat. `estimate` (default: the mean fold score) centres the interval.

    Returns
    -------
    dict with estimate, ci_low, ci_high, t, df, p_value and se.
    """
    x = np.asarray(scores, float)
    x = x[np.isfinite(x)]
    j = len(x)
    est = float(np.mean(x)) if estimate is None else float(estimate)
    nan = float("nan")
    if j < 2:
        return {"estimate": est, "ci_low": nan, "ci_high": nan, "t": nan, "df": j - 1,
                "p_value": nan, "se": nan}
    se = float(np.sqrt((1 / j + n_test / n_train) * np.var(x, ddof=1)))
    df = j - 1
    half = float(sps.t.ppf(0.5 + level / 2, df) * se)
    if se == 0:
        t = 0.0 if est == null else float(np.sign(est - null) * np.inf)
    else:
        t = (est - null) / se
    if alternative == "two-sided":
        p = 2 * sps.t.sf(abs(t), df)
    elif alternative == "greater":
        p = sps.t.sf(t, df)
    elif alternative == "less":
        p = sps.t.cdf(t, df)
    else:
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}.")
    return {"estimate": est, "ci_low": est - half, "ci_high": est + half, "t": float(t),
            "df": df, "p_value": float(p), "se": se}


def _fold_table(predictions: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`metric` per (repeat, fold) of the CV set (averaged over seeds), with fold sizes."""
    cv = predictions[predictions["set"] == "cv"]
    rows = []
    for (r, f), g in cv.groupby(["repeat", "fold"]):
        per_seed = [metrics(s["y_true"], s["score"], s["pred"])[metric]
                    for _, s in g.groupby("seed" if "seed" in g else "fold")]
        rows.append({"repeat": r, "fold": f, "score": float(np.mean(per_seed)),
                     "n_test": g["participant_id"].nunique()})
    out = pd.DataFrame(rows, columns=["repeat", "fold", "score", "n_test"])
    sizes = cv.groupby("repeat")["participant_id"].nunique()
    out["n_train"] = out["repeat"].map(sizes) - out["n_test"]
    return out


def _cv_design(folds: pd.DataFrame) -> str:
    k = folds.groupby("repeat")["fold"].nunique().max()
    r = folds["repeat"].nunique()
    return f"{k} folds x {r} repeat{'s' if r > 1 else ''}"


def cv_test(a: pd.DataFrame, b: pd.DataFrame | None = None, metric: str = CHANCE_METRIC,
            chance: float = 0.5, alternative: str = "two-sided", level: float = 0.95) -> dict:
    """Corrected repeated-CV t-test of one model against chance, or of a against b on the
    same folds (paired by repeat and fold), on the mean of the fold scores.

    Returns
    -------
    dict with difference (or estimate), ci_low, ci_high, p_value, n (subjects), test.
    """
    fa = _fold_table(a, metric)
    sa = subject_level(a, "cv")
    if b is None:
        res = corrected_ttest(fa["score"], fa["n_train"].mean(), fa["n_test"].mean(),
                              null=chance, alternative=alternative, level=level)
        return {"estimate": res["estimate"], "ci_low": res["ci_low"],
                "ci_high": res["ci_high"], "p_value": res["p_value"], "n": len(sa),
                "test": f"corrected repeated-CV t ({_cv_design(fa)}), {metric} vs {chance:g}"}
    fb = _fold_table(b, metric)
    m = fa.merge(fb, on=["repeat", "fold"], suffixes=("_a", "_b"))
    sb = subject_level(b, "cv")
    if len(m) != len(fa) or len(m) != len(fb) or set(sa["participant_id"]) != set(
            sb["participant_id"]):
        raise ValueError("Paired comparison needs predictions on the same subjects and folds.")
    res = corrected_ttest(m["score_a"] - m["score_b"], m["n_train_a"].mean(),
                          m["n_test_a"].mean(), alternative=alternative, level=level)
    return {"difference": res["estimate"], "ci_low": res["ci_low"], "ci_high": res["ci_high"],
            "p_value": res["p_value"], "n": len(sa),
            "test": f"corrected repeated-CV t ({_cv_design(fa)}), paired {metric} difference"}


def bootstrap_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str = "accuracy",
                         set_name: str = "independent", n_boot: int = 2000,
                         seed: int = 0) -> dict:
    """metric(a) - metric(b) on the same subjects with the models held fixed: a paired
    subject bootstrap 95 % CI and a two-sided bootstrap p-value."""
    pa, pb = subject_level(a, set_name), subject_level(b, set_name)
    m = pa.merge(pb, on="participant_id", suffixes=("_a", "_b"))
    if len(m) != len(pa) or len(m) != len(pb):
        raise ValueError("Paired comparison needs predictions on the same subjects.")
    y = m["y_true_a"].to_numpy()
    sa, pa_, sb, pb_ = (m[c].to_numpy() for c in ("score_a", "pred_a", "score_b", "pred_b"))

    def diff(idx):
        return (metrics(y[idx], sa[idx], pa_[idx])[metric]
                - metrics(y[idx], sb[idx], pb_[idx])[metric])

    rng = np.random.default_rng(seed)
    boots = np.array([diff(rng.integers(0, len(m), len(m))) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    p = 2 * min((boots <= 0).mean(), (boots >= 0).mean())
    return {"difference": float(diff(np.arange(len(m)))),
            "ci_low": float(np.quantile(boots, 0.025)),
            "ci_high": float(np.quantile(boots, 0.975)), "p_value": float(min(p, 1.0)),
            "n": int(len(m)), "test": f"paired subject bootstrap ({n_boot}), models fixed"}


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str = "accuracy",
                      set_name: str = "cv", n_boot: int = 2000, seed: int = 0) -> dict:
    """metric(a) - metric(b) on the same subjects, by the test that fits the set: the
    corrected repeated-CV t-test on cross-validation, the paired subject bootstrap on the
    independent site."""
    if set_name == "cv":
        return cv_test(a, b, metric)
    return bootstrap_difference(a, b, metric, set_name, n_boot, seed)


# --- what selecting the epoch on the test fold adds ---------------------------------------

#: the rows of `selection_inflation`: label, then the per-fold columns subtracted (a - b)
SELECTION_COMPARISONS = (
    ("selection on the test fold", "test_chosen", "val_chosen"),
    ("100 % vs 80 % of training subjects", "published", "test_chosen"),
    ("total: published minus honest", "published", "val_chosen"),
)


def epoch_curves(trace: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per traced run (one per repeat and fold) and epoch: `metric` on the held-out fold,
    and the loss and accuracy on the inner validation split.

    Parameters
    ----------
    trace : pandas.DataFrame
        `results.traces_of`: one row per run, epoch and held-out subject.
    metric : str
        One of `METRICS`.

    Returns
    -------
    pandas.DataFrame
        repeat, fold, epoch, `metric`, val_loss, val_accuracy, n_test and hash.
    """
    runs = trace.groupby(["repeat", "fold"])["hash"].nunique()
    if (runs > 1).any():
        r, f = runs[runs > 1].index[0]
        raise ValueError(f"Repeat {r}, fold {f} has {runs[(r, f)]} traced runs; an epoch is "
                         "chosen within one run, so pass one run per repeat and fold.")
    rows = []
    for (r, f, e), g in trace.groupby(["repeat", "fold", "epoch"], sort=True):
        rows.append({"repeat": int(r), "fold": int(f), "epoch": int(e),
                     metric: metrics(g["y_true"], g["score"], g["pred"])[metric],
                     "val_loss": float(g["val_loss"].iloc[0]),
                     "val_accuracy": float(g["val_accuracy"].iloc[0]),
                     "n_test": int(g["participant_id"].nunique()), "hash": g["hash"].iloc[0]})
    return pd.DataFrame(rows, columns=["repeat", "fold", "epoch", metric, "val_loss",
                                       "val_accuracy", "n_test", "hash"])


def selection_by_fold(trace: pd.DataFrame, published: pd.DataFrame,
                      metric: str = "accuracy") -> pd.DataFrame:
    """Per (repeat, fold): the traced run's held-out `metric` at the epoch chosen on the
    inner validation split and at the epoch chosen on the held-out fold, and the published
    arm's (all training subjects, epoch chosen on the held-out fold).

    Both epochs are read from the same run: the validation-chosen one has the lowest
    validation loss, the test-chosen one the highest held-out `metric`, the first epoch on
    ties (as Keras keeps a strict improvement).

    Parameters
    ----------
    trace : pandas.DataFrame
        `results.traces_of` of the traced fits.
    published : pandas.DataFrame
        `results.predictions_of` of the published fits on the same folds.
    metric : str
        One of `METRICS`.

    Returns
    -------
    pandas.DataFrame
        repeat, fold, epoch_val, epoch_test, val_chosen, test_chosen, published, n_test and
        n_train (the fold's held-out and training subjects).
    """
    curves = epoch_curves(trace, metric)
    cv = published[published["set"] == "cv"]
    rows = []
    for (r, f), g in curves.groupby(["repeat", "fold"], sort=True):
        g = g.sort_values("epoch", kind="stable").reset_index(drop=True)
        val, test = g.loc[g["val_loss"].idxmin()], g.loc[g[metric].idxmax()]
        pub = cv[(cv["repeat"] == r) & (cv["fold"] == f)]
        held_out = set(trace.loc[(trace["repeat"] == r) & (trace["fold"] == f),
                                 "participant_id"])
        if set(pub["participant_id"]) != held_out or pub["participant_id"].duplicated().any():
            raise ValueError(f"Repeat {r}, fold {f}: the published fit must predict the "
                             "traced run's held-out subjects, once each.")
        rows.append({"repeat": int(r), "fold": int(f), "epoch_val": int(val["epoch"]),
                     "epoch_test": int(test["epoch"]), "val_chosen": float(val[metric]),
                     "test_chosen": float(test[metric]),
                     "published": metrics(pub["y_true"], pub["score"], pub["pred"])[metric],
                     "n_test": len(held_out)})
    out = pd.DataFrame(rows, columns=["repeat", "fold", "epoch_val", "epoch_test",
                                      "val_chosen", "test_chosen", "published", "n_test"])
    sizes = trace.groupby("repeat")["participant_id"].nunique()
    out["n_train"] = out["repeat"].map(sizes) - out["n_test"]
    return out


def selection_inflation(by_fold: pd.DataFrame, metric: str = "accuracy",
                        level: float = 0.95) -> pd.DataFrame:
    """What the published protocol adds, in three labelled parts (`SELECTION_COMPARISONS`):
    choosing the epoch on the test fold within one run, training on all training subjects
    instead of 80 %, and both together.

    The unit is the (repeat, fold) fit, where the epoch is selected: each difference is the
    mean over units with the corrected repeated-CV t interval (`corrected_ttest`), since
    units share training subjects.

    Parameters
    ----------
    by_fold : pandas.DataFrame
        `selection_by_fold`.
    metric : str
        The metric `by_fold` holds (for the `test` column).
    level : float
        Confidence level of the intervals.

    Returns
    -------
    pandas.DataFrame
        comparison, difference, ci_low, ci_high, p_value (two sided, no difference), units
        and test.
    """
    n_train, n_test = by_fold["n_train"].mean(), by_fold["n_test"].mean()
    test = (f"corrected repeated-CV t ({_cv_design(by_fold)}), paired {metric} difference "
            "per (repeat, fold)")
    rows = []
    for name, a, b in SELECTION_COMPARISONS:
        t = corrected_ttest(by_fold[a] - by_fold[b], n_train, n_test, level=level)
        rows.append({"comparison": name, "difference": t["estimate"], "ci_low": t["ci_low"],
                     "ci_high": t["ci_high"], "p_value": t["p_value"],
                     "units": int(len(by_fold)), "test": test})
    return pd.DataFrame(rows)


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
    """Per model and evaluation set: metrics on subject-level predictions, with intervals.

    `cv`: the mean of the fold scores, with the interval and `p_chance` (one sided,
    balanced accuracy above 0.5) of the corrected repeated-CV t-test on them, and
    `p_permutation` left NaN for `with_permutation_tests` to fill; `n` counts
    each subject once however many repeats predicted it. `independent`: each subject's
    scores averaged over fold models, with subject bootstrap intervals. The column `test`
    names the test behind each row.
    """
    keys = [k for k in MODEL_KEYS if k in predictions.columns]
    rows = []
    for k, g in predictions.groupby(keys + ["set"], dropna=False):
        set_name = k[-1]
        sub = subject_level(g, set_name)
        row = dict(zip(keys + ["set"], k, strict=True))
        row["n"] = int(len(sub))
        if set_name == "cv":
            folds = {m: _fold_table(g, m) for m in METRICS}
            for m in METRICS:
                f = folds[m]
                t = corrected_ttest(f["score"], f["n_train"].mean(), f["n_test"].mean())
                row.update({m: t["estimate"], f"{m}_low": max(t["ci_low"], 0.0),
                            f"{m}_high": min(t["ci_high"], 1.0)})  # a metric's own range
            f = folds[CHANCE_METRIC]
            row["p_chance"] = corrected_ttest(
                f["score"], f["n_train"].mean(), f["n_test"].mean(), null=0.5,
                alternative="greater")["p_value"]
            row["p_permutation"] = float("nan")  # `with_permutation_tests` fills it
            row["test"] = f"corrected repeated-CV t ({_cv_design(folds['auc'])})"
        else:
            ci = bootstrap_ci(sub["y_true"], sub["score"], sub["pred"], n_boot=n_boot,
                              seed=seed)
            for m in METRICS:
                row.update({m: ci.loc[m, "estimate"], f"{m}_low": ci.loc[m, "ci_low"],
                            f"{m}_high": ci.loc[m, "ci_high"]})
            row["p_chance"] = row["p_permutation"] = float("nan")
            row["test"] = f"subject bootstrap ({n_boot}), fold models fixed"
        rows.append(row)
    return pd.DataFrame(rows)


# --- AUC comparisons on fixed models ------------------------------------------------------

def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of several scores on the same subjects and their DeLong covariance matrix
    (the fast mid-rank computation of Sun and Xu 2014; ties count one half)."""
    y = np.asarray(y_true).astype(int)
    s = np.atleast_2d(np.asarray(scores, float))
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = sps.rankdata(pos, axis=-1)
    ty = sps.rankdata(neg, axis=-1)
    tz = sps.rankdata(np.hstack([pos, neg]), axis=-1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per patient: share of controls scored lower
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per control: share of patients scored higher
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y_true, score_a, score_b) -> dict[str, float]:
    """DeLong's test for two correlated AUCs on the same subjects: AUC difference, z and
    two-sided p."""
    y = np.asarray(y_true).astype(int)
    if (y == 1).sum() < 2 or (y == 0).sum() < 2:
        return {"auc_difference": float("nan"), "z": float("nan"), "p_value": float("nan")}
    aucs, cov = delong_covariance(y, np.vstack([score_a, score_b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    if var <= 0:
        return {"auc_difference": float(diff), "z": float("nan"),
                "p_value": 1.0 if diff == 0 else 0.0}
    z = diff / np.sqrt(var)
    return {"auc_difference": float(diff), "z": float(z),
            "p_value": float(2 * sps.norm.sf(abs(z)))}


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


def label(df: pd.DataFrame) -> pd.Series:
    """A readable model label: `model [maps]`, with the protocol when it is not ours."""
    lab = df["model"] + " [" + df["maps"] + "]"
    return lab.where(df["protocol"] == "inner", lab + " (" + df["protocol"] + " protocol)")


def compare_auc(predictions: pd.DataFrame, pairs: list[tuple[str, str]],
                set_name: str = "independent") -> pd.DataFrame:
    """DeLong tests of AUC for pairs of model labels on the same subjects (each subject
    once), Holm-corrected. Labels are `model [maps] (protocol)` as in `label()`."""
    lab = predictions.assign(label=label(predictions))
    rows = []
    for a, b in pairs:
        pa = subject_level(lab[lab["label"] == a], set_name)
        pb = subject_level(lab[lab["label"] == b], set_name)
        m = pa.merge(pb, on="participant_id", suffixes=("_a", "_b"))
        test = delong_test(m["y_true_a"], m["score_a"], m["score_b"])
        rows.append({"model_a": a, "model_b": b, "set": set_name, "n": len(m), **test,
                     "test": "DeLong AUC, models fixed"})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out["p_value"].fillna(1.0))
    return out


# --- the whole pipeline against permuted labels -------------------------------------------

def permute_labels(y: np.ndarray, rng: np.random.Generator,
                   strata: np.ndarray | None = None) -> np.ndarray:
    """A permutation of y, within each stratum (site) when strata are given, so that
    labels are only exchanged between subjects that are exchangeable under the null."""
    y = np.asarray(y)
    if strata is None:
        return rng.permutation(y)
    out = y.copy()
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        out[idx] = y[rng.permutation(idx)]
    return out


def permutation_test(fit_score: Callable[[np.ndarray], float], y: np.ndarray,
                     n_permutations: int, seed: int = 0,
                     strata: np.ndarray | None = None, done: dict | None = None,
                     checkpoint: Callable[[dict], None] | None = None,
                     strata_name: str = "strata") -> dict:
    """Label-permutation test of a whole pipeline (Ojala and Garriga 2010, test 1).

    `fit_score(labels)` runs everything that learns (feature selection, tuning, fitting,
    cross-validation) with the given labels and returns one score, higher is better. The
    one-sided p-value is (1 + #{null >= observed}) / (1 + n_permutations): exact at any
    count, so 19 permutations already give a test of level 0.05.

    A long test can resume: `checkpoint(state)` is called after the observed score and
    after every permutation with `state` = {`score`, `null`} so far, and a `done` state
    given back skips that work. The permutations are drawn from `seed` in the same order
    either way, so a resumed test equals an uninterrupted one. `strata_name` says in the
    test's description what the strata are.

    Returns
    -------
    dict with score, p_value, n_permutations, seed, null (the permuted scores) and test.
    """
    if n_permutations < 1:
        raise ValueError("A permutation test needs at least one permutation.")
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    done = done or {}
    observed = float(done["score"]) if "score" in done else float(fit_score(y))
    null = [float(v) for v in done.get("null", [])][:n_permutations]
    if checkpoint is not None and "score" not in done:
        checkpoint({"score": observed, "null": list(null)})
    for i in range(n_permutations):
        labels = permute_labels(y, rng, strata)  # drawn even when done, to keep the order
        if i < len(null):
            continue
        null.append(float(fit_score(labels)))
        if checkpoint is not None:
            checkpoint({"score": observed, "null": list(null)})
    null = np.asarray(null)
    p = (1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations)
    within = f" within {strata_name}" if strata is not None else ""
    return {"score": observed, "p_value": float(p), "n_permutations": int(n_permutations),
            "seed": int(seed), "null": null,
            "test": f"label permutation of the whole pipeline ({n_permutations}{within})"}


def plan_folds(plan: pd.DataFrame, ids: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of every fold of every repeat, as indices into ids."""
    from .splits import iter_folds

    pos = {s: i for i, s in enumerate(ids)}
    out = []
    for r in sorted(plan["repeat"].unique()):
        for _, train, test, _ in iter_folds(plan, int(r)):
            out.append((np.array([pos[s] for s in train]), np.array([pos[s] for s in test])))
    return out


def cv_fold_scores(make_estimator: Callable, X: np.ndarray, y: np.ndarray,
                   folds: Sequence[tuple[np.ndarray, np.ndarray]],
                   metric: str = CHANCE_METRIC) -> np.ndarray:
    """`metric` of a fresh estimator on each held-out fold: the fit-and-score step of a
    scikit-learn pipeline, for `permutation_test` and for calibration."""
    from sklearn.base import clone

    out = []
    for train, test in folds:
        est = clone(make_estimator()).fit(X[train], y[train])
        pred = est.predict(X[test])
        score = (est.decision_function(X[test]) if hasattr(est, "decision_function")
                 else est.predict_proba(X[test])[:, 1])
        out.append(metrics(y[test], score, pred)[metric])
    return np.asarray(out)


def sklearn_permutation_test(make_estimator: Callable, X: np.ndarray, y: np.ndarray,
                             folds: Sequence[tuple[np.ndarray, np.ndarray]],
                             n_permutations: int, seed: int = 0,
                             strata: np.ndarray | None = None,
                             metric: str = CHANCE_METRIC, done: dict | None = None,
                             checkpoint: Callable[[dict], None] | None = None,
                             strata_name: str = "strata") -> dict:
    """`permutation_test` of a scikit-learn pipeline (an SVM on voxels, regions or 2D
    features): the statistic is its mean held-out `metric` over `folds` (`plan_folds`),
    every fitted step refitted on every permutation; `strata` are usually the sites.
    `done`, `checkpoint` and `strata_name` as for `permutation_test`."""
    return permutation_test(
        lambda labels: float(np.mean(cv_fold_scores(make_estimator, X, labels, folds, metric))),
        y, n_permutations, seed=seed, strata=strata, done=done, checkpoint=checkpoint,
        strata_name=strata_name)


def with_permutation_tests(summary: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """`summary` with each model's label-permutation p-value on its `cv` row
    (`p_permutation`), and its `test` naming which procedure produced which number.

    `tests` has the model columns of `summary` (`MODEL_KEYS`), `p_value` and `test`, one
    row per tested model; rows of untested models keep `p_permutation` NaN.
    """
    out = summary.copy()
    if "p_permutation" not in out:
        out["p_permutation"] = np.nan
    if tests is None or tests.empty:
        return out
    keys = [k for k in MODEL_KEYS if k in out.columns and k in tests.columns]
    index = {tuple(r[k] for k in keys): r for _, r in tests.iterrows()}
    for i, row in out[out["set"] == "cv"].iterrows():
        found = index.get(tuple(row[k] for k in keys))
        if found is None:
            continue
        out.loc[i, "p_permutation"] = float(found["p_value"])
        out.loc[i, "test"] = (f"{row['test']}: intervals and p_chance; "
                              f"{found['test']}: p_permutation")
    return out
