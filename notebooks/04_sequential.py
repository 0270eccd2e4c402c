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
# # 4. 3D CNNs from scratch: the Sequential family
#
# The study's simplest family: one, two or three blocks of a 3x3x3 convolution (32
# filters) and 3x3x3 max-pooling, then Dense(128), Dropout(0.5) and a two-unit sigmoid
# output, trained with Adadelta (learning rate 1.0, as Keras 2 defaulted to) on binary
# cross-entropy, with no batch normalisation and no regulariser, as published.
#
# One thing differs from the published notebooks, on purpose: the epoch kept is chosen on a
# validation split of the **training subjects only**, with early stopping. The original
# kept the epoch with the best accuracy on the held-out fold itself, which selects the
# model on its test data; chapter 7 measures what that costs. Voxel-wise intensity
# normalisation is fitted on the training subjects of each fold.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
models = None  # default: the profile's Sequential depths
map_sets = None  # default: the profile's map sets

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.stats import SUMMARY_COLUMNS
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
models = list(models or prof.sequential_models)
map_sets = [tuple(m) for m in (map_sets or prof.cnn_map_sets)]
display(Markdown(study.training_description(models, map_sets)))

# %%
res = study.cnn_chapter(models, map_sets)

# %% [markdown]
# ## Learning curves
# Training loss falls steadily while validation loss, on subjects the model never trains
# on, turns up once the network starts to memorise: the epoch kept is the one before.

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
