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
# # 9. A fair chance for 3D CNNs
#
# The study's claim is that 3D CNNs trained from scratch beat an SVM. When the faithful
# families lose, a reviewer's first question is whether they were trained well. This
# chapter puts the best of each side on the same folds: the five original families as
# published (chapters 4-6, read back from the results store, not retrained); SFCN (Peng et
# al., Med Image Anal 2021) and a small 3D ResNet trained with a **modern recipe** (AdamW,
# warm-up and cosine decay, label smoothing, affine augmentation plus left-right flips,
# early stopping on the inner validation split, an ensemble of seeds); an original
# family trained with the same modern recipe, which separates architecture from training;
# optionally a modern net **pretrained** to tell older from younger subjects (no diagnosis
# used) before it learns the diagnosis; and the linear SVM and nilearn's Decoder of
# chapter 2.
#
# Which models run depends on the profile: `quick` trains one modern net (SFCN) with the
# modern recipe, one seed and a short schedule, to fit the book's time budget; `full`
# runs the whole comparison with the recipe's three seeds.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
faithful = None  # original families as published; None: those of chapters 4-6
modern = None  # modern nets, modern recipe; None: the profile's fair_modern
modern_recipe_originals = None  # original families, modern recipe; None: fair_originals
pretrained = None  # modern nets pretrained on age; None: the profile's fair_pretrained

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
res = study.fair_cnn_chapter(faithful, modern, modern_recipe_originals, pretrained)
display(Markdown(res["description"]))

# %% [markdown]
# ## What the comparison concludes
# The sentence below is computed from the tables that follow: whether the best modern 3D
# CNN comes within 3 points of the best linear model's cross-validated accuracy or ahead
# of it, and how far each lever (recipe, architecture, pretraining) moved accuracy on the
# same subjects.

# %%
display(Markdown(res["verdict"]))

# %% [markdown]
# ## Accuracy and AUC, with 95 % bootstrap intervals
# Cross-validation predictions pooled over folds, and the independent site scored by the
# average of the fold models ({numref}`tbl-fair-summary`, {numref}`fig-fair-models`).

# %%
display(table(plots.summary_table(res["summary"]), "The faithful families, the CNNs trained "
              "the modern way and the linear models, pooled over folds (`cv`: corrected "
              "repeated-CV t-test) and on the independent site (subject bootstrap), with 95 % "
              "intervals.", "tbl-fair-summary"))

# %% mystnb={"figure": {"caption": "Cross-validated and independent-site accuracy of the faithful families, the CNNs trained the modern way and the linear models, with 95 % intervals; the dashed line marks chance and the dotted line the oracle.", "name": "fig-fair-models"}}
fig = plots.model_forest(res["summary"], "accuracy", study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Paired comparisons
# Accuracy of `a` minus accuracy of `b` on the same subjects and folds, with a 95 %
# interval and p-value from the corrected repeated cross-validation t-test (which accounts
# for the overlap of training sets between folds): the best CNN trained the modern way
# against the best linear model and the best faithful family, then each lever on its own
# ({numref}`tbl-fair-paired`).

# %%
display(table(res["paired"], "Accuracy of `a` minus accuracy of `b` on the same subjects and "
              "folds, with the 95 % interval and p-value of the corrected repeated-CV t-test.",
              "tbl-fair-paired", digits=3, drop=["test"]))

# %% [markdown]
# ## Learning curves of the modern fits
# One line per fold and ensemble member; with early stopping, the curves end where the
# validation loss stopped improving for the recipe's patience.

# %% mystnb={"figure": {"caption": "Training and validation loss of the CNNs trained the modern way, one line per fold and ensemble member.", "name": "fig-fair-curves"}}
fig = plots.learning_curves(res["histories"])
plt.show()

# %% [markdown]
# ## Cost
# Parameters on one map, training seconds per fold (every ensemble member and any
# pretraining included), training samples per second and epochs run, on this machine
# ({numref}`tbl-fair-cost`).

# %%
display(table(res["cost"], "Each CNN's parameters on one map, ensemble members, training "
              "seconds per fold, training samples per second and epochs run.",
              "tbl-fair-cost", digits=1))
