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
# # 5. The inception families: Inception_1 and Inception_2
#
# A convolution and pooling block, then one (Inception_1) or two (Inception_2) 3D inception
# modules: four parallel towers (a 1x1x1 convolution; factorised 3x3x3 and 5x5x5
# convolutions, each as three one-dimensional kernels; and max-pooling followed by a
# 1x1x1 convolution), concatenated into 128 channels. A 1x1x1 convolution to 32 channels,
# Dropout(0.5) and the two-unit sigmoid output close the network; there is no Dense(128).
#
# Training and selection are those of chapter 4: epochs chosen on training subjects only.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
models = ["inception_1", "inception_2"]
map_sets = None  # default: the profile's map sets

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.stats import SUMMARY_COLUMNS
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
models = list(models)
map_sets = [tuple(m) for m in (map_sets or prof.cnn_map_sets)]
display(Markdown(study.training_description(models, map_sets)))

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
