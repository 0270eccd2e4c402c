"""Metrics, intervals and tests behave as their definitions say."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from mri3dcnn.stats import (
    bootstrap_ci,
    compare_auc,
    corrected_ttest,
    cv_test,
    delong_covariance,
    delong_test,
    holm,
    metrics,
    paired_difference,
    permutation_test,
    permute_labels,
    subject_level,
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


def cv_predictions(model="m", n_cv=90, n_ind=60, repeats=1, folds=3, signal=1.0, seed=0,
                   chapter="x", maps="gm"):
    """Stored-prediction rows of one model: every CV subject once per repeat, every
    independent subject once per fold model; probabilities cut at 0.5."""
    rng = np.random.default_rng(seed)
    y_cv, y_ind = np.arange(n_cv) % 2, np.arange(n_ind) % 2
    rows = []
    for r in range(repeats):
        fold = rng.permutation(np.arange(n_cv) % folds)
        for f in range(folds):
            s = 1 / (1 + np.exp(-signal * (2 * y_cv - 1) - rng.normal(0, 1, n_cv)))
            idx = fold == f
            rows.append(pd.DataFrame({
                "participant_id": [f"cv{i}" for i in np.flatnonzero(idx)], "set": "cv",
                "y_true": y_cv[idx], "score": s[idx], "repeat": r, "fold": f}))
            s = 1 / (1 + np.exp(-signal * (2 * y_ind - 1) - rng.normal(0, 1, n_ind)))
            rows.append(pd.DataFrame({
                "participant_id": [f"ind{i}" for i in range(n_ind)], "set": "independent",
                "y_true": y_ind, "score": s, "repeat": r, "fold": f}))
    out = pd.concat(rows, ignore_index=True)
    return out.assign(pred=(out["score"] >= 0.5).astype(int), chapter=chapter, model=model,
                      maps=maps, protocol="inner", seed=0, hash=model)


def averaged_as_one_repeat(preds):
    """The same model with each subject's predictions already averaged: one repeat."""
    out = []
    for s in ("cv", "independent"):
        sub = subject_level(preds, s)
        first = preds[(preds["set"] == s) & (preds["repeat"] == 0)].drop_duplicates(
            "participant_id").set_index("participant_id")["fold"]
        out.append(sub.assign(set=s, repeat=0, fold=sub["participant_id"].map(first)))
    keys = preds.iloc[0][["chapter", "model", "maps", "protocol", "seed", "hash"]]
    return pd.concat(out, ignore_index=True).drop(columns=["vote", "n_predictions"]).assign(
        **keys.to_dict())


def test_subjects_count_once_with_repeats():
    three = cv_predictions(repeats=3, seed=4)
    one = averaged_as_one_repeat(three)
    s3 = summarise(three, n_boot=200).set_index("set")
    s1 = summarise(one, n_boot=200).set_index("set")
    assert s3.loc["cv", "n"] == s1.loc["cv", "n"] == 90
    assert s3.loc["independent", "n"] == s1.loc["independent", "n"] == 60
    for m in ("accuracy", "auc"):
        assert s3.loc["independent", m] == pytest.approx(s1.loc["independent", m])
        w3 = s3.loc["independent", f"{m}_high"] - s3.loc["independent", f"{m}_low"]
        w1 = s1.loc["independent", f"{m}_high"] - s1.loc["independent", f"{m}_low"]
        assert w3 == pytest.approx(w1)
    other = cv_predictions("o", repeats=3, seed=5)
    d3 = paired_difference(three, other, "auc", "independent", n_boot=200)
    d1 = paired_difference(one, averaged_as_one_repeat(other), "auc", "independent",
                           n_boot=200)
    assert d3["n"] == d1["n"] == 60
    assert d3["ci_high"] - d3["ci_low"] == pytest.approx(d1["ci_high"] - d1["ci_low"])
    both = pd.concat([three, other])
    assert compare_auc(both, [("m [gm]", "o [gm]")]).loc[0, "n"] == 60


def test_subject_level_pred_and_vote():
    preds = pd.DataFrame({"participant_id": ["a"] * 3 + ["b"] * 3, "set": "cv",
                          "y_true": [1] * 3 + [0] * 3,
                          "score": [0.9, 0.45, 0.45, 0.2, 0.55, 0.6],
                          "pred": [1, 0, 0, 0, 1, 1]})
    s = subject_level(preds).set_index("participant_id")
    assert s.loc["a", "score"] == pytest.approx(0.6) and s.loc["a", "pred"] == 1
    assert s.loc["a", "vote"] == 0  # two of three fold models said control
    assert s.loc["b", "pred"] == 0 and s.loc["b", "vote"] == 1
    svm = preds.assign(score=preds["score"] - 0.5)  # decision values cut at 0
    assert subject_level(svm)["pred"].tolist() == [1, 0]
    gap = pd.DataFrame({"participant_id": ["a", "a"], "set": "cv", "y_true": 1,
                        "score": [0.6, -0.2], "pred": [1, 0]})  # both 0 and 0.5 fit
    assert subject_level(gap)["pred"].tolist() == [1]  # mean 0.2 > 0: decision values


