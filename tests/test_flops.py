"""FLOP counts of convolutions and dense layers, against hand counts."""


from mri3dcnn.models import build
from mri3dcnn.models.flops import _valid_taps, model_flops


def test_taps_on_padding_are_not_counted():
    assert _valid_taps(5, 3, 3, 1, "valid") == 9
    assert _valid_taps(5, 5, 3, 1, "same") == 13  # one tap off each edge
    assert _valid_taps(61, 31, 3, 2, "same") == 91  # TensorFlow pads 1 before, 1 after
    assert _valid_taps(8, 4, 2, 2, "valid") == 8


def test_a_small_model_by_hand():
    import keras
    from keras import layers

    x = keras.Input((5, 5, 5, 1))
    h = layers.Conv3D(4, 3, padding="same")(x)
    h = layers.Conv3D(2, 1)(h)
    out = layers.Dense(3)(layers.Flatten()(h))
    f = model_flops(keras.Model(x, out))
    conv1 = 2 * 13**3 * 1 * 4 + 125 * 4
    conv2 = 2 * 125 * 4 * 2 + 125 * 2
    dense = 2 * 250 * 3 + 3
    assert f["forward"] == conv1 + conv2 + dense
    assert f["weight_grad"] == f["forward"]
    # no input gradient for the layer reading the model input
    assert f["input_grad"] == 2 * 125 * 4 * 2 + 2 * 250 * 3
    assert f["train"] == f["forward"] + f["weight_grad"] + f["input_grad"]


def test_every_branch_skips_its_first_input_gradient():
    grid = (23, 28, 23)
    one = model_flops(build("sequential_2", ["gm"], grid, compile=False))
    two = model_flops(build("sequential_2", ["gm", "wm"], grid, compile=False))
    # two branches double everything up to Dense(128), which the branches share: its bias
    # and the Dense(2) output are counted once
    head = 2 * 128 * 2
    assert two["forward"] - 2 * one["forward"] == -(128 + head + 2)
    assert two["input_grad"] - 2 * one["input_grad"] == -head
