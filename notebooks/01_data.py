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
# # 1. The cohort and its maps
#
# Every model in this book reads the same subjects, the same maps on the same grid and the
# same split plan. This chapter shows them: who is in the cohort, what one subject's maps
# look like, where the groups really differ, whether any map looks broken, and which
# subjects each model may train on.
#
# By default the cohort is **synthetic**: built from the MNI152 templates that nilearn
# ships, with per-subject anatomy, scanner effects by site, and group differences planted
# in named regions. Because we planted them, we know the truth, and every later chapter can
# be scored against it. Point `cohort_dir` at a BIDS-derivatives folder to run the same
# chapter on a real cohort.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study
from mri3dcnn.synthetic import planted_masks, truth_masks
from mri3dcnn.volumes import qc_table, voxelwise_ttest

study = Study.open(profile, cohort_dir, results_dir)
p = study.cohort.participants
display(Markdown(
    f"Profile **{study.profile.name}**: {len(p)} subjects "
    f"({(p.group == 'patient').sum()} patients, {(p.group == 'control').sum()} controls) "
    f"from {p.site.nunique()} sites, maps {', '.join(study.cohort.maps)} on a "
    f"{study.grid_mm:g} mm grid of shape {tuple(study.mask.shape)}."
))

# %% [markdown]
# ## Participants

# %%
display(study.cohort.summary())
fig = plots.cohort_overview(p)
plt.show()

# %% [markdown]
# ## One subject's maps
# Grey and white matter are tissue probabilities; FA and MD are the diffusion-tensor
# maps. All are in MNI space on the study grid.

# %%
arrays = study.arrays(list(study.cohort.maps))
first = study.ids[0]
fig = plots.subject_maps({m: arrays[m][0] for m in arrays}, study.grid_mm,
                         f"{first} ({p.loc[first, 'group']})")
plt.show()

# %% [markdown]
# ## Where the groups differ
# On a synthetic cohort the planted regions are known. A voxel-wise Welch t-test between
# patients and controls should peak inside them and nowhere else.

# %%
masks = truth_masks(study.cohort.root)
mean_gm = np.asarray(arrays["gm"]).mean(axis=0)
if masks:
    fig = plots.planted_regions(masks, mean_gm, study.grid_mm)
    plt.show()
    regions = pd.DataFrame(study.truth["effects"]["regions"])
    display(regions.rename(columns={"radius_mm": "radius (mm)", "center": "MNI centre"}))
    display(Markdown(
        f"Oracle accuracy (a classifier given the true regions, cross-validated): "
        f"**{study.oracle_accuracy:.3f}**; {study.truth['n_unaffected_patients']} patients "
        f"carry no change at all, so no model can exceed "
        f"**{study.truth['ceiling_accuracy']:.3f}**."
    ))

# %%
rows = []
for m in study.cohort.maps:
    t = voxelwise_ttest(arrays[m], study.y)
    for name, inside in planted_masks(study.cohort.root).get(m, {}).items():
        rows.append({"region": name, "map": m, "peak |t| inside": float(np.abs(t[inside]).max()),
                     "voxels": int(inside.sum())})
    if m in ("gm", "fa"):
        fig = plots.stat_map(t, mean_gm, study.grid_mm, f"{m}: patients vs controls (t)")
        plt.show()
if rows:
    display(pd.DataFrame(rows).round(2))

# %% [markdown]
# ## Quality control
# Mean value in the brain per subject, by site (scanner effects show up here), and each
# map's correlation with the cohort mean: a misregistered or broken map falls far below
# the others and is flagged in red.

# %%
qc = qc_table(arrays, study.ids, study.mask)
fig = plots.qc_overview(qc, p.reset_index(drop=True))
plt.show()
flagged = qc[qc.outlier]
display(Markdown(f"Maps flagged as outliers: **{len(flagged)}**."))
if len(flagged):
    display(flagged)

# %% [markdown]
# ## The split plan
# Folds are made on subjects, stratified by group and site. When the cohort has several
# sites, the last one is held out whole as the **independent test set**, as in the study.
# The plan is saved beside the results (`split_plan.tsv`) and every chapter reads it.

# %%
plan = study.plan
counts = (plan.assign(fold=plan.fold.map(lambda f: "independent" if f < 0 else f"fold {f}"))
          .groupby(["repeat", "fold", "group"]).size().unstack("group"))
display(counts)
display(Markdown(f"Split plan: `{study.store.root / 'split_plan.tsv'}`"))
