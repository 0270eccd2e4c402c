"""The bundled EfficientNet-Lite0 weights are really ImageNet's, read without PyTorch."""

import numpy as np
import pytest

from mri3dcnn import pretrained2d as p2d
from mri3dcnn.torchpickle import read_torch_legacy


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    return p2d.imagenet_lite0(tmp_path_factory.mktemp("weights"))


def test_state_dict_reads_without_torch():
    state = read_torch_legacy(p2d.lite0_weights_file())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_stem.weight"].dtype == np.float32


#: Lite0's top-5 ImageNet classes and probabilities under (x - 127) / 128, computed once
#: with the bundled weights (285 Egyptian cat, 282 tiger cat, 281 tabby; 967 espresso,
#: 968 cup). Under torchvision's mean/s.d. the espresso gets p 0.82 instead.
REFERENCE = {"chelsea": [(285, 0.7890), (282, 0.1004), (281, 0.0694), (287, 0.0091),
                         (728, 0.0009)],
             "coffee": [(967, 0.9124), (968, 0.0362), (504, 0.0095), (925, 0.0094),
                        (809, 0.0052)]}


def test_photographs_match_the_reference_top5(lite0):
    table = p2d.photo_predictions(lite0)
    for photo, ref in REFERENCE.items():
        got = table[table["photo"] == photo].sort_values("rank")
        assert got["class"].tolist() == [c for c, _ in ref]
        np.testing.assert_allclose(got["probability"], [p for _, p in ref], atol=0.005)


def test_each_backbone_gets_its_own_preprocessing():
    import keras

    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(p2d.preprocess("efficientnet_lite0", pixels),
                               (pixels - 127) / 128)
    for name, module in (("vgg16", keras.applications.vgg16),
                         ("resnet50", keras.applications.resnet50),
                         ("inceptionv3", keras.applications.inception_v3)):
        np.testing.assert_allclose(p2d.preprocess(name, pixels),
                                   module.preprocess_input(pixels.copy()), rtol=1e-6)
    assert not np.allclose(p2d.preprocess("vgg16", pixels),
                           p2d.preprocess("inceptionv3", pixels))
    with pytest.raises(ValueError, match="Unknown backbone"):
        p2d.preprocess("alexnet", pixels)


def test_feature_key_changes_with_what_changes_the_features(tmp_path):
    a = tmp_path / "a.h5"
    a.write_bytes(b"weights one")
    b = tmp_path / "b.h5"
    b.write_bytes(b"weights two")
    key = p2d.feature_settings("vgg16", ["gm"], 3, a)
    assert key["preprocessing"] == p2d.PREPROCESSING["vgg16"]
    assert key != p2d.feature_settings("vgg16", ["gm"], 3, b)  # other weights
    assert key != p2d.feature_settings("resnet50", ["gm"], 3, a)  # other preprocessing
    assert key != p2d.feature_settings("vgg16", ["gm"], 5, a)  # other slicing
    assert key != p2d.feature_settings("vgg16", ["fa"], 3, a)  # other intensity range
    assert key == p2d.feature_settings("vgg16", ["gm"], 3, a)


def test_conversion_is_cached(tmp_path, lite0):
    a = p2d.imagenet_lite0(tmp_path)
    assert list(tmp_path.glob("efficientnet_lite0-*.weights.h5"))
    b = p2d.imagenet_lite0(tmp_path)  # loads the cached Keras weights
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_slices_and_features(lite0):
    import keras

    vol = np.random.default_rng(0).random((23, 28, 23)).astype(np.float32)
    sl = p2d.slice_stack(vol, n_per_axis=3)
    assert len(sl) == 9 and sl[0].shape == (28, 23) and sl[-1].shape == (23, 28)
    imgs = p2d.to_images(sl, (0.0, 1.0))
    assert imgs.shape == (9, 224, 224, 3)
    assert imgs.min() >= 0 and 200 < imgs.max() <= 255  # camera pixel values
    features = keras.Model(lite0.input, lite0.get_layer("pool").output)
    f = p2d.subject_features(features, vol[None], "gm", n_per_axis=3)
    assert f.shape == (1, 3 * 1280) and np.isfinite(f).all()


def test_missing_keras_weights_say_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet50_weights_tf_dim_ordering"):
        p2d.keras_backbone("resnet50", tmp_path / "absent.h5")
    with pytest.raises(ValueError, match="Unknown backbone"):
        p2d.keras_backbone("alexnet")


def test_keras_backbone_loads_a_local_weights_file(tmp_path):
    """The keras.applications path: weights come from a file on disk, never a download."""
    import keras

    keras.utils.set_random_seed(0)
    src = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg")
    path = tmp_path / "resnet50_notop.weights.h5"
    src.save_weights(path)
    net = p2d.keras_backbone("resnet50", path)
    assert net.output.shape[-1] == 2048
    np.testing.assert_array_equal(net.get_weights()[0], src.get_weights()[0])
