"""Fits with a named recipe, seed ensembles, age pretraining and the fair chapter's verdict."""

import numpy as np
import pandas as pd
import pytest

from mri3dcnn import fair
from mri3dcnn.cohort import Cohort
from mri3dcnn.crossval import ModelSpec, display_name
from mri3dcnn.splits import iter_folds, make_split_plan
from mri3dcnn.training import FitSpec, Training, _batches, fit_predict, pretrain_trunk
from mri3dcnn.volumes import load_maps


@pytest.fixture(scope="module")
def data(tiny_cohort, tmp_path_factory):
    cohort = Cohort.from_bids(tiny_cohort, ["gm"])
    arrays = load_maps(cohort, ["gm"], 8.0, tmp_path_factory.mktemp("cache"), progress=False)
    plan = make_split_plan(cohort.participants, n_folds=2, seed=0)
    return cohort, arrays, plan


def _fit(data, **spec):
    cohort, arrays, plan = data
    _, train, test, indep = next(iter_folds(plan))
    s = FitSpec(**{"model": "sfcn", "maps": ("gm",), "epochs": 2, "batch_size": 4,
                   "patience": 2, **spec})
    return fit_predict(s, arrays, cohort.labels, cohort.subjects, train, test, indep, 8.0,
                       ages=cohort.participants["age"].to_numpy(float))


def test_the_modern_recipe_is_deterministic_and_ensembles_its_seeds(data):
    a, b = _fit(data, recipe="modern"), _fit(data, recipe="modern")
    np.testing.assert_array_equal(a["predictions"]["score"], b["predictions"]["score"])
    assert [m["seed"] for m in a["info"]["members"]] == [0, 1, 2]
    assert sorted(a["history"]["member"].unique()) == [0, 1, 2]
    plain = _fit(data)
    assert not np.array_equal(a["predictions"]["score"], plain["predictions"]["score"])
    one = _fit(data, recipe="modern", ensemble=1)
    assert "members" not in one["info"] and one["info"]["n_params"] == a["info"]["n_params"]
    assert FitSpec("sfcn", ("gm",), 2, 4, 2, recipe="modern", ensemble=1).as_dict()[
        "ensemble"] == 1


def test_the_default_recipe_keeps_keys_and_predictions(data):
    implicit = FitSpec("sfcn", ("gm",), 2, 4, 2)
    explicit = FitSpec("sfcn", ("gm",), 2, 4, 2, recipe="original", pretrain="none")
    assert implicit.as_dict() == explicit.as_dict()
    assert "recipe" not in implicit.as_dict() and "pretrain" not in implicit.as_dict()
    assert FitSpec("sfcn", ("gm",), 2, 4, 2, recipe="modern").as_dict()["recipe"][
        "name"] == "modern"
    a, b = _fit(data), _fit(data, recipe="original")
    np.testing.assert_array_equal(a["predictions"]["score"], b["predictions"]["score"])
    assert "members" not in a["info"] and "member" not in a["history"]
    key = ModelSpec("c", "sfcn", ("gm",))
    assert "recipe" not in key.fields() and display_name(key.fields()) == "sfcn"
    modern = ModelSpec("c", "sfcn", ("gm",), recipe="modern", pretrain="age").fields()
    assert display_name(modern) == "sfcn-modern-pretrained-age"


def test_bad_recipe_or_pretraining_is_refused():
    with pytest.raises(ValueError, match="recipe"):
        FitSpec("sfcn", ("gm",), 1, 4, 1, recipe="fancy")
    with pytest.raises(ValueError, match="pretrain"):
        FitSpec("sfcn", ("gm",), 1, 4, 1, pretrain="sex")
    with pytest.raises(ValueError, match="ensemble"):
        FitSpec("sfcn", ("gm",), 1, 4, 1, recipe="modern", ensemble=-1)
    with pytest.raises(ValueError, match="inner"):
        FitSpec("sfcn", ("gm",), 1, 4, 1, recipe="modern", protocol="published")


