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


def test_natural_photographs_get_their_imagenet_class(lite0):
    import tensorflow as tf
    from skimage import data

    images = np.stack([tf.image.resize(img.astype("float32") / 255, (224, 224)).numpy()
                       for img in (data.chelsea(), data.coffee())])
    logits = lite0.predict((images - p2d.IMAGENET_MEAN) / p2d.IMAGENET_STD, verbose=0)
    assert list(logits.argmax(axis=1)) == [285, 967]  # Egyptian cat, espresso


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
