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
# ships, with per-subject anatomy (smooth residual deformations, regional volume, head
# size, age, sex), scanner effects by site (gain, contrast, noise, smoothness), and group
# differences planted in named regions at the sizes reported for schizophrenia. Because we
# planted them, we know the truth, and every later chapter can be scored against it. Point
# `cohort_dir` at a BIDS-derivatives folder to run the same chapter on a real cohort.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project

# %%
from operator import itemgetter

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study
from mri3dcnn.synthetic import oracle_table, realised_d_table, region_peaks
from mri3dcnn.synthetic.figures import effect_maps
from mri3dcnn.tables import table
from mri3dcnn.volumes import qc_table

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
# {numref}`tbl-data-participants` counts the subjects of each site and group, with their
# mean age.

# %%
display(table(study.cohort.summary(), "Subjects per site and group, with their mean age.",
              "tbl-data-participants", digits=1))
fig = plots.cohort_overview(p)
plt.show()

# %% [markdown]
# ## One subject's maps
# Grey and white matter are tissue probabilities; FA and MD are the diffusion-tensor
# maps. All are in MNI space on the study grid.

# %%
arrays = study.arrays(list(study.cohort.maps))
first = study.ids[0]
first_maps = dict(zip(arrays, map(itemgetter(0), arrays.values()), strict=True))
fig = plots.subject_maps(first_maps, study.grid_mm, f"{first} ({p.loc[first, 'group']})")
plt.show()

# %% [markdown]
# ## What was planted, and what the cohort realised
# The planted changes are as large as the disorder's: each region's target is the Cohen's
# d that large meta-analyses report for schizophrenia (ENIGMA subcortical volumes, cortical
# thickness, white-matter FA and MD), adjusted for site, age, sex and head size as they
# were. Patients are heterogeneous: a share carries no change at all, the others follow one
# of a few latent patterns (subcortical, cortical, white matter) with a severity of their
# own. {numref}`tbl-data-realised-d` shows each region's target beside the d this cohort
# realised, with its 95 % CI. An empty table means a real cohort, with no planted truth.

# %%
display(table(realised_d_table(study.cohort.root), "Each planted region's target Cohen's d "
              "beside the d this cohort realised (patients minus controls), with its 95 % CI "
              "(normal approximation).", "tbl-data-realised-d", empty="no planted truth"))

# %% [markdown]
# Voxel by voxel the same picture: Cohen's d between patients and controls on each map
# (left) and the planted regions drawn over it (right). Diffuse changes (all grey matter,
# all white matter) are named in the title rather than outlined; {numref}`tbl-data-peaks`
# gives each region's peak.

# %%
fig = effect_maps(arrays, study.y, study.cohort.root, study.grid_mm)
plt.show()
display(table(region_peaks(arrays, study.y, study.cohort.root), "The largest voxel-wise "
              "t and Cohen's d between patients and controls inside each planted region, on "
              "its map.", "tbl-data-peaks", empty="no planted truth"))

# %% [markdown]
# ## How well anything could do
# Three reference numbers, each with its own meaning. The **oracle** is a logistic
# regression given the truth's features (each planted region's mean, each map's mean, site,
# age, sex and head size), trained and tested on the study's own split plan below: same
# folds, same independent site as every model. It is achievable, not a bound. The **Bayes
# ceiling** is the accuracy of an ideal observer of those region means under the
# generator's own likelihood: an expectation over the population, which a model reading
# whole images could in principle exceed. The **strict bound** holds for any classifier:
# patients without a change are drawn exactly like controls, so in expectation no model
# exceeds it (a finite test set can, by chance). {numref}`tbl-data-oracle` gives all three.

# %%
display(table(oracle_table(study.cohort.root, study.plan), "The oracle on the study's "
              "folds and independent site, the Bayes ceiling and the strict bound; the "
              "interval is of balanced accuracy.", "tbl-data-oracle",
              ci_of="balanced_accuracy", empty="no planted truth"))

# %% [markdown]
# ## Quality control
# Mean value in the brain per subject, by site (scanner effects show up here), and each
# map's correlation with the cohort mean: a misregistered or broken map falls far below
# the others and is flagged in red; {numref}`tbl-data-outliers` lists the flagged maps.

# %%
qc = qc_table(arrays, study.ids, study.mask)
fig = plots.qc_overview(qc, p.reset_index(drop=True))
plt.show()
flagged = qc[qc.outlier]
display(Markdown(f"Maps flagged as outliers: **{len(flagged)}**."))
display(table(flagged, "Maps flagged as outliers: their mean in the brain, its standard "
              "deviation and their correlation with the cohort mean.", "tbl-data-outliers",
              index=False, drop=["outlier"], empty="no map flagged"))

# %% [markdown]
# ## The split plan
# Folds are made on subjects, stratified by group and site. When the cohort has several
# sites, the last one is held out whole as the **independent test set**, as in the study.
# The plan is saved beside the results (`split_plan.tsv`) and every chapter reads it;
# {numref}`tbl-data-plan` counts its subjects.

# %%
plan = study.plan
counts = plan.groupby(["repeat", "set", "fold", "group"]).size().unstack("group")
display(table(counts, "Subjects of each group in each fold of each repeat, and on the "
              "independent site.", "tbl-data-plan"))
display(Markdown(f"Split plan: `{study.store.root / 'split_plan.tsv'}`"))
