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
# and the mean of each map in each region of an offline atlas. Every fitted step (scaling,
# optional ANOVA screening, the choice of C) sits in one scikit-learn Pipeline fitted on
# training subjects only, with C chosen by an inner cross-validation (nested CV). A
# classifier that predicts from class frequencies draws the chance line, and nilearn's
# `Decoder` on the same grey-matter maps and folds is the cross-check.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
maps = ["gm", "wm", "fa", "md"]

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.atlas import ATLAS_NAME, region_table
from mri3dcnn.features import masked_voxels, regional_means
from mri3dcnn.splits import cv_subjects
from mri3dcnn.stats import SUMMARY_COLUMNS, per_fold_metrics, summarise
from mri3dcnn.study import Study
from mri3dcnn.svm import DecoderOnArrays, chance, linear_svm, run_sklearn_cv, weight_map

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
arrays = study.arrays(maps)
voxels = {m: masked_voxels(arrays, [m], study.mask) for m in maps}
voxels["+".join(maps)] = masked_voxels(arrays, maps, study.mask)
regional, region_names = regional_means(arrays, maps, study.grid_mm)
display(Markdown(
    f"{len(study.ids)} subjects; {voxels['gm'].shape[1]} voxels per map; "
    f"{regional.shape[1]} regional features ({len(region_names) // len(maps)} regions of "
    f"{ATLAS_NAME} x {len(maps)} maps). {prof.n_folds}-fold CV x {prof.n_repeats} "
    f"repeat(s); C from {list(prof.svm_C)} by inner {prof.svm_inner_folds}-fold CV."
))

# %%
def svm(kernel="linear"):
    return lambda: linear_svm(prof.svm_C, prof.svm_inner_folds, kernel=kernel)


runs = [("svm_linear", [m], voxels[m], svm()) for m in maps]
runs += [
    ("svm_linear", maps, voxels["+".join(maps)], svm()),
    ("svm_rbf", ["gm"], voxels["gm"], svm("rbf")),
    ("svm_linear_regional", maps, regional, svm()),
    ("nilearn_decoder", ["gm"], voxels["gm"],
     lambda: DecoderOnArrays(study.mask, study.grid_mm)),
    ("chance", ["gm"], voxels["gm"], chance),
]
for name, run_maps, X, make in runs:
    run_sklearn_cv(study.store, "02_svm", name, run_maps, make, X, study.y, study.ids,
                   study.plan, study.context)

# %% [markdown]
# ## Pooled over folds, with 95 % bootstrap confidence intervals
# `cv`: each subject predicted once by the model that did not train on it; `independent`:
# the held-out site, scored by the fold models' majority vote.

# %%
preds = study.predictions("02_svm")
summary = summarise(preds)
display(summary[SUMMARY_COLUMNS].sort_values(["set", "auc"], ascending=[True, False])
        .round(3))
fig = plots.model_forest(summary, "balanced_accuracy", study.oracle_accuracy)
plt.show()
cmp = summary[(summary.maps == "gm") & (summary.set == "cv")
              & summary.model.isin(["svm_linear", "nilearn_decoder"])]
display(Markdown("Cross-check on grey matter, same folds: " + "; ".join(
    f"{r.model} accuracy {r.accuracy:.3f} [{r.accuracy_low:.3f}, {r.accuracy_high:.3f}]"
    for r in cmp.itertuples())))

# %% [markdown]
# ## Per fold

# %%
folds = per_fold_metrics(preds)
fig = plots.fold_metrics(folds[folds.model.isin(["svm_linear", "chance"])
                               & (folds.maps == "gm")], study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Where the linear SVM looks
# The grey-matter SVM refitted on all cross-validation subjects (never the independent
# site), its weights mapped back into the brain. Weights of a linear model mix signal and
# noise suppression, so they are a description, not a test; the regions with the largest
# mean absolute weight are listed with their peak coordinates.

# %%
rows = [study.ids.index(s) for s in cv_subjects(study.plan)]
w = weight_map(svm()(), voxels["gm"][rows], study.y[rows])
wmap = study.mask.astype("float32") * 0
wmap[study.mask] = w / abs(w).max()
mean_gm = arrays["gm"][:].mean(axis=0)
fig = plots.stat_map(wmap, mean_gm, study.grid_mm, "linear SVM weights (grey matter)",
                     threshold=0.3)
plt.show()
display(region_table(wmap, study.grid_mm, top=10).round(3))
display(Markdown(f"Atlas: {ATLAS_NAME}."))
