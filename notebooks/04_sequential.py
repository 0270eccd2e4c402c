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
# model on its test data, a leak common in the literature {cite:p}`wen2020`; chapter 7
# measures what that costs. The models are built with Keras {cite:p}`chollet2015keras` on
# TensorFlow {cite:p}`abadi2016`. Voxel-wise intensity
# normalisation is fitted on the training subjects of each fold.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
models = None  # Sequential families to train; None: the profile's depths
map_sets = None  # lists of maps, one model each; None: the profile's map sets

# %%
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
models = models or list(study.profile.sequential_models)
display(Markdown(study.training_description(models, map_sets)))

# %% [markdown]
# ## Learning curves, per fold and pooled
# Training loss falls steadily while validation loss, on subjects the model never trains
# on, turns up once the network starts to memorise: the epoch kept is the one before.
# Below the curves: each fit's kept epoch ({numref}`tbl-sequential-fits`), the metrics per
# fold against chance and the oracle ({numref}`tbl-sequential-folds`), and the metrics
# pooled over folds with 95 % intervals ({numref}`tbl-sequential-summary`: corrected
# CV t-test; bootstrap on the independent site).

# %%
res = study.cnn_chapter(models, map_sets)
plots.show_cnn_results(res, study.oracle_accuracy, "sequential")
