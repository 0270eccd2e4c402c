"""On cohorts with no effect, the book's decisions keep their 5 % level, and the check has
the power to see a test that does not (the fixed-model bootstrap of pooled CV rows)."""

import importlib.util
from pathlib import Path

import pytest

from mri3dcnn.synthetic import read_truth

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"


@pytest.fixture(scope="module")
def calibration():
    spec = importlib.util.spec_from_file_location("calibration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_null_cohort_has_no_planted_effect(calibration, tmp_path):
    root = calibration.null_cohort(tmp_path / "null", 12, seed=0, grid_mm=12.0)
    regions = read_truth(root)["effects"]["regions"]
    assert regions and all(r["d"] == 0 for r in regions)


def test_binomial_tolerance(calibration):
    assert calibration.binomial_tolerance(100) == 13  # P(X > 13 | 100, 0.05) < 0.001
    assert calibration.binomial_tolerance(18) == 5


@pytest.mark.slow
def test_decisions_on_null_cohorts_keep_their_level(calibration):
    # ten repeats, as the full profile: the reference counts each subject ten times
    d = calibration.run(list(range(8)), n=48, grid_mm=10.0, folds=3, repeats=10,
                        permutations=0, n_boot=200,
                        pipelines=("SVM, voxels", "SVM, regional means"))
    reference = d["test"].str.contains("reference")
    below = d["decision"].str.contains("below chance")  # CV's known bias, not a claim
    for (decision, test), g in d[~reference & ~below].groupby(["decision", "test"]):
        tolerance = calibration.binomial_tolerance(len(g), calibration.nominal_rate(decision))
        assert g["positive"].sum() <= tolerance, (decision, test)
    # the same check catches the interval that ignores training and counts repeats
    naive = d[reference & d["decision"].str.contains("CI above|CI below")]
    trials = len(naive) // 2  # one interval per seed and pipeline, read on both sides
    assert naive["positive"].sum() > calibration.binomial_tolerance(trials)
    table = calibration.calibration_table(d)
    assert set(table.columns) >= {"decision", "test", "rate", "ci_low", "ci_high", "nominal"}
