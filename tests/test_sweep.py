"""The effect-size x cohort-size sweep: one tidy row per cell, model and set."""

import pytest

from mri3dcnn.sweep import sweep


@pytest.mark.slow
def test_sweep_table(tmp_path):
    results = tmp_path / "results"
    table = sweep(scales=(0.0, 2.0), sizes=(60,), grid_mm=10.0, n_folds=2, workdir=tmp_path,
                  results_dir=results)
    assert set(table["model"]) == {"svm_linear", "oracle", "bayes_ceiling"}
    assert set(table["scale"]) == {0.0, 2.0}
    cells = table[table.model == "svm_linear"].set_index(["scale", "set"])
    assert set(cells.index.get_level_values("set")) == {"cv", "independent"}
    assert cells["accuracy"].between(0, 1).all()
    ceiling = table[table.model == "bayes_ceiling"].set_index("scale")["balanced_accuracy"]
    assert ceiling[0.0] == 0.5 and ceiling[2.0] > 0.75
    # the fits landed in the results store, one record per fold and cell, and are reused
    assert len(list(results.glob("sweep/**/record.json"))) == 2 * 2
    stamps = {p: p.stat().st_mtime_ns for p in results.glob("sweep/**/record.json")}
    again = sweep(scales=(0.0, 2.0), sizes=(60,), grid_mm=10.0, n_folds=2, workdir=tmp_path,
                  results_dir=results)
    assert {p: p.stat().st_mtime_ns for p in results.glob("sweep/**/record.json")} == stamps
    assert again.equals(table)
