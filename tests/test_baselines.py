"""SVM baselines: no fitted step sees a held-out subject; features and atlas work offline."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mri3dcnn.atlas import aal_on_grid, region_table
from mri3dcnn.crossval import CHAPTER_SVM, ModelSpec, cross_validate
from mri3dcnn.features import covariates, global_measures, masked_voxels, regional_means
from mri3dcnn.results import ResultsStore
from mri3dcnn.splits import iter_folds, make_split_plan
from mri3dcnn.svm import (
    CovariateAdjuster,
    LinearKernelSVC,
    RBFKernelSVC,
    SklearnFit,
    adjusted_linear_svm,
    fit_predict_sklearn,
    linear_svm,
    weight_map,
)

MARKER = 1e6


class Spy(TransformerMixin, BaseEstimator):
    """Fails if a row carrying the marker reaches fit."""

    def fit(self, X, y=None):
        if np.abs(X).max() >= MARKER:
            raise AssertionError("a held-out subject reached a fitted step")
        return self

    def transform(self, X):
        return X


def _data(n=40, d=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))
    X = rng.standard_normal((n, d))
    X[:, 0] += 4.0 * y
    ids = [f"sub-{i:03d}" for i in range(n)]
    p = pd.DataFrame({"participant_id": ids,
                      "group": np.where(y == 1, "patient", "control"),
                      "site": ["a", "a", "b", "b"] * (n // 4)})
    return X, y, ids, make_split_plan(p, n_folds=3, seed=0)


def test_marker_subject_never_reaches_a_fitted_step(tmp_path):
    X, y, ids, plan = _data()
    for _, train, test, indep in iter_folds(plan):
        for marked in (test[0], indep[0]):
            Xm = X.copy()
            Xm[ids.index(marked), 3] = MARKER
            est = Pipeline([("spy", Spy()), ("svm", SVC(kernel="linear"))])
            out = fit_predict_sklearn(est, Xm, y, ids, train, test, indep)
            assert marked in set(out["predictions"]["participant_id"])
        # the spy does fire when the marker is on a training subject
        Xm = X.copy()
        Xm[ids.index(train[0]), 3] = MARKER
        with pytest.raises(AssertionError, match="held-out"):
            fit_predict_sklearn(Pipeline([("spy", Spy()), ("svm", SVC())]), Xm, y, ids,
                                train, test, indep)


def test_nested_svm_learns_and_is_stored(tmp_path):
    X, y, ids, plan = _data(60)
    store = ResultsStore(tmp_path)
    fit = SklearnFit(lambda: linear_svm((1e-2, 1.0), inner_folds=3), X, y, ids)
    recs = cross_validate(store, ModelSpec(CHAPTER_SVM, "svm_linear", ("gm",)), fit, plan,
                          {"cohort": "x"})
    p = store.predictions(CHAPTER_SVM)
    cv = p[p.set == "cv"]
    assert len(recs) == 3 and len(cv) == 30  # site "b" is the independent set
    assert (cv.pred == cv.y_true).mean() > 0.75
    assert all("best_params" in r.info for r in recs)


def test_weight_map_points_at_the_signal():
    X, y, _, _ = _data(80)
    w = weight_map(linear_svm((1.0,), inner_folds=2), X, y)
    assert w.shape == (X.shape[1],)
    assert np.argmax(np.abs(w)) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("C", [1e-4, 1e-2, 1.0])
def test_gram_svm_is_the_linear_svm(seed, C):
    """The same dual problem: decision values, predictions and weights of
    SVC(kernel="linear"), on more features than subjects as on voxels."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(50) % 2)
    X = rng.standard_normal((50, 300)) + 0.3 * y[:, None] * (np.arange(300) < 20)
    X_test = rng.standard_normal((30, 300))
    ref = SVC(kernel="linear", C=C).fit(X, y)
    gram = LinearKernelSVC(C=C).fit(X, y)
    d_ref, d_gram = ref.decision_function(X_test), gram.decision_function(X_test)
    np.testing.assert_allclose(d_gram, d_ref, rtol=1e-6, atol=1e-6 * np.abs(d_ref).max())
    np.testing.assert_array_equal(gram.predict(X_test), ref.predict(X_test))
    np.testing.assert_allclose(gram.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="binary"):
        LinearKernelSVC().fit(X[:30], np.arange(30) % 3)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("C", [1e-2, 1e2, 1e3])
