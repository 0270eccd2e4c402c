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
# # 2. The classic baseline: SVMs on handcrafted features
#
# Before any deep network, the question every reviewer asks: what does a support vector
# machine on voxel-based-morphometry features reach on the same folds? Features are the
# masked voxels of each map (as in the study), all maps concatenated (the multimodal SVM),
# the mean of each map in each region of an offline atlas, AAL2 {cite:p}`rolls2015`, and
# the four whole-brain measures on which large case-control studies find their most
# reliable effects (mean grey matter, white matter, FA and MD), adjusted for age, sex and
# head size as those studies adjust them. The adjustment is a regression fitted on the
# training subjects of each fold, inside the Pipeline; the voxel and regional SVMs are
# not adjusted, as in the study.
# Every fitted step (scaling, optional ANOVA screening, the choice of C) sits in one
# scikit-learn {cite:p}`pedregosa2011` Pipeline fitted on training subjects only, with C
# chosen by an inner cross-validation (nested CV). A classifier that predicts from class
# frequencies draws the chance line, and nilearn's `Decoder` {cite:p}`abraham2014` on the
# same grey-matter maps and folds is the cross-check.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
maps = ["gm", "wm", "fa", "md"]  # maps compared one by one and concatenated

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.atlas import ATLAS_NAME
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
svm = study.svm_chapter(maps)
display(Markdown(svm["description"]))

# %% [markdown]
# ## Pooled over folds, with 95 % intervals
# `cv`: each subject predicted by the models that did not train on it, with an interval
# from the corrected repeated-CV t-test on the fold scores; `independent`: the held-out
# site, scored by the fold models' mean score, with a bootstrap over subjects.
# {numref}`tbl-svm-summary` gives the numbers (`p_permutation` is the label-permutation test
# of the next section) and {numref}`fig-svm-models` sets every variant against the oracle.

# %% mystnb={"figure": {"caption": "Balanced accuracy of every SVM variant and the chance classifier, pooled over folds (cross-validation) and on the independent site, with 95 % intervals (corrected CV t-test; subject bootstrap on the independent site); the dashed line marks chance and the dotted line the oracle.", "name": "fig-svm-models"}}
display(table(plots.summary_table(svm["summary"]), "Every SVM variant and the chance "
              "classifier pooled over folds (`cv`: corrected repeated-CV t-test, with `p "
              "chance` for balanced accuracy above 0.5) and on the independent site (subject "
              "bootstrap), with 95 % intervals.", "tbl-svm-summary"))
fig = plots.model_forest(svm["summary"], "balanced_accuracy", study.oracle_accuracy)
plt.show()
display(Markdown(svm["cross_check"]))

# %% [markdown]
# ## Better than chance: the whole pipeline against permuted labels
# The t-test's `p_chance` treats fold scores as roughly normal. The label-permutation test
# {cite:p}`ojala2010` assumes only that subjects of one site are exchangeable when the
# diagnosis carries no information: it shuffles the labels within each site and fold (so
# every shuffled run keeps the real numbers of patients per site and fold), reruns the
# whole pipeline (scaling, the inner choice of C, the fit) on the same folds, and counts
# how often a shuffled run scores at least the observed mean balanced accuracy. That count
# gives `p_permutation` in the table above, and its `test` column names the procedure
# behind each number. {numref}`fig-svm-permutation` shows each model's shuffled scores
# (grey) and its real score (red); the chance classifier learns nothing and is not
# permuted.

# %% mystnb={"figure": {"caption": "The label-permutation null distribution of every SVM pipeline: mean balanced accuracy over the CV folds with labels shuffled within site and fold (grey), the real score (red line) and chance (dashed).", "name": "fig-svm-permutation"}}
fig = plots.permutation_nulls(svm["permutation"])
plt.show()

# %% [markdown]
# ## Per fold
# {numref}`fig-svm-folds` shows how much one fold's score varies around the pooled one.

# %% mystnb={"figure": {"caption": "The grey-matter linear SVM and the chance classifier fold by fold.", "name": "fig-svm-folds"}}
fig = plots.fold_metrics(svm["per_fold"], study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Where the linear SVM looks
# The grey-matter SVM refitted on all cross-validation subjects (never the independent
# site), its weights mapped back into the brain. Weights of a linear model mix signal and
# noise suppression, so they are a description, not a test ({numref}`fig-svm-weights`);
# {numref}`tbl-svm-regions` lists the regions with the largest mean absolute weight with
# their peak coordinates.

# %% mystnb={"figure": {"caption": "Weights of the linear SVM on grey matter, refitted on all cross-validation subjects and scaled to their largest magnitude: slices (top) and glass brain (bottom).", "name": "fig-svm-weights"}}
weights = study.svm_weights("gm")
fig = plots.stat_map(weights["weights"], weights["background"], study.grid_mm,
                     "linear SVM weights (grey matter)", threshold=0.3)
plt.show()
display(table(weights["regions"], "Atlas regions with the largest mean absolute SVM "
              "weight (scaled to the largest weight), the peak weight and its MNI "
              "coordinates in mm.", "tbl-svm-regions"))
display(Markdown(f"Atlas: {ATLAS_NAME}."))

# %% [markdown]
# The same weights in three dimensions: click to move through the brain.

# %%
from mri3dcnn.views import interactive_map

interactive_map(weights["weights"], weights["background"], study.grid_mm, "SVM weights")