def test_flips_touch_training_batches_only():
    rng = np.random.default_rng(0)
    x = {"gm": rng.standard_normal((16, 6, 5, 4)).astype(np.float32)}
    before = x["gm"].copy()
    y = np.arange(16) % 2
    spec = FitSpec("sfcn", ("gm",), 1, 16, 1, recipe="modern")
    flipped = _batches(x, y, spec, 0, 8.0, Training(None, 1, 16, 1, augment=False,
                                                    flips=True, seeds=(0,)))
    xb, _ = flipped[0]
    idx = flipped.order[:16]
    same = [np.array_equal(xb[i, ..., 0], before[j]) for i, j in enumerate(idx)]
    mirrored = [np.array_equal(xb[i, ..., 0], before[j][::-1]) for i, j in enumerate(idx)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 0 < sum(mirrored) < 16
    np.testing.assert_array_equal(x["gm"], before)  # the arrays validation and test use
    plain = _batches(x, y, FitSpec("sfcn", ("gm",), 1, 16, 1), 0, 8.0)
    xp, _ = plain[0]
    np.testing.assert_array_equal(xp[..., 0], before[plain.order[:16]])


def test_pretraining_is_deterministic_and_moves_the_trunk(data):
    import keras

    from mri3dcnn.models import build

    cohort, arrays, _ = data
    ages = cohort.participants["age"].to_numpy(float)
    spec = FitSpec("sfcn", ("gm",), 2, 4, 2, recipe="modern")
    x = {"gm": arrays["gm"][:16]}
    v = {"gm": arrays["gm"][16:]}
    a = pretrain_trunk(spec, x, ages[:16], v, ages[16:], 8.0)
    b = pretrain_trunk(spec, x, ages[:16], v, ages[16:], 8.0)
    assert a and all(name.startswith("gm_") for name in a)
    assert all(np.array_equal(u, w) for n in a for u, w in zip(a[n], b[n], strict=True))
    keras.utils.set_random_seed(spec.seed)
    fresh = build("sfcn", ["gm"], arrays["gm"].shape[1:], compile=False)
    init = {layer.name: layer.get_weights() for layer in fresh.layers if layer.name in a}
    assert not all(np.array_equal(u, w) for n in a for u, w in zip(a[n], init[n],
                                                                    strict=True))
    keras.backend.clear_session()
    out = _fit(data, recipe="modern", pretrain="age", epochs=1)
    assert out["info"]["timings"]["pretrain_s"] > 0
    with pytest.raises(ValueError, match="age"):
        cohort, arrays, plan = data
        _, train, test, indep = next(iter_folds(plan))
        fit_predict(FitSpec("sfcn", ("gm",), 1, 4, 1, pretrain="age"), arrays, cohort.labels,
                    cohort.subjects, train, test, indep, 8.0)


def _summary(rows):
    return pd.DataFrame([{"model": m, "set": "cv", "accuracy": a, "auc": a} for m, a in rows])


@pytest.mark.parametrize(("cnn", "words"), [(0.80, "**ahead**"), (0.68, "**within 3 points**"),
                                            (0.60, "**not within 3 points**")])
def test_the_verdict_is_computed_from_the_table(cnn, words):
    groups = fair.Groups(linear={"svm_linear": [], "nilearn_decoder": []},
                         faithful={"sequential_2": []},
                         modern={"sfcn-modern": [], "sequential_2-modern": []})
    summary = _summary([("svm_linear", 0.66), ("nilearn_decoder", 0.70),
                        ("sequential_2", 0.5), ("sfcn-modern", cnn),
                        ("sequential_2-modern", 0.55)])
    paired = pd.DataFrame([{"comparison": "recipe", "lever": "recipe",
                            "a": "sequential_2-modern", "b": "sequential_2",
                            "difference": 0.05, "ci_low": -0.1, "ci_high": 0.2,
                            "p_value": 0.4, "n": 24, "test": "corrected t"}])
    text = fair.verdict(summary, paired, groups)
    assert words in text and "nilearn_decoder (0.700)" in text
    assert "Recipe moved accuracy by +5.0 points" in text
    assert "Not measured on this profile: architecture, pretraining" in text
