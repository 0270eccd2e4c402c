"""The study's four claims, each tested on this cohort's stored predictions.

Which model stands for a kind (3D CNN, SVM, ...) is chosen by cross-validated AUC, and the
chosen models are compared on the independent site, so the choice never sees the data of
the test. A claim is `supported` when the test favours it at the Holm-corrected level,
`contradicted` when it favours the opposite, `not supported` when neither (the question
stays open), and `not tested` when the results it needs are missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .crossval import CHAPTER_2D, CHAPTER_CNN, CHAPTER_SVM
from .stats import auc_score, compare_auc, holm, label, subject_level

#: (claim, kind a, kind b): "a beats b", each tested by DeLong on the independent site
PAIRWISE_CLAIMS = (("3D CNNs beat 2D ImageNet features", "3D CNN", "2D pretrained"),
                   ("3D CNNs beat the SVM", "3D CNN", "SVM"),
                   ("Several maps beat one map", "3D CNN, several maps", "3D CNN, one map"))
GENERALISATION_CLAIM = "3D CNNs generalise better to the independent site"


def ranking(summary: pd.DataFrame, metric: str = "auc", set_name: str = "cv") -> pd.DataFrame:
    """Rows of `summary` on one set, best first by `metric` (ties broken by label, so the
    order never depends on the order results were stored), with a `label` column."""
    rows = summary[summary["set"] == set_name]
    rows = rows.assign(label=label(rows)) if len(rows) else rows.assign(label=[])
    return rows.sort_values([metric, "label"], ascending=[False, True], kind="stable")


def best_model(summary: pd.DataFrame, metric: str = "auc",
               set_name: str = "cv") -> pd.Series | None:
    """The best row of `summary` by cross-validated `metric`, or None when it is empty."""
    ranked = ranking(summary, metric, set_name)
    return None if ranked.empty else ranked.iloc[0]


def families(summary: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Which stored models belong to which kind, for the study's claims."""
    s = summary[summary["protocol"] == "inner"]
    # records keep their variant (a null model, the published wiring) as a key field
    plain = (s["variant"] == "none") if "variant" in s else pd.Series(True, index=s.index)
    cnn = s[(s["chapter"] == CHAPTER_CNN) & plain]
    return {
        "3D CNN": cnn,
        "3D CNN, one map": cnn[~cnn["maps"].str.contains(r"\+")],
        "3D CNN, several maps": cnn[cnn["maps"].str.contains(r"\+")],
        "SVM": s[(s["chapter"] == CHAPTER_SVM) & s["model"].str.startswith("svm")],
        "2D pretrained": s[s["chapter"] == CHAPTER_2D],
    }


def auc_drop_difference(predictions: pd.DataFrame, a: str, b: str, n_boot: int = 1000,
                        seed: int = 0) -> dict[str, float]:
    """(CV AUC - independent AUC) of a minus that of b, each subject counted once, with a
    bootstrap CI that resamples the CV and the independent subjects separately."""
    lab = predictions.assign(label=label(predictions))
    sets = {(m, s): subject_level(lab[lab["label"] == m], s) for m in (a, b)
            for s in ("cv", "independent")}
    nan = {"estimate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    cv_ids = sets[(a, "cv")]["participant_id"].tolist()
    ind_ids = sets[(a, "independent")]["participant_id"].tolist()
    if not ind_ids or cv_ids != sets[(b, "cv")]["participant_id"].tolist() or ind_ids != \
            sets[(b, "independent")]["participant_id"].tolist():
        return nan

    arrays = {k: (v["y_true"].to_numpy(), v["score"].to_numpy()) for k, v in sets.items()}

    def auc(m, s, idx):
        d = arrays[(m, s)]
        return auc_score(d[0][idx], d[1][idx])

    def drop(idx_cv, idx_ind):
        return ((auc(a, "cv", idx_cv) - auc(a, "independent", idx_ind))
                - (auc(b, "cv", idx_cv) - auc(b, "independent", idx_ind)))

    n_cv, n_ind = len(cv_ids), len(ind_ids)
    rng = np.random.default_rng(seed)
    boots = np.array([drop(rng.integers(0, n_cv, n_cv), rng.integers(0, n_ind, n_ind))
                      for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    return {"estimate": float(drop(np.arange(n_cv), np.arange(n_ind))),
            "ci_low": float(np.quantile(boots, 0.025)),
            "ci_high": float(np.quantile(boots, 0.975))}


def _verdict(favours_claim: bool, favours_opposite: bool) -> str:
    if favours_claim:
        return "supported"
    return "contradicted" if favours_opposite else "not supported"


def headline_claims(summary: pd.DataFrame, predictions: pd.DataFrame,
                    alpha: float = 0.05) -> pd.DataFrame:
    """The study's claims, each with the models compared, the test, its numbers and a
    verdict computed from them.

    Parameters
    ----------
    summary : `stats.summarise` of the predictions (the models are chosen on its CV rows).
    predictions : stored predictions of every model.
    alpha : family-wise level of the three pairwise claims (Holm).

    Returns
    -------
    One row per claim: claim, model_a, model_b, test, estimate, p_value / p_holm or ci_low /
    ci_high, verdict.
    """
    fam = families(summary)
    best = {k: best_model(v) for k, v in fam.items()}
    rows = []
    for text, ka, kb in PAIRWISE_CLAIMS:
        a, b = best[ka], best[kb]
        row = {"claim": text, "model_a": None if a is None else a["label"],
               "model_b": None if b is None else b["label"],
               "test": "DeLong AUC on the independent site, models fixed; Holm over the "
                       "claims tested"}
        if a is None or b is None:
            row["verdict"] = f"not tested: no {ka if a is None else kb} results"
        else:
            t = compare_auc(predictions, [(a["label"], b["label"])], "independent").iloc[0]
            if np.isfinite(t["p_value"]):
                row.update(estimate=t["auc_difference"], p_value=t["p_value"])
            else:
                row["verdict"] = "not tested: no independent set"
        rows.append(row)
    tested = [r for r in rows if "p_value" in r]
    for r, p in zip(tested, holm([r["p_value"] for r in tested]), strict=True):
        r["p_holm"] = float(p)
        r["verdict"] = _verdict(p < alpha and r["estimate"] > 0, p < alpha and r["estimate"] < 0)
    a, b = best["3D CNN"], best["SVM"]
    row = {"claim": GENERALISATION_CLAIM, "model_a": None if a is None else a["label"],
           "model_b": None if b is None else b["label"],
           "test": "subject bootstrap CI of (CV - independent AUC), a minus b"}
    if a is None or b is None:
        row["verdict"] = "not tested: missing 3D CNN or SVM results"
    else:
        d = auc_drop_difference(predictions, a["label"], b["label"])
        row.update(estimate=d["estimate"], ci_low=d["ci_low"], ci_high=d["ci_high"])
        if not np.isfinite(d["estimate"]):
            row["verdict"] = "not tested: no independent set"
        else:
            row["verdict"] = _verdict(d["ci_high"] < 0, d["ci_low"] > 0)
    rows.append(row)
    return pd.DataFrame(rows)
