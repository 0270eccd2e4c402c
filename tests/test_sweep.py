"""The effect-size x cohort-size sweep: one tidy row per cell, model and set; fits stored
and read back; cohorts kept; the verdict on where the CNN overtakes the SVMs."""

import matplotlib
import pandas as pd
import pytest

from mri3dcnn import sweep as sw
from mri3dcnn.config import PROFILES, ConfigError, get_profile

matplotlib.use("Agg")

CELL = {"scale": 2.0, "n_subjects": 60}


def _run(tmp, **kw):
    return sw.sweep(scales=kw.pop("scales", (2.0,)), sizes=(60,), grid_mm=10.0, n_folds=2,
                    data_dir=tmp / "data", cache_dir=tmp / "cache",
                    results_dir=tmp / "results", inner_folds=2, **kw)


@pytest.fixture(scope="module")
def one_cell(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    return tmp, _run(tmp)


def test_a_cell_holds_both_svms_with_cv_intervals_and_its_references(one_cell):
    _, res = one_cell
    t = res.table
    assert list(t.columns) == sw.TABLE_COLUMNS
    assert set(t.model) == {"svm_linear", "svm_linear_global", "oracle", "bayes_ceiling"}
    cv = t[(t.set == "cv") & (t.kind == "svm")].set_index("model")
    assert set(cv.index) == set(sw.SVM_FAMILIES)
    # the interval of a cross-validated result is the corrected repeated-CV t-test's
    assert cv["test"].str.startswith("corrected repeated-CV t (2 folds x 1 repeat)").all()
    assert (cv.accuracy_low <= cv.accuracy).all() and (cv.accuracy <= cv.accuracy_high).all()
    indep = t[(t.set == "independent") & (t.kind == "svm")]
    assert indep["test"].str.startswith("subject bootstrap").all()
    ceiling = t[t.model == "bayes_ceiling"].iloc[0]
    assert ceiling.set == "population" and ceiling.accuracy > 0.75
    assert res.comparisons.empty  # no CNN asked for


def test_a_stored_sweep_is_read_back_not_refitted_nor_regenerated(one_cell, monkeypatch):
    tmp, first = one_cell
    records = sorted((tmp / "results").glob("sweep/**/record.json"))
    assert len(records) == 2 * 2  # two SVMs x two folds
    stamps = {p: p.stat().st_mtime_ns for p in records}

    def refuse(*a, **k):
        raise AssertionError("refitted or regenerated")

    monkeypatch.setattr(sw, "generate_cohort", refuse)
    monkeypatch.setattr("mri3dcnn.svm.fit_predict_sklearn", refuse)
    again = _run(tmp)
    assert {p: p.stat().st_mtime_ns for p in records} == stamps
    pd.testing.assert_frame_equal(again.table, first.table)


def test_cell_cohorts_are_named_by_their_settings(one_cell):
    tmp, _ = one_cell
    (folder,) = (tmp / "data").iterdir()
    assert folder.name.startswith("d2-n60-10mm-")
    assert sw.cell_seed(2020, 60) == sw.cell_seed(2020, 60) != sw.cell_seed(2020, 120)


@pytest.mark.slow
def test_the_cnn_runs_on_its_cells_only_and_is_compared_paired(tmp_path):
    res = _run(tmp_path, scales=(0.0, 2.0),
               cnn=sw.CNNSettings(epochs=1, batch_size=8, patience=1),
               cnn_cells=[(2.0, 60)])
    cnn = res.table[res.table.kind == "cnn"]
    assert set(cnn.model) == {"sequential_2"} and set(cnn.scale) == {2.0}
    (row,) = res.comparisons.itertuples()
    assert (row.scale, row.n_subjects, row.cnn) == (2.0, 60, "sequential_2")
    assert row.svm in sw.SVM_FAMILIES
    assert row.test.startswith("corrected repeated-CV t (2 folds x 1 repeat), paired")
    assert row.result == sw.cell_result(row.ci_low, row.ci_high)
    assert sw.verdict(res.comparisons)[0] in ("overtakes", "never", "open")


# --- the verdict ------------------------------------------------------------------------

def _comparisons(*cells):
    return pd.DataFrame([{"scale": s, "n_subjects": n, "cnn": "sequential_2",
                          "svm": "svm_linear_global", "difference": d, "ci_low": lo,
                          "ci_high": hi} for s, n, d, lo, hi in cells],
                        columns=sw.COMPARISON_COLUMNS)


def test_verdict_the_cnn_overtakes():
    c = _comparisons((1.0, 400, 0.02, -0.01, 0.05), (2.0, 400, 0.10, 0.04, 0.16))
    assert sw.verdict(c) == ("overtakes", (
        "The CNN overtakes the SVMs in 1 of the 2 cells it ran on (d x 2, n = 400): at best "
        "by 10.0 points of cross-validated accuracy (95 % CI +4.0 to +16.0) over "
        "svm_linear_global at d x 2, n = 400."))


def test_verdict_the_cnn_never_overtakes():
    c = _comparisons((1.0, 400, -0.10, -0.15, -0.05), (2.0, 400, -0.04, -0.07, -0.01))
    assert sw.verdict(c) == ("never", (
        "The CNN overtakes the SVMs in none of the 2 cells it ran on: the better SVM is "
        "ahead in every one, by at least 4.0 points (95 % CI of CNN minus SVM -7.0 to -1.0 at "
        "d x 2, n = 400)."))


def test_verdict_an_interval_across_zero_leaves_it_open():
    # ahead in accuracy, but not beyond its interval: not overtaking
    c = _comparisons((1.0, 400, 0.03, -0.02, 0.08), (2.0, 400, -0.05, -0.09, -0.01))
    assert sw.verdict(c) == ("open", (
        "The sweep leaves it open: the CNN is ahead with an interval above zero in none of "
        "the 2 cells it ran on, and in 1 (d x 1, n = 400) the interval of CNN minus the "
        "better SVM includes zero; the better SVM is ahead in 1."))


def test_verdict_on_one_cell_names_it():
    assert sw.verdict(_comparisons((2.0, 40, 0.04, -0.8, 0.9))) == ("open", (
        "The sweep leaves it open: in the one cell the CNN ran on (d x 2, n = 40) the "
        "interval of CNN minus the better SVM includes zero."))
    assert sw.verdict(_comparisons((2.0, 40, -0.2, -0.3, -0.1)))[1].startswith(
        "The CNN does not overtake the SVMs in the one cell it ran on: the better SVM is "
        "ahead there, by at least 20.0 points")


def test_verdict_without_cnn_cells_says_it_was_not_tested():
    assert sw.verdict(_comparisons()) == ("not tested", (
        "The CNN ran on no cell of this sweep, so it says nothing about where a 3D CNN "
        "overtakes the SVMs."))


# --- profiles and the figure --------------------------------------------------------------

def test_profiles_run_the_cnn_on_cells_of_their_own_grid():
    assert sw.cnn_cells(PROFILES["tiny"]) == [(2.0, 40)]
    assert sw.cnn_cells(PROFILES["quick"]) == [(2.0, 300)]
    full = PROFILES["full"]
    assert len(sw.cnn_cells(full)) == len(full.sweep_scales) * len(full.sweep_sizes)
    assert "on 1 cell(s): d x 2, n = 300." in sw.sweep_description(
        PROFILES["quick"])


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sweep_sizes", [40, 2], r"sweep_sizes must be at least 4 subjects each, got \[40, 2\]"),
    ("sweep_scales", [-1.0], r"sweep_scales must be 0 or more"),
    ("sweep_grid_mm", 0, "sweep_grid_mm must be positive"),
    ("sweep_cnn_sizes", [40.5], r"sweep_cnn_sizes\[0\] must be an integer"),
])
def test_sweep_settings_are_checked(key, value, message):
    with pytest.raises(ConfigError, match=message):
        get_profile({"extends": "tiny", key: value})


