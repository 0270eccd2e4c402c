"""Training: deterministic, leakage-free selection, resumable through the store."""

import numpy as np
import pytest

from mri3dcnn.cohort import Cohort
from mri3dcnn.crossval import ModelSpec, cross_validate
from mri3dcnn.preprocessing import Normaliser, augment_batch
from mri3dcnn.results import ResultsStore
from mri3dcnn.splits import iter_folds, make_split_plan
from mri3dcnn.training import CNNFit, FitSpec, fit_predict
from mri3dcnn.volumes import load_maps


@pytest.fixture(scope="module")
def data(tiny_cohort, tmp_path_factory):
    cohort = Cohort.from_bids(tiny_cohort, ["gm", "fa"])
    arrays = load_maps(cohort, ["gm", "fa"], 8.0, tmp_path_factory.mktemp("cache"),
                       progress=False)
    plan = make_split_plan(cohort.participants, n_folds=2, seed=0)
    return cohort, arrays, plan


def _fit(data, **spec):
    cohort, arrays, plan = data
    fold, train, test, indep = next(iter_folds(plan))
    s = FitSpec(**{"model": "sequential_1", "maps": ("gm",), "epochs": 2, "batch_size": 4,
                   "patience": 2, **spec})
    return fit_predict(s, arrays, cohort.labels, cohort.subjects, train, test, indep, 8.0)


def test_same_seed_same_predictions(data):
    a, b = _fit(data), _fit(data)
    np.testing.assert_array_equal(a["predictions"]["score"], b["predictions"]["score"])
    c = _fit(data, seed=1)
    assert not np.array_equal(a["predictions"]["score"], c["predictions"]["score"])


def test_predictions_cover_test_and_independent_only(data):
    cohort, _, plan = data
    fold, train, test, indep = next(iter_folds(plan))
    p = _fit(data)["predictions"]
    assert sorted(p[p.set == "cv"].participant_id) == sorted(test)
    assert sorted(p[p.set == "independent"].participant_id) == sorted(indep)
    assert not set(p.participant_id) & set(train)
    assert ((p.score >= 0) & (p.score <= 1)).all()
    assert (p.pred == (p.score > 0.5)).all()


def test_multimodal_branch_and_channel(data):
    for fusion in ("branch", "channel"):
        out = _fit(data, maps=("gm", "fa"), fusion=fusion, epochs=1)
        assert len(out["predictions"]) > 0


def test_published_protocol_selects_on_the_test_fold(data):
    inner = _fit(data)["info"]
    published = _fit(data, protocol="published")["info"]
    cohort, _, plan = data
    _, train, test, _ = next(iter_folds(plan))
    assert published["n_val"] == len(test) and published["n_train"] == len(train)
    assert inner["n_train"] + inner["n_val"] == len(train)
    with pytest.raises(ValueError, match="protocol"):
        FitSpec("sequential_1", ("gm",), 1, 4, 1, protocol="test-set")
    with pytest.raises(ValueError, match="variant"):
        FitSpec("sequential_1", ("gm",), 1, 4, 1, variant="shuffled")


def test_published_protocol_never_stops_early(data):
    """EarlyStopping with patience = epochs runs every epoch, as the published code did,
    and keeps the epoch with the best validation accuracy."""
    out = _fit(data, protocol="published", epochs=4, patience=1)
    hist = out["history"]
    assert out["info"]["epochs_run"] == 4
    assert out["info"]["best_epoch"] == int(hist["val_accuracy"].idxmax()) + 1


def test_inner_protocol_keeps_the_lowest_validation_loss(data):
    out = _fit(data, epochs=4, patience=1)
    hist = out["history"]
    assert out["info"]["best_epoch"] == int(hist["val_loss"].idxmin()) + 1
    assert out["info"]["epochs_run"] <= out["info"]["best_epoch"] + 1


def test_normaliser_uses_training_subjects_only():
    arrays = {"gm": np.stack([np.full((2, 2, 2), v, np.float32) for v in (0, 2, 100)])}
    norm = Normaliser().fit(arrays, np.array([0, 1]))
    np.testing.assert_allclose(norm.mean_["gm"], 1.0)
    out = norm.transform(arrays, np.array([2]))["gm"]
    assert float(out.min()) > 50  # the outlier subject did not shape the scaling


def test_augmentation_keeps_shape_and_changes_content():
    rng = np.random.default_rng(0)
    vol = np.zeros((1, 20, 24, 20), np.float32)
    vol[0, 5:15, 6:18, 5:15] = 1.0
    out = augment_batch({"gm": vol, "fa": vol * 2}, rng, grid_mm=3.0)
    assert out["gm"].shape == vol.shape
    assert not np.array_equal(out["gm"], vol)
    np.testing.assert_allclose(out["fa"], 2 * out["gm"], atol=1e-5)  # one transform per subject


