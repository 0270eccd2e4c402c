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
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
models = list(models)
map_sets = [tuple(m) for m in (map_sets or prof.cnn_map_sets)]
grid = study.mask.shape
display(Markdown(
    f"Models {', '.join(models)} on map sets "
    f"{', '.join('+'.join(m) for m in map_sets)}; grid {'x'.join(map(str, grid))} "
    f"({study.grid_mm:g} mm); up to {prof.epochs} epochs, batch {prof.batch_size}, early "
    f"stopping after {prof.patience} epochs without a lower validation loss; "
    f"augmentation {'on' if prof.augment else 'off'}; {prof.n_folds}-fold CV x "
    f"{prof.n_repeats} repeat(s)."
))
display({m: f"{build(m, ['gm'], grid, compile=False).count_params():,} parameters"
         for m in models})
published = build("inception_resnet_2", ["gm"], grid, published_wiring=True, compile=False)
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
cols = ["model", "maps", "set", "n", "accuracy", "accuracy_low", "accuracy_high",
        "balanced_accuracy", "sensitivity", "specificity", "auc", "auc_low", "auc_high"]
display(res["summary"][cols].round(3))
if study.oracle_accuracy is not None:
    display(Markdown(f"Oracle accuracy on this cohort: **{study.oracle_accuracy:.3f}**."))
