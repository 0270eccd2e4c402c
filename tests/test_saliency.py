"""Saliency methods on a model whose answer is known, and the localisation scores."""

import numpy as np
import pytest

from mri3dcnn import saliency as sal

GRID = (10, 12, 10)


@pytest.fixture(scope="module")
def toy():
    """A model whose patient score depends only on the voxels of one cube."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    region = np.zeros(GRID, bool)
    region[2:5, 3:6, 2:5] = True
    weights = region.astype("float32")[..., None]
    inp = keras.Input((*GRID, 1), name="gm")
    h = layers.Conv3D(2, 1, name="gm_conv", kernel_initializer="ones")(inp)
    h = layers.Lambda(lambda t: t * weights, name="gm_region")(h)
    h = layers.GlobalAveragePooling3D()(h)
    out = layers.Dense(2, activation="sigmoid", kernel_initializer="ones")(h)
    model = keras.Model(inp, out)
    x = {"gm": np.random.default_rng(0).standard_normal((3, *GRID)).astype("float32")}
    return model, x, region


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients",
                                    "occlusion"])
def test_methods_find_the_region(toy, method):
    model, x, region = toy
    brain = np.ones(GRID, bool)
    out = sal.compute(method, model, x, ["gm"], brain)["gm"]
    assert out.shape == (3, *GRID)
    score = sal.localization(np.abs(out).mean(axis=0), region, brain)
    assert score["auc"] > 0.95, score
    if method != "occlusion":  # the cube straddles the region's edges
        assert score["top1pct_inside"] == 1.0


def test_gradcam_shape_and_sign(toy):
    model, x, _ = toy
    cam = sal.gradcam(model, x, ["gm"])["gm"]
    assert cam.shape == (3, *GRID) and (cam >= 0).all()


def test_localization_chance_and_perfect():
    rng = np.random.default_rng(0)
    truth = np.zeros(GRID, bool)
    truth[:3] = True
    brain = np.ones(GRID, bool)
    perfect = sal.localization(truth.astype(float) + 0.01 * rng.random(GRID), truth, brain)
    assert perfect["auc"] == 1.0 and perfect["top1pct_inside"] == 1.0
    noise = sal.localization(rng.random(GRID), truth, brain)
    assert 0.35 < noise["auc"] < 0.65
    assert noise["chance_share"] == pytest.approx(truth.mean())


def test_randomisation_check_changes_the_maps(toy):
    import keras

    from mri3dcnn.models import build

    _, x, _ = toy
    keras.utils.set_random_seed(1)
    model = build("sequential_1", ["gm"], GRID)
    before = [w.copy() for w in model.get_weights()]
    brain = np.ones(GRID, bool)
    rand = sal.randomisation_check(model, x, ["gm"], ["gradient", "gradcam"], brain)
    assert set(rand.columns) >= {"method", "layers_randomised", "rank_correlation"}
    assert rand.layers_randomised.max() == 3  # conv, dense128, output: all checkpoints
    last = rand[rand.layers_randomised == 3]
    assert (last.rank_correlation < 0.9).all(), last
    for a, b in zip(before, model.get_weights(), strict=True):  # trained weights restored
        np.testing.assert_array_equal(a, b)


def test_unknown_method(toy):
    model, x, _ = toy
    with pytest.raises(ValueError, match="Unknown saliency method"):
        sal.compute("lime", model, x, ["gm"])


def test_sanity_rule_is_the_named_threshold():
    """A method passes only when both correlations stay under the documented threshold."""
    t = sal.SANITY_MAX_CORRELATION
    assert 0 < t < 1
    assert sal.passes_sanity(t - 0.01, -0.2)
    assert not sal.passes_sanity(t, 0.0)  # at the threshold is not below it
    assert not sal.passes_sanity(0.1, t + 0.2)


def test_sanity_checks_table(toy):
    model, x = toy[:2]
    mask = np.ones(x["gm"].shape[1:], bool)
    rand = sal.randomisation_check(model, x, ["gm"], ["gradient"], mask, n_steps=2)
    table = sal.sanity_checks(model, x, model, x, ["gm"], ["gradient"], mask, rand)
    row = table.iloc[0]
    assert row["r vs shuffled-label model"] == pytest.approx(1.0)  # the same model
    assert not row["passes"]


def test_localisation_table_scores_each_family_and_method():
    brain = np.ones((6, 6, 6), bool)
    planted = {"r": np.zeros((6, 6, 6), bool)}
    planted["r"][1:3, 1:3, 1:3] = True
    assert sal.localisation_table({}, {}, brain, 8.0).empty
    good = planted["r"].astype(np.float32) + 0.01
    group = {"fam": {"gradient": {"gm": good}, "gradcam": {"gm": 1 - good}}}
    from unittest import mock

    top = sal.pd.DataFrame({"planted": ["r"], "atlas_region": ["x"], "in_top5": [True]})
    with mock.patch.object(sal, "planted_in_top_regions", return_value=top):
        loc = sal.localisation_table(group, planted, brain, 8.0)
    assert loc.set_index("method").loc["gradient", "auc"] == 1.0
    assert loc.set_index("method").loc["gradcam", "auc"] == 0.0
    assert (loc["planted_in_top5_regions"] == 1.0).all()
