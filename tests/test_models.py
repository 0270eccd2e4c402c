"""Parameter counts on the original 61x73x61 grid, computed independently of Keras."""

import numpy as np
import pytest

from mri3dcnn.models import MODERN_FAMILIES, ORIGINAL_FAMILIES, build

GRID = (61, 73, 61)


def conv(k, cin, cout):
    return int(np.prod(k)) * cin * cout + cout


def pooled(shape, n):
    for _ in range(n):
        shape = tuple(s // 3 for s in shape)  # pool 3, stride 3, valid
    return int(np.prod(shape))


def module(cin):
    towers = 4 * conv(1, cin, 32)  # three 1x1x1 reductions/projections + the 1x1x1 tower
    factorised = 3 * conv(3, 32, 32) + 3 * conv(5, 32, 32)
    return towers + factorised


def expected(name):
    if name.startswith("sequential"):
        d = int(name[-1])
        convs = conv(27, 1, 32) + (d - 1) * conv(27, 32, 32)
        return convs + (32 * pooled(GRID, d)) * 128 + 128 + 128 * 2 + 2
    head = conv(1, 128, 32) + 32 * pooled(GRID, 1) * 2 + 2
    stem = conv(27, 1, 32)
    if name == "inception_1":
        return stem + module(32) + head
    if name == "inception_2":
        return stem + module(32) + module(128) + head
    if name == "inception_resnet_1":
        return stem + conv(1, 32, 128) + module(32) + head
    if name == "inception_resnet_2":
        return stem + conv(1, 32, 128) + module(32) + module(128) + head
    raise KeyError(name)


@pytest.mark.parametrize("name", ORIGINAL_FAMILIES)
def test_parameter_counts(name):
    assert build(name, ["gm"], GRID, compile=False).count_params() == expected(name)


def test_sequential_2_matches_the_hand_count():
    # 896 + 27,680 + 1,179,776 + 258 on the 61x73x61 grid
    assert expected("sequential_2") == 1_208_610


def test_published_resnet_2_equals_resnet_1():
    pub = build("inception_resnet_2", ["gm"], GRID, published_wiring=True, compile=False)
    assert pub.count_params() == expected("inception_resnet_1")


def test_branch_and_channel_fusion():
    grid = (23, 28, 23)
    branch = build("sequential_2", ["gm", "wm", "fa"], grid)
    assert len(branch.inputs) == 3
    single = build("sequential_2", ["gm"], grid)
    convs = conv(27, 1, 32) + conv(27, 32, 32)
    flat = 32 * pooled(grid, 2)
    assert single.count_params() == convs + flat * 128 + 128 + 258
    assert branch.count_params() == 3 * convs + 3 * flat * 128 + 128 + 258
    channel = build("sequential_2", ["gm", "wm", "fa"], grid, fusion="channel")
    assert len(channel.inputs) == 1 and channel.inputs[0].shape[-1] == 3
    assert channel.count_params() == single.count_params() + 2 * 27 * 32


def test_unknown_names():
    with pytest.raises(ValueError, match="Unknown model"):
        build("resnet50", ["gm"], GRID)
    with pytest.raises(ValueError, match="Unknown fusion"):
        build("sequential_1", ["gm"], GRID, fusion="late")


# --- the modern nets, counted from their layer definitions -------------------------------
# SFCN: pooled blocks conv3x3x3 (+bias) + BN (4 numbers per channel: scale, offset, moving
# mean and variance), then conv1x1x1 + BN, then the 1x1x1 classifier onto 2 classes.
# ResNet: bias-free convolutions, each followed by BN; a basic block is two 3x3x3 convs and,
# where the width or stride changes, a 1x1x1 projection.
PAPER_SFCN = [32, 64, 128, 256, 256]
GRIDS = {"tiny": (23, 28, 23), "quick": (31, 37, 31), "full": GRID}


def bn(c):
    return 4 * c


def n_halvings(grid):
    """Halvings of the smallest side (floor) that keep at least 3 voxels, at most 5."""
    n, side = 0, min(grid)
    while n < 5 and side // 2 >= 3:
        side, n = side // 2, n + 1
    return n


def expected_sfcn(grid, n_maps=1, channel_fusion=False):
    widths = PAPER_SFCN[:n_halvings(grid)]
    branch, cin = 0, (n_maps if channel_fusion else 1)
    for c in widths:
        branch += conv(27, cin, c) + bn(c)
        cin = c
    branch += conv(1, cin, 64) + bn(64)
    branches = 1 if channel_fusion else n_maps
    return branches * branch + conv(1, 64 * branches, 2)


def expected_resnet(grid, cin=1):
    widths = PAPER_SFCN[:n_halvings(grid)]
    total = 27 * cin * widths[0] + bn(widths[0])  # stem
    prev = widths[0]
    for c in widths:
        total += 27 * prev * c + bn(c) + 27 * c * c + bn(c)
        if c != prev:
            total += prev * c + bn(c)
        prev = c
    return total + conv(1, prev, 2)


def test_halvings_of_the_study_grids():
    assert [n_halvings(g) for g in GRIDS.values()] == [2, 3, 4]


@pytest.mark.parametrize("profile", sorted(GRIDS))
def test_sfcn_parameter_count(profile):
    grid = GRIDS[profile]
    assert build("sfcn", ["gm"], grid, compile=False).count_params() == expected_sfcn(grid)


def test_sfcn_on_the_study_grid_by_hand():
    # 3 mm: 4 pooled blocks 32-64-128-256, the 64-channel 1x1x1 block and the head
    assert expected_sfcn(GRID) == (896 + 128 + 55_360 + 256 + 221_312 + 512 + 884_992 + 1024
                                   + 16_448 + 256 + 130)


@pytest.mark.parametrize("profile", sorted(GRIDS))
def test_resnet3d_parameter_count(profile):
    grid = GRIDS[profile]
    assert build("resnet3d", ["gm"], grid, compile=False).count_params() == expected_resnet(grid)


@pytest.mark.parametrize("name", ["sfcn", "resnet3d"])
def test_modern_nets_end_in_a_softmax_over_two_classes(name):
    model = build(name, ["gm"], GRIDS["tiny"])
    x = np.random.default_rng(0).standard_normal((3, *GRIDS["tiny"], 1)).astype("float32")
    p = model.predict(x, verbose=0)
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_modern_fusion():
    grid = GRIDS["tiny"]
    branch = build("sfcn", ["gm", "wm", "fa"], grid)
    assert len(branch.inputs) == 3
    assert branch.count_params() == expected_sfcn(grid, n_maps=3)
    channel = build("sfcn", ["gm", "wm", "fa"], grid, fusion="channel")
    assert channel.inputs[0].shape[-1] == 3
    assert channel.count_params() == expected_sfcn(grid, n_maps=3, channel_fusion=True)
    res = build("resnet3d", ["gm", "wm"], grid, fusion="channel")
    assert res.count_params() == expected_resnet(grid, cin=2)


def test_a_grid_too_small_to_pool_is_refused():
    with pytest.raises(ValueError, match="too small to pool"):
        build("sfcn", ["gm"], (5, 6, 5))


def test_each_family_compiles_with_its_own_recipe_or_the_one_given():
    import keras

    grid = GRIDS["tiny"]
    assert isinstance(build("sequential_2", ["gm"], grid).optimizer, keras.optimizers.Adadelta)
    assert isinstance(build("sfcn", ["gm"], grid).optimizer, keras.optimizers.AdamW)
    seq = build("sequential_2", ["gm"], grid, recipe="modern", steps_per_epoch=4, epochs=5)
    assert isinstance(seq.optimizer, keras.optimizers.AdamW)


def test_the_registry_holds_both_kinds():
    assert set(MODERN_FAMILIES) == {"sfcn", "resnet3d"}
    assert len(ORIGINAL_FAMILIES) == 7


def _bn_pair(axis: int, **kwargs):
    import keras

    from mri3dcnn.models.batchnorm import FusedBatchNormalization

    init = {"gamma_initializer": "random_normal", "beta_initializer": "random_normal"}
    keras.utils.set_random_seed(0)
    ref = keras.layers.BatchNormalization(axis=axis, **init, **kwargs)
    fused = FusedBatchNormalization(axis=axis, **init, **kwargs)
    return ref, fused


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("kwargs", [{}, {"scale": False, "center": False}])
def test_fused_batch_norm_is_keras_batch_norm(axis, kwargs):
    """Same outputs, gradients and moving statistics as Keras' layer, over three training
    steps then inference, in both layouts; only the summation order differs."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (3, 4, 9, 10, 5)).astype("float32")
    ref, fused = _bn_pair(axis, **kwargs)
    ref.build(x.shape)
    fused.build(x.shape)
    fused.set_weights(ref.get_weights())
    assert fused._fused_format(tf.constant(x), None) == ("NDHWC" if axis == -1 else "NCDHW")
    for step in range(3):
        xs = tf.constant(x + step)
        dy = tf.constant(rng.normal(size=x.shape).astype("float32"))
        out = []
        for layer in (ref, fused):
            with tf.GradientTape() as tape:
                tape.watch(xs)
                y = layer(xs, training=True)
                loss = tf.reduce_sum(y * dy)
            grads = tape.gradient(loss, [xs, *layer.trainable_variables])
            out.append((y.numpy(), [g.numpy() for g in grads]))
        np.testing.assert_allclose(out[1][0], out[0][0], atol=1e-5)
        for g_fused, g_ref in zip(out[1][1], out[0][1], strict=True):
            np.testing.assert_allclose(g_fused, g_ref, rtol=1e-4, atol=1e-4)
    for w_fused, w_ref in zip(fused.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(w_fused, w_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused(x, training=False), ref(x, training=False), atol=1e-5)


def test_fused_batch_norm_falls_back_to_keras_where_the_kernel_does_not_apply():
    import tensorflow as tf

    ref, fused = _bn_pair(-1, epsilon=1e-6)  # below the kernel's bound
    x = tf.constant(np.random.default_rng(1).normal(size=(4, 6, 3)).astype("float32"))
    assert fused._fused_format(x, None) is None  # rank 3, and epsilon
    _, other = _bn_pair(2)
    assert other._fused_format(tf.zeros((2, 3, 4, 5, 6)), None) is None  # not a channel axis
    ref.build(x.shape)
    fused.build(x.shape)
    fused.set_weights(ref.get_weights())
    np.testing.assert_allclose(fused(x, training=True), ref(x, training=True), atol=1e-6)


@pytest.mark.parametrize("name", ["sfcn", "resnet3d"])
def test_modern_nets_normalise_with_the_fused_layer_and_reload(name, tmp_path):
    import keras

    model = build(name, ["gm"], (31, 37, 31), compile=False)
    norms = [layer for layer in model.layers if "Normalization" in type(layer).__name__]
    assert norms and all(type(n).__name__ == "FusedBatchNormalization" for n in norms)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(2, 31, 37, 31, 1)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