def test_bootstrap_interval_has_the_binomial_width():
    """An interval that would collapse onto the estimate without resampling."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 1, 200)
    p = (s > 0.5).astype(int)
    ci = bootstrap_ci(y, s, p, n_boot=400)
    acc = ci.loc["accuracy", "estimate"]
    expected = 2 * 1.96 * np.sqrt(acc * (1 - acc) / 200)
    width = ci.loc["accuracy", "ci_high"] - ci.loc["accuracy", "ci_low"]
    assert 0.8 * expected < width < 1.2 * expected
    assert (ci["ci_low"] < ci["estimate"]).all() and (ci["estimate"] < ci["ci_high"]).all()


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


def test_delong_covariance_matches_the_direct_computation_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 40)
    scores = np.vstack([np.round(y + rng.normal(0, 1, 40)),  # few values: many ties
                        rng.integers(0, 3, 40).astype(float)])
    aucs, cov = delong_covariance(y, scores)
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    # psi(x, z) = 1 if x > z, 1/2 if tied, 0 otherwise, for every (patient, control) pair
    psi = np.array([[[1.0 if x > z else 0.5 if x == z else 0.0 for z in neg[k]]
                     for x in pos[k]] for k in range(2)])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    np.testing.assert_allclose(aucs, psi.mean(axis=(1, 2)))
    direct = np.cov(v10) / m + np.cov(v01) / n
    np.testing.assert_allclose(cov, direct, rtol=1e-12)
    assert aucs[0] == pytest.approx(roc_auc_score(y, scores[0]))


def test_holm():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_corrected_ttest_by_hand():
    x = [0.62, 0.71, 0.58, 0.66, 0.55]
    t = corrected_ttest(x, n_train=80, n_test=20, null=0.5)
    # mean 0.624, sample variance 0.00403, corrected variance (1/5 + 20/80) * 0.00403
    se = np.sqrt(0.45 * 0.00403)
    assert t["estimate"] == pytest.approx(0.624)
    assert t["se"] == pytest.approx(se)
    assert t["t"] == pytest.approx(0.124 / se)
    assert t["p_value"] == pytest.approx(2 * sps.t.sf(0.124 / se, 4))
    assert t["p_value"] == pytest.approx(0.0436, abs=5e-4)
    assert t["ci_high"] - t["ci_low"] == pytest.approx(2 * sps.t.ppf(0.975, 4) * se)
    # the naive t-test, s^2 / J, is what the correction widens
    naive = sps.ttest_1samp(x, 0.5)
    assert t["p_value"] > naive.pvalue
    one_sided = corrected_ttest(x, 80, 20, null=0.5, alternative="greater")
    assert one_sided["p_value"] == pytest.approx(t["p_value"] / 2)


def test_cv_test_single_repeat_and_pairs():
    a = cv_predictions("a", signal=2.0, seed=1)
    chance = cv_test(a, alternative="greater")
    assert chance["n"] == 90 and "3 folds x 1 repeat" in chance["test"]
    assert chance["p_value"] < 0.05
    b = cv_predictions("b", signal=0.0, seed=2)
    d = paired_difference(a, b, "auc")
    assert d["ci_low"] <= d["difference"] <= d["ci_high"] and d["n"] == 90
    assert d["difference"] > 0 and "corrected" in d["test"]
    with pytest.raises(ValueError, match="same subjects"):
        paired_difference(a, b.iloc[5:], "auc")
    with pytest.raises(ValueError, match="same subjects"):
        paired_difference(a, b[b["participant_id"] != "ind3"], "auc", "independent")


def test_summary_names_its_tests():
    s = summarise(cv_predictions(repeats=2), n_boot=50).set_index("set")
    assert s.loc["cv", "test"].startswith("corrected repeated-CV t (3 folds x 2 repeats)")
    assert s.loc["independent", "test"].startswith("subject bootstrap")
    assert 0 <= s.loc["cv", "p_chance"] <= 1


def test_permutation_test_is_exact_and_keeps_strata():
    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 30)
    signal = y.astype(float)
    res = permutation_test(lambda lab: float(np.corrcoef(lab, signal)[0, 1]), y, 19, seed=0)
    assert res["p_value"] == pytest.approx(1 / 20)  # nothing beats the true labels
    noise = rng.normal(size=60)
    p = [permutation_test(lambda lab: float(np.corrcoef(lab, noise)[0, 1]),
                          rng.permutation(y), 19, seed=s)["p_value"] for s in range(200)]
    assert 0.02 < np.mean(np.asarray(p) <= 0.05) < 0.10  # level 0.05, up to binomial noise
    strata = np.repeat([0, 1, 2], 20)
    perm = permute_labels(y, rng, strata)
    for k in range(3):
        assert perm[strata == k].sum() == y[strata == k].sum()
    with pytest.raises(ValueError, match="at least one"):
        permutation_test(lambda lab: 0.0, y, 0)


def test_pipeline_permutation_refits_everything():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from mri3dcnn.stats import sklearn_permutation_test

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 30)
    X = rng.normal(size=(60, 5))
    folds = list(StratifiedKFold(3).split(X, y))
    strong = sklearn_permutation_test(LogisticRegression, X + 2 * y[:, None], y, folds, 19)
    assert strong["p_value"] == pytest.approx(1 / 20) and strong["score"] > 0.9
    assert len(strong["null"]) == 19 and strong["null"].max() < 0.8
    none = sklearn_permutation_test(LogisticRegression, X, y, folds, 19)
    assert none["p_value"] > 0.05 and "permutation" in none["test"]
