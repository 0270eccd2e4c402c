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
# # 2. The classic baseline: an SVM on grey-matter voxels
#
# Before any deep network, the question every reviewer asks: what does a linear support
# vector machine on the masked grey-matter voxels (voxel-based morphometry features) reach
# on the same folds? The C parameter is chosen by an inner cross-validation inside each
# training set (nested CV), and scaling is fitted on training subjects only, all inside one
# scikit-learn Pipeline. A classifier that predicts from class frequencies alone draws the
# chance line.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.evaluation import per_fold_metrics, summarise
from mri3dcnn.study import Study
from mri3dcnn.svm import chance, linear_svm, masked_voxels, run_sklearn_cv

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
X = masked_voxels(study.arrays(["gm"]), ["gm"], study.mask)
display(Markdown(f"{X.shape[0]} subjects x {X.shape[1]} grey-matter voxels; "
                 f"{prof.n_folds}-fold CV x {prof.n_repeats} repeat(s); C from "
                 f"{list(prof.svm_C)} by inner {prof.svm_inner_folds}-fold CV."))

# %%
models = {
    "svm_linear": lambda: linear_svm(prof.svm_C, prof.svm_inner_folds),
    "chance": chance,
}
for name, make in models.items():
    run_sklearn_cv(study.store, "02_svm", name, ["gm"], make, X, study.y, study.ids,
                   study.plan, study.context)

# %% [markdown]
# ## Per fold
# Each point is one fold's held-out subjects (`cv`) or the independent site scored by that
# fold's model (`independent`).

# %%
preds = study.store.predictions("02_svm")
folds = per_fold_metrics(preds)
display(folds.round(3))
fig = plots.fold_metrics(folds[folds.model == "svm_linear"], study.oracle_accuracy)
plt.title("Linear SVM on grey matter")
plt.show()

# %% [markdown]
# ## Pooled, with 95 % bootstrap confidence intervals

# %%
summary = summarise(preds)
cols = ["model", "set", "n", "accuracy", "accuracy_low", "accuracy_high", "balanced_accuracy",
        "auc", "auc_low", "auc_high"]
display(summary[cols].round(3))