def test_kernel_matrix_rbf_svm_is_the_rbf_svm(seed, C):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(50) % 2)
    X = rng.standard_normal((50, 300)) + 0.5 * y[:, None] * (np.arange(300) < 20)
    X_test = rng.standard_normal((30, 300)) + 0.5 * (np.arange(300) < 20)
    ref = SVC(kernel="rbf", C=C, gamma="scale").fit(X, y)
    mine = RBFKernelSVC(C=C).fit(X, y)
    d_ref, d_mine = ref.decision_function(X_test), mine.decision_function(X_test)
    np.testing.assert_allclose(d_mine, d_ref, rtol=1e-6, atol=1e-6 * np.abs(d_ref).max())
    np.testing.assert_array_equal(mine.predict(X_test), ref.predict(X_test))


def test_weight_map_is_unchanged_by_the_gram_solver():
    X, y, _, _ = _data(80, d=40)
    reference = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear"))])
    w_ref = weight_map(GridSearchCV(reference, {"svm__C": [1e-2, 1.0]}, cv=StratifiedKFold(
        2, shuffle=True, random_state=0), scoring="balanced_accuracy"), X, y)
    w = weight_map(linear_svm((1e-2, 1.0), inner_folds=2), X, y)
    np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-9)


def test_atlas_offline_and_regional_features(tiny_cohort, tmp_path):
    from mri3dcnn.cohort import Cohort
    from mri3dcnn.volumes import brain_mask, load_maps

    labels, table = aal_on_grid(8.0)
    assert labels.shape == (23, 28, 23) and len(table) > 80
    assert {"Insula_L", "Caudate_R", "Putamen_L"} <= set(table["name"])
    cohort = Cohort.from_bids(tiny_cohort, ["gm", "fa"])
    arrays = load_maps(cohort, ["gm", "fa"], 8.0, tmp_path, progress=False)
    feats, names = regional_means(arrays, ["gm", "fa"], 8.0)
    assert feats.shape == (24, 2 * len(table)) and names[0].startswith("gm:")
    assert masked_voxels(arrays, ["gm", "fa"], brain_mask(8.0)).shape[0] == 24
    # a statistic placed in the left insula ranks that region first
    stat = np.zeros(labels.shape, np.float32)
    insula = table.loc[table.name == "Insula_L", "index"].item()
    stat[labels == insula] = 5.0
    top = region_table(stat, 8.0, top=3)
    assert top.iloc[0]["region"] == "Insula_L" and top.iloc[0]["peak_x"] < 0


def test_decoder_scores_a_subject_without_looking_at_the_others():
    """No statistic of the test set enters a prediction: a subject scored alone or with
    the rest of its set gets the same decision value."""
    from mri3dcnn.svm import DecoderOnArrays

    rng = np.random.default_rng(0)
    mask = np.zeros((6, 6, 6), bool)
    mask[1:5, 1:5, 1:5] = True
    y = np.array([0, 1] * 20)
    X = rng.normal(1.0, 0.2, (40, int(mask.sum()))) + 0.3 * y[:, None]
    dec = DecoderOnArrays(mask, grid_mm=8.0, screening_percentile=100).fit(X[:30], y[:30])
    together = dec.decision_function(X[30:])
    alone = [dec.decision_function(X[i:i + 1])[0] for i in (30, 31)]
    np.testing.assert_allclose(alone, together[:2], rtol=1e-5)
    shifted = dec.decision_function(X[30:] + 0.5)  # a whole set shifted is scored shifted
    assert not np.allclose(shifted, together)
    # the result key (the repr) names the scaling and changes with the mask
    assert "training subjects" in repr(dec)
    other = mask.copy()
    other[0, 0, 0] = True
    assert repr(DecoderOnArrays(other, grid_mm=8.0, screening_percentile=100)) != repr(dec)


