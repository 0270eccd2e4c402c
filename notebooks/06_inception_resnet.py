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
# # 6. The residual inception families: Inception_resnet_1 and Inception_resnet_2
#
# Inception_resnet_1 adds the inception module to a 1x1x1 projection of its input, scaled
# by 0.3 as in Inception-ResNet, with no activation after the sum. Inception_resnet_2
# stacks a second residual block with an identity shortcut.
#
# **A bug in the published code.** In the published Inception_resnet_2, the head reads the
# output of the *first* residual block, so the second block is computed and thrown away and
# the built model is Inception_resnet_1 under another name. This book builds the intended
# model (head on the second block); the published wiring stays available as
# `build("inception_resnet_2", ..., published_wiring=True)`, and the parameter counts below
# show the difference.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
map_sets = None  # lists of maps, one model each; None: the profile's map sets
models = ["inception_resnet_1", "inception_resnet_2"]  # families to train

# %%
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.models import build
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
published = build("inception_resnet_2", ["gm"], study.mask.shape, published_wiring=True,
                  compile=False)
display(Markdown(f"{study.training_description(models, map_sets)} Inception_resnet_2 as "
                 f"published (head on the first block): {published.count_params():,} "
                 "parameters, the same as Inception_resnet_1."))

# %% [markdown]
# ## Learning curves, per fold and pooled
# As in chapter 5: one line per fold, validation loss on held-out training subjects, and
# each fit's kept epoch ({numref}`tbl-inception-resnet-fits`); then the metrics per fold
# ({numref}`tbl-inception-resnet-folds`) and pooled over folds, with 95 % intervals
# ({numref}`tbl-inception-resnet-summary`: corrected CV t-test; bootstrap on the
# independent site).

# %%
res = study.cnn_chapter(models, map_sets)
plots.show_cnn_results(res, study.oracle_accuracy, "inception-resnet")
