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
profile = "quick"
cohort_dir = None
results_dir = None
models = ["inception_resnet_1", "inception_resnet_2"]
map_sets = None  # default: the profile's map sets

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.models import build
from mri3dcnn.stats import SUMMARY_COLUMNS
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
models = list(models)
map_sets = [tuple(m) for m in (map_sets or prof.cnn_map_sets)]
display(Markdown(study.training_description(models, map_sets)))
published = build("inception_resnet_2", ["gm"], study.mask.shape, published_wiring=True,
                  compile=False)
display(Markdown(f"Inception_resnet_2 as published (head on the first block): "
                 f"{published.count_params():,} parameters, the same as Inception_resnet_1."))

# %%
res = study.cnn_chapter(models, map_sets)

# %% [markdown]
# ## Learning curves
# Each line is one fold; validation loss is measured on training subjects held out for
# selection, never on the test fold.

# %%
fig = plots.learning_curves(res["histories"])
plt.show()
display(res["fits"])

# %% [markdown]
# ## Per fold, against chance and the oracle

# %%
display(res["per_fold"].round(3))
fig = plots.fold_metrics(res["per_fold"], study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Pooled over folds, with 95 % bootstrap confidence intervals

# %%
display(res["summary"][SUMMARY_COLUMNS].round(3))
if study.oracle_accuracy is not None:
    display(Markdown(f"Oracle accuracy on this cohort: **{study.oracle_accuracy:.3f}**."))