def test_cross_validation_resumes(data, tmp_path):
    cohort, arrays, plan = data
    store = ResultsStore(tmp_path)
    fit = CNNFit(FitSpec("sequential_1", ("gm",), 1, 4, 1), arrays, cohort.labels,
                 cohort.subjects, 8.0)
    key = ModelSpec("t", "sequential_1", ("gm",))
    first = cross_validate(store, key, fit, plan, {"cohort": "x"})
    # remove one fold's record, as if the run had been killed before it
    import shutil

    shutil.rmtree(first[1].path)
    again = cross_validate(store, key, fit, plan, {"cohort": "x"})
    assert again[0].info["created"] == first[0].info["created"]  # reused, not retrained
    np.testing.assert_array_equal(again[1].predictions["score"], first[1].predictions["score"])
    assert (again[1].path / "model.keras").exists()


def test_progress_bar_is_silent_off_a_terminal(capsys):
    """pytest captures stderr, as papermill and log files do: no bar may be drawn."""
    from mri3dcnn.training import _callbacks

    stop, bar = _callbacks(FitSpec("sequential_1", ("gm",), 3, 4, 1), "fit")
    assert bar.epoch_bar.disable
    assert stop.restore_best_weights and stop.patience == 1 and stop.monitor == "val_loss"
    published = _callbacks(FitSpec("sequential_1", ("gm",), 3, 4, 1, protocol="published"),
                           "fit")[0]
    assert published.monitor == "val_accuracy" and published.patience == 3


def test_traced_fit_is_the_inner_fit_run_to_the_end_with_the_test_fold_traced(data):
    """Same seed, same inner split: the traced run repeats the inner run's epochs, runs
    every epoch, keeps the lowest validation loss, and its trace at that epoch is exactly
    what the record stores."""
    _, _, plan = data
    _, _, test, _ = next(iter_folds(plan))
    inner = _fit(data, epochs=4, patience=1)
    traced, again = _fit(data, protocol="traced", epochs=4, patience=1), \
        _fit(data, protocol="traced", epochs=4, patience=1)
    hist, info = traced["history"], traced["info"]
    assert info["epochs_run"] == 4 and inner["info"]["epochs_run"] < 4
    assert (info["n_train"], info["n_val"]) == (inner["info"]["n_train"],
                                                inner["info"]["n_val"])
    ran = inner["info"]["epochs_run"]
    np.testing.assert_array_equal(hist["val_loss"][:ran], inner["history"]["val_loss"])
    assert info["best_epoch"] == int(hist["val_loss"].idxmin()) + 1
    trace = traced["trace"]
    assert sorted(trace["epoch"].unique()) == [1, 2, 3, 4]
    assert (trace.groupby("epoch")["participant_id"].apply(sorted) == [sorted(test)] * 4).all()
    kept = trace[trace.epoch == info["best_epoch"]].set_index("participant_id")
    cv = traced["predictions"].query("set == 'cv'").set_index("participant_id")
    np.testing.assert_array_equal(kept.loc[cv.index, "score"], cv["score"])
    np.testing.assert_array_equal(kept.loc[cv.index, "pred"], cv["pred"])
    np.testing.assert_array_equal(trace["score"], again["trace"]["score"])
    assert "trace" not in inner


def test_traced_callbacks_run_every_epoch_on_the_validation_loss():
    from mri3dcnn.training import _callbacks

    stop = _callbacks(FitSpec("sequential_1", ("gm",), 7, 4, 1, protocol="traced"), "fit")[0]
    assert stop.monitor == "val_loss" and stop.patience == 7 and stop.restore_best_weights
    with pytest.raises(ValueError, match="inner"):
        FitSpec("sfcn", ("gm",), 1, 4, 1, recipe="modern", protocol="traced")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_half_and_predicts_in_float32(data, tmp_path, precision):
    """The layers compute in the policy's half type, the outputs and weights stay float32,
    the global policy is back to float32 after the fit, and a float32 fit keeps its key."""
    import keras
    import tensorflow as tf

    if precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ValueError, match="mixed_float16 needs a GPU.*use mixed_bfloat16"):
            _fit(data, precision=precision)
        return
    out = _fit(data, precision=precision)
    out["artifacts"](tmp_path)
    model = keras.models.load_model(tmp_path / "model.keras")
    half = precision.split("_")[1]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv3D"]
    assert convs and all(layer.compute_dtype == half for layer in convs)
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.layers[-1].compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
    scores = out["predictions"]["score"]
    assert scores.between(0, 1).all() and scores.nunique() > 1
    assert "precision" not in FitSpec("sequential_1", ("gm",), 2, 4, 2).as_dict()
    assert FitSpec("sequential_1", ("gm",), 2, 4, 2, precision=precision).as_dict()[
        "precision"] == precision
    with pytest.raises(ValueError, match="precision must be one of"):
        FitSpec("sequential_1", ("gm",), 2, 4, 2, precision="float16")
