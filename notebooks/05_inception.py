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
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
models = ["inception_1", "inception_2"]  # Inception families to train
map_sets = None  # lists of maps, one model each; None: the profile's map sets

# %%
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
display(Markdown(study.training_description(models, map_sets)))

# %% [markdown]
# ## Learning curves, per fold and pooled
# Each line is one fold; validation loss is measured on training subjects held out for
# selection, never on the test fold; {numref}`tbl-inception-fits` gives each fit's kept
# epoch. Then the metrics per fold against chance and the oracle
# ({numref}`tbl-inception-folds`), and pooled over folds with 95 % intervals
# ({numref}`tbl-inception-summary`: corrected CV t-test; bootstrap on the independent
# site).

# %%
res = study.cnn_chapter(models, map_sets)
plots.show_cnn_results(res, study.oracle_accuracy, "inception")
