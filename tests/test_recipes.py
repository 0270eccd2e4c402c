"""Training recipes: their Keras objects, the left-right flip, and seeded determinism."""

import numpy as np
import pytest

from mri3dcnn.config import study_grid
from mri3dcnn.recipes import RECIPES, Recipe, flip_lr, get_recipe


def test_the_original_recipe_is_the_studys():
    import keras

    r = get_recipe("original")
    opt = r.optimizer(steps_per_epoch=10, epochs=5)
    assert isinstance(opt, keras.optimizers.Adadelta)
    assert float(opt.learning_rate) == 1.0 and opt.rho == 0.95
    assert isinstance(r.loss(), keras.losses.BinaryCrossentropy)
    assert r.weight_decay == 0 and r.label_smoothing == 0 and not r.flips
    assert r.callbacks(patience=5) == []  # every epoch runs
    assert r.seeds(7) == (7,)


def test_the_modern_recipe_builds_its_parts():
    import keras

    r = get_recipe("modern")
    opt = r.optimizer(steps_per_epoch=10, epochs=20)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == r.weight_decay > 0
    loss = r.loss()
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    (stop,) = r.callbacks(patience=6)
    assert isinstance(stop, keras.callbacks.EarlyStopping)
    assert stop.monitor == "val_loss" and stop.patience == 6 and stop.restore_best_weights
    assert r.flips and r.augment and len(r.seeds(0)) == 3 == len(set(r.seeds(0)))


def test_warm_up_then_cosine_decay():
    r = get_recipe("modern")
    sched = r.learning_rate_schedule(steps_per_epoch=10, epochs=20)
    lr = np.array([float(sched(s)) for s in (0, 10, 20, 110, 199)])
    assert lr[0] == 0.0 and lr[1] == pytest.approx(r.learning_rate / 2)
    assert lr[2] == pytest.approx(r.learning_rate)  # end of the 2-epoch warm-up
    assert lr[2] > lr[3] > lr[4] and lr[4] < 0.01 * r.learning_rate
    assert r.learning_rate_schedule() == r.learning_rate  # no data size yet: constant peak


def test_bad_recipes_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Recipe(name="x", optimizer_name="lion", learning_rate=1e-3)
    with pytest.raises(ValueError, match="Unknown recipe"):
        get_recipe("fancy")
    with pytest.raises(ValueError, match="patience"):
        RECIPES["modern"].callbacks()


def test_flip_lr_mirrors_mni_x_about_the_midline():
    affine, grid = study_grid(6.0)
    vol = np.zeros(grid, dtype=np.float32)
    ijk = np.round(np.linalg.solve(affine, [30.0, -18.0, 12.0, 1.0])[:3]).astype(int)
    vol[tuple(ijk)] = 1.0
    batch = {"gm": np.stack([vol, vol]), "wm": np.stack([2 * vol, 2 * vol])}
    rng = np.random.default_rng(0)
    out = flip_lr(batch, rng, axis=0, p=1.0)
    where = np.argwhere(out["gm"][0])[0]
    mni = affine @ np.r_[where, 1.0]
    np.testing.assert_allclose(mni[:3], [-30.0, -18.0, 12.0])  # left <-> right, y z kept
    np.testing.assert_array_equal(out["wm"], 2 * out["gm"])  # every map alike
    assert batch["gm"][0][tuple(ijk)] == 1.0  # the input is untouched


def test_flip_lr_flips_about_half_the_subjects_and_keeps_channels():
    x = np.random.default_rng(1).standard_normal((200, 5, 4, 3, 2))
    out = flip_lr(x, np.random.default_rng(2), axis=0)
    flipped = [np.array_equal(o, xi[::-1]) for o, xi in zip(out, x, strict=True)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 70 < sum(flipped) < 130


def _seeded_fit(seed: int) -> list[np.ndarray]:
    import keras

    from mri3dcnn.models import build
    from mri3dcnn.training import configure_tensorflow

    configure_tensorflow()
    _, grid = study_grid(8.0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, *grid)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(24) % 2]
    recipe = get_recipe("modern")
    x = flip_lr(x, rng)[..., None]
    keras.utils.set_random_seed(seed)
    model = build("sfcn", ["gm"], grid, recipe=recipe, steps_per_epoch=3, epochs=2)
    model.fit(x[:18], y[:18], validation_data=(x[18:], y[18:]), batch_size=6, epochs=2,
              callbacks=recipe.callbacks(patience=1), verbose=0, shuffle=True)
    weights = model.get_weights()
    keras.backend.clear_session()
    return weights


def test_a_seeded_modern_fit_is_deterministic():
    a, b, c = _seeded_fit(3), _seeded_fit(3), _seeded_fit(4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))
