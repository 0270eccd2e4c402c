"""Metrics, intervals and tests behave as their definitions say."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mri3dcnn.evaluation import (
    bootstrap_ci,
    delong_test,
    headline_claims,
    holm,
    metrics,
    paired_difference,
    summarise,
)


def test_metrics_by_hand():
    y = [1, 1, 1, 0, 0]
    pred = [1, 1, 0, 0, 1]
    score = [0.9, 0.8, 0.4, 0.3, 0.6]
    m = metrics(y, score, pred)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["auc"] == pytest.approx(roc_auc_score(y, score))


def test_bootstrap_ci_contains_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 1, 200)
    ci = bootstrap_ci(y, s, (s > 0.5).astype(int), n_boot=200)
    assert (ci["ci_low"] <= ci["estimate"]).all() and (ci["estimate"] <= ci["ci_high"]).all()


def test_delong_against_known_cases():
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 100)
    good = y + rng.normal(0, 0.5, 200)
    bad = rng.normal(0, 1, 200)
    t = delong_test(y, good, bad)
    assert t["auc_difference"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad))
    assert t["p_value"] < 1e-6
    same = delong_test(y, good, good + 1e-9 * rng.normal(size=200))
    assert same["p_value"] > 0.5


def test_holm():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def _preds(model, chapter, noise, seed, maps="gm"):
    rng = np.random.default_rng(seed)
    rows = []
    for part, n in (("cv", 120), ("independent", 80)):
        y = np.array([0, 1] * (n // 2))
        s = 1 / (1 + np.exp(-(2 * y - 1) * 2 + rng.normal(0, noise, n)))
        rows.append(pd.DataFrame({"participant_id": [f"{part}{i}" for i in range(n)],
                                  "set": part, "y_true": y, "score": s,
                                  "pred": (s > 0.5).astype(int)}))
    return pd.concat(rows).assign(chapter=chapter, model=model, maps=maps, protocol="inner",
                                  repeat=0, fold=0, seed=0, hash=model)


def test_claims_are_computed_not_typed():
    preds = pd.concat([_preds("sequential_2", "3d_cnn", 0.5, 0),
                       _preds("sequential_2", "3d_cnn", 0.5, 3, maps="gm+fa"),
                       _preds("svm_linear", "02_svm", 4.0, 1)])
    claims = headline_claims(summarise(preds, n_boot=50), preds).set_index("claim")
    assert claims.loc["3D CNNs beat the SVM", "verdict"] == "supported"
    assert claims.loc["3D CNNs beat 2D ImageNet features", "verdict"].startswith("not tested")
    assert claims.loc["Several maps beat one map", "verdict"] in ("not supported",
                                                                  "supported", "contradicted")
    # swap the roles: the SVM is now the strong one, and the claim is contradicted
    preds2 = pd.concat([_preds("sequential_2", "3d_cnn", 4.0, 0),
                        _preds("svm_linear", "02_svm", 0.5, 1)])
    claims2 = headline_claims(summarise(preds2, n_boot=50), preds2).set_index("claim")
    assert claims2.loc["3D CNNs beat the SVM", "verdict"] == "contradicted"


def test_paired_difference_needs_same_subjects():
    a = _preds("a", "x", 0.5, 0)
    b = _preds("b", "x", 0.5, 1)
    d = paired_difference(a, b)
    assert d["ci_low"] <= d["difference"] <= d["ci_high"] and d["n"] == 120
    with pytest.raises(ValueError, match="same subjects"):
        paired_difference(a, b.iloc[5:])