def _table():
    rows = []
    for scale in (0.5, 2.0):
        for n in (100, 400):
            for model, kind, acc in (("svm_linear", "svm", 0.6), ("sequential_2", "cnn", 0.55)):
                rows.append({"scale": scale, "n_subjects": n, "model": model, "kind": kind,
                             "set": "cv", "accuracy": acc, "accuracy_low": acc - 0.1,
                             "accuracy_high": acc + 0.1})
            rows += [{"scale": scale, "n_subjects": n, "model": "oracle", "kind": "reference",
                      "set": "cv", "accuracy": 0.7},
                     {"scale": scale, "n_subjects": n, "model": "bayes_ceiling",
                      "kind": "reference", "set": "population", "accuracy": 0.8}]
    return pd.DataFrame(rows).reindex(columns=sw.TABLE_COLUMNS)


def test_the_figure_has_a_panel_per_scale_and_the_table_a_row_per_cell():
    from mri3dcnn import plots

    fig = plots.sweep_accuracy(_table())
    assert [ax.get_title() for ax in fig.axes] == ["every d x 0.5", "every d x 2"]
    labels = fig.legends[0].get_texts()
    assert {t.get_text() for t in labels} == {"sequential_2", "svm_linear", "oracle",
                                             "Bayes ceiling"}
    wide = plots.sweep_table(_table())
    assert wide.shape == (4, 4) and list(wide.columns[-2:]) == ["oracle", "bayes_ceiling"]
    assert wide.loc[(2.0, 400), "svm_linear"] == "0.600 [0.500, 0.700]"