def test_grid_edge_flags_a_choice_at_the_grid_boundary():
    from mri3dcnn.svm import grid_edge

    X, y, ids, plan = _data()
    search = linear_svm((1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), inner_folds=3).fit(X, y)
    c = search.best_params_["svm__C"]
    assert grid_edge(search) == ({"svm__C": c} if c in (1e-6, 1e-1) else {})
    edge = linear_svm((1e-6,), inner_folds=3).fit(X, y)  # one value: no edge to speak of
    assert grid_edge(edge) == {}
    _, train, test, indep = next(iter_folds(plan))
    with pytest.warns(UserWarning, match="edge of the search grid"):  # separable: C=100
        out = fit_predict_sklearn(linear_svm((1e2, 1e3), inner_folds=3), X, y, ids, train,
                                  test, indep)
    assert out["info"]["grid_edge"]


def test_covariate_adjustment_is_fitted_on_training_subjects_only():
    """The adjustment removes what the covariate explains on the subjects it was fitted
    on, and a test subject's covariate never changes it."""
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 60, 50)
    feature = 0.05 * age + rng.standard_normal(50)
    X = np.column_stack([age, feature])
    adj = CovariateAdjuster(1).fit(X[:40])
    out = adj.transform(X[:40])
    assert out.shape == (40, 1)
    assert abs(np.corrcoef(age[:40], out[:, 0])[0, 1]) < 1e-10
    X2 = X.copy()
    X2[40:, 0] += 100.0  # held-out subjects' covariates changed
    np.testing.assert_array_equal(CovariateAdjuster(1).fit(X2[:40]).coef_, adj.coef_)
    with pytest.raises(ValueError, match="no feature is left"):
        CovariateAdjuster(2).fit(X)


def test_adjusted_svm_finds_a_difference_hidden_by_a_covariate():
    """A group difference much smaller than the spread age adds: lost without the
    adjustment, found with it, on held-out subjects."""
    rng = np.random.default_rng(1)
    n = 400
    y = np.arange(n) % 2
    age = rng.uniform(18, 70, n)
    feature = 0.1 * (age - 44) - 0.8 * y + 0.4 * rng.standard_normal(n)
    X = np.column_stack([age, feature])
    train = np.arange(300)
    test = np.arange(300, n)
    adjusted = adjusted_linear_svm(1).fit(X[train], y[train])
    naive = linear_svm((1e-2, 1.0, 100.0)).fit(X[train, 1:], y[train])
    acc_adj = (adjusted.predict(X[test]) == y[test]).mean()
    acc_naive = (naive.predict(X[test, 1:]) == y[test]).mean()
    assert acc_adj > 0.75 and acc_adj > acc_naive + 0.1


def test_global_measures_and_covariates(tiny_cohort, tmp_path):
    from mri3dcnn.cohort import Cohort
    from mri3dcnn.volumes import brain_mask, load_maps

    cohort = Cohort.from_bids(tiny_cohort)
    arrays = load_maps(cohort, ["gm", "wm", "fa"], 8.0, tmp_path, progress=False)
    mask = brain_mask(8.0)
    g = global_measures(arrays, ["gm", "fa"], mask)
    assert g.shape == (len(cohort), 2)
    np.testing.assert_allclose(g[:, 1], arrays["fa"][:, mask].mean(axis=1))
    cov, names = covariates(cohort.participants, arrays, mask)
    assert names == ["age", "sex", "log tissue volume"] and cov.shape == (len(cohort), 3)
    assert set(np.unique(cov[:, 1])) <= {0.0, 1.0}
    broken = cohort.participants.astype({"age": object})
    broken.loc[broken.index[0], "age"] = "n/a"
    with pytest.raises(ValueError, match="'age' is missing or not a number"):
        covariates(broken, arrays, mask)
    no_age, names = covariates(cohort.participants.drop(columns="age"), arrays, mask)
    assert names == ["sex", "log tissue volume"]
