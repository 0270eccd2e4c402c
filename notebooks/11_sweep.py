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
# (sweep)=
# # When would a 3D CNN win? Effect size and cohort size, by simulation
#
# The study compares its models on one cohort, with effects of one size. Whether a 3D CNN
# trained from scratch should beat a linear SVM depends on both: how large the group
# differences are and how many subjects there are to learn them from. A simulation can
# answer what one cohort cannot. This appendix generates a fresh synthetic cohort for every
# cell of a grid, each with every planted Cohen's d of the default cohort multiplied by a
# scale (1 is the cohort of the other chapters), at several cohort sizes, and
# cross-validates on each, on folds made like the study's: the linear SVM on grey-matter
# voxels, the linear SVM on the four whole-brain means adjusted for age, sex and head size
# (the only model of chapter 2 clearly above chance on the default cohort), and a 3D CNN
# on the cells the profile can afford. Each cell's **oracle** (a logistic regression given
# the true region means, on the cell's folds) and **Bayes ceiling** (an ideal observer of
# those means, over the population) say how much there was to find.
#
# Every fit lands in the results store like those of the other chapters, so the appendix
# re-renders without refitting, and a sweep that was stopped resumes. Cohorts are generated
# once and kept under `data/sweep/`.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # the study's cohort (the sweep makes its own); None: the synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
res = study.sweep_chapter()
display(Markdown(res["description"]))

# %% [markdown]
# ## Where the CNN overtakes the SVMs
# The sentence below is computed from the paired comparisons further down: in each cell
# the CNN ran on, its cross-validated accuracy minus that of the better of the two SVMs on
# the same folds, with a 95 % interval from the corrected repeated-CV t-test. A cell
# counts for the CNN only when that interval lies above zero.

# %%
display(Markdown(res["text"]))

# %% [markdown]
# ## Accuracy across the grid
# {numref}`fig-sweep-accuracy` draws cross-validated accuracy against cohort size, one
# panel per effect scale, with 95 % intervals from the corrected repeated-CV t-test on the
# fold scores (an interval that includes the variance of training, not only of the test
# subjects); {numref}`tbl-sweep-accuracy` gives the same numbers.

# %% mystnb={"figure": {"caption": "Cross-validated accuracy against cohort size, one panel per scale of every planted effect: the SVMs and the CNN with 95 % intervals (corrected repeated-CV t-test), the oracle on the same folds (dotted), the Bayes ceiling (dashed) and chance (grey).", "name": "fig-sweep-accuracy"}}
fig = plots.sweep_accuracy(res["table"])
plt.show()

# %%
display(table(plots.sweep_table(res["table"]), "Cross-validated accuracy of every model in "
              "every cell, with its 95 % interval (corrected repeated-CV t-test).",
              "tbl-sweep-accuracy"))

# %% [markdown]
# ## The CNN against the better SVM, cell by cell
# Accuracy of the CNN minus that of the better SVM of its cell (chosen by cross-validated
# accuracy), paired on the same folds, with the corrected repeated-CV t-test
# ({numref}`tbl-sweep-cnn`).

# %%
display(table(res["comparisons"], "The CNN minus the better SVM of its cell, in "
              "cross-validated accuracy, with the 95 % interval and p-value of the corrected "
              "repeated-CV t-test paired on folds.", "tbl-sweep-cnn", digits=3,
              ci_of="difference", drop=("test", "n")))

# %% [markdown]
# ## Every model and set
# Cross-validation rows carry the corrected repeated-CV t-test interval and the one-sided
# p-value of balanced accuracy above chance; independent-site rows a subject bootstrap with
# the fold models fixed. The oracle and the Bayes ceiling are reference lines, not tested
# ({numref}`tbl-sweep-all`).

# %%
display(table(res["table"], "Every model, cell and set: accuracy with its 95 % interval "
              "(cross-validation: corrected repeated-CV t-test; independent site: subject "
              "bootstrap, fold models fixed), balanced accuracy, AUC and the p-value of "
              "balanced accuracy above chance.", "tbl-sweep-all", digits=3,
              drop=("test", "kind")))
