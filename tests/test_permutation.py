"""The label-permutation test of a whole pipeline, as chapters 2 and 3 run it: stored
beside the model's records, read back, resumed after an interruption, and joined to the
chapter's summary."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import mri3dcnn.stats as stats
from mri3dcnn.crossval import CHAPTER_SVM
from mri3dcnn.study import Study

N = 19


@pytest.fixture(scope="module")
def study(tiny_cohort, tmp_path_factory):
    return Study.open({"extends": "tiny", "n_permutations": N}, tiny_cohort,
                      tmp_path_factory.mktemp("perm") / "results", maps=("gm",))


def _model(study, signal: float, seed: int = 0, family: str = "svm_linear"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((len(study.ids), 6)) + signal * study.y[:, None]
    return study.sklearn(CHAPTER_SVM, family, ["gm"], LogisticRegression, X,
                         f"fixture {signal} {seed}")


@pytest.fixture
def fits(monkeypatch):
    """Counts the cross-validations the permutation test runs; `fail_after` interrupts."""
    calls = {"n": 0, "fail_after": None}
    real = stats.cv_fold_scores

    def counted(*args, **kwargs):
        if calls["fail_after"] is not None and calls["n"] >= calls["fail_after"]:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(stats, "cv_fold_scores", counted)
    return calls


def test_stored_test_is_read_back_not_recomputed(study, fits):
    model = _model(study, 3.0)
    first = study.permutation_test(model)
    assert fits["n"] == N + 1  # the observed score, then every permutation
    assert first["p_value"] == pytest.approx(1 / (N + 1))  # a planted signal: the minimum
    assert study.store.permutation_path(study.permutation_key(model)).exists()
    again = study.permutation_test(model)
    assert fits["n"] == N + 1
    assert again["null"] == first["null"] and again["p_value"] == first["p_value"]
    assert again["n_permutations"] == N and again["seed"] == study.profile.seed


def test_interrupted_test_resumes_where_it_stopped(study, fits):
    model = _model(study, 0.0, seed=1)
    fits["fail_after"] = 7
    with pytest.raises(KeyboardInterrupt):
        study.permutation_test(model)
    path = study.store.permutation_path(study.permutation_key(model))
    assert not path.exists() and path.with_suffix(".partial.json").exists()
    fits["fail_after"], fits["n"] = None, 0
    resumed = study.permutation_test(model)
    assert fits["n"] == N + 1 - 7  # only what the interrupted run had not done
    assert not path.with_suffix(".partial.json").exists()
    path.unlink()  # the same test from scratch draws the same permutations
    fits["n"] = 0
    fresh = study.permutation_test(model)
    assert fits["n"] == N + 1 and fresh["null"] == resumed["null"]
    assert fresh["score"] == resumed["score"]


def test_null_fixture_p_is_not_systematically_small(study):
    p = [study.permutation_test(_model(study, 0.0, seed=s))["p_value"] for s in range(10, 16)]
    assert np.mean(p) > 0.25 and min(p) > 1 / (N + 1)


def test_summary_carries_the_permutation_p_and_names_each_test(study):
    planted, chance = _model(study, 3.0), _model(study, 3.0, family="chance")
    for m in (planted, chance):
        study.cross_validate(m)
    tests = study.permutation_tests([planted, chance])
    assert list(tests["model"]) == ["svm_linear"]  # the chance line is never permuted
    preds = study.predictions(CHAPTER_SVM)
    preds = preds[preds.features == "fixture 3.0 0"]
    summary = stats.with_permutation_tests(stats.summarise(preds, n_boot=50), tests)
    assert set(stats.SUMMARY_COLUMNS) <= set(summary.columns)
    cv = summary.set_index(["model", "set"])
    assert cv.loc[("svm_linear", "cv"), "p_permutation"] == pytest.approx(1 / (N + 1))
    assert "label permutation of the whole pipeline (19 within site and first-repeat fold)" in cv.loc[("svm_linear", "cv"), "test"]
    assert "corrected repeated-CV t" in cv.loc[("svm_linear", "cv"), "test"]
    assert pd.isna(cv.loc[("chance", "cv"), "p_permutation"])
    assert "permutation" not in cv.loc[("chance", "cv"), "test"]
    assert pd.isna(cv.loc[("svm_linear", "independent"), "p_permutation"])
    stored = study.stored_permutation_tests(set(preds["hash"]))  # what chapter 9 joins
    assert list(stored.p_value) == [pytest.approx(1 / (N + 1))]


def test_a_cnn_is_permuted_as_its_chapter_trains_it(tiny_cohort, tmp_path, monkeypatch):
    """A CNN's test trains the network again on every fold for every permutation, with
    the permuted labels, at the profile's own count for CNNs; the profile's count for
    pipelines does not apply, and the family chapter's summary carries the p-value."""
    import mri3dcnn.training as training

    study = Study.open({"extends": "tiny", "n_permutations": 19, "n_permutations_cnn": 2,
                        "epochs": 1}, tiny_cohort, tmp_path / "results", maps=("gm",))
    seen = []
    real = training.CNNFit.fit_predict

    def spy(self, unit):
        seen.append(self.y.copy())
        return real(self, unit)

    monkeypatch.setattr(training.CNNFit, "fit_predict", spy)
    model = study.cnn("sequential_2", ("gm",))
    res = study.permutation_test(model)
    folds = study.profile.n_folds
    assert res["n_permutations"] == 2 and len(res["null"]) == 2
    assert len(seen) == 3 * folds  # the observed labels, then each permutation, every fold
    assert np.array_equal(seen[0], study.y) and not np.array_equal(seen[folds], study.y)
    assert res["p_value"] in (1 / 3, 2 / 3, 1.0)
    chapter = study.cnn_chapter(["sequential_2"])
    assert chapter["summary"].loc[chapter["summary"]["set"] == "cv", "p_permutation"].notna().all()
