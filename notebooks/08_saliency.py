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
# # 8. Saliency, checked against the truth
#
# The study's claim is not only *how well* but *where*: grey-matter regions of the
# salience network and striatum. Saliency maps say which voxels a trained network's
# decision depends on; on the synthetic cohort we know where the groups really differ, so
# each method can be scored against the planted regions rather than admired.
#
# Methods: the vanilla **gradient**, **SmoothGrad** (gradients averaged over noisy
# copies) {cite:p}`smilkov2017`, **integrated gradients** (from the average training
# subject) {cite:p}`sundararajan2017`, **3D Grad-CAM** (last convolution of each branch)
# {cite:p}`selvaraju2017` and **occlusion** (a sliding cube set to the training mean). Group maps average the absolute saliency of correctly classified patients among
# each fold's *held-out* subjects, then across folds; models never explain subjects they
# trained on.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
methods = ["gradient", "smoothgrad", "integrated_gradients", "gradcam",
           "occlusion"]  # saliency methods compared (mri3dcnn.saliency.METHODS)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.saliency import SANITY_MAX_CORRELATION
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
sal = study.saliency_chapter(methods)
display(Markdown(sal["description"]))

# %% [markdown]
# ## Localisation against the planted regions
# For each method and family: the AUC of saliency ranking brain voxels against the
# planted grey-matter regions (0.5 is chance), and the share of the top 1 % voxels that
# fall inside them (against the regions' own share of the brain):
# {numref}`tbl-saliency-localisation` and {numref}`fig-saliency-localisation`.

# %% mystnb={"figure": {"caption": "Localisation of each saliency method and family against the planted regions: voxel AUC, share of the top 1 % voxels inside the regions, and share of planted regions among the five most salient atlas regions.", "name": "fig-saliency-localisation"}}
display(table(sal["localisation"], "Localisation of each method and family: voxel AUC "
              "against the planted regions, share of the top 1 % voxels inside them, the "
              "regions' share of the brain (chance) and the share of planted regions among "
              "the five most salient atlas regions.", "tbl-saliency-localisation",
              digits=3, empty="no planted truth"))
fig = plots.localisation_heatmaps(sal["localisation"])
plt.show()
display(Markdown(sal["best_text"]))

# %% [markdown]
# ## The best map, its regions and the planted ones
# {numref}`fig-saliency-best` shows the best-localised method's group map, and
# {numref}`tbl-saliency-regions` its most salient atlas regions; whether the planted
# regions are among them is in {numref}`tbl-saliency-planted`. Below, the same map in three
# dimensions.

# %% mystnb={"figure": {"caption": "The best-localised group saliency map, scaled to its maximum: slices (top) and glass brain (bottom).", "name": "fig-saliency-best"}}
fig = plots.stat_map(sal["best_map"], sal["background"], study.grid_mm,
                     f"{sal['best']['method']}, {sal['best']['family']}: group saliency "
                     "(scaled)", threshold=0.3)
plt.show()
display(table(sal["regions"], "Atlas regions with the largest mean group saliency of the "
              "best-localised method, its peak and the peak's MNI coordinates in mm.",
              "tbl-saliency-regions"))
display(table(sal["planted_regions"], "Each planted region, the atlas region it lies in "
              "and whether that region is among the five most salient.",
              "tbl-saliency-planted", empty="no planted truth"))

# %% [markdown]
# The group map in three dimensions: click to move through the brain.

# %%
from mri3dcnn.views import interactive_map

interactive_map(sal["best_map"], sal["background"], study.grid_mm, sal["best"]["method"])

# %% [markdown]
# ## Sanity checks
# A saliency method must depend on what the model learned {cite:p}`adebayo2018`.
# Cascading randomisation ({numref}`fig-saliency-randomisation`)
# shuffles the weights layer by layer from the output down and correlates (Spearman, on
# absolute values) each method's maps with the trained model's; a method whose maps stay
# the same passes no information about the model and fails. A model trained on shuffled
# labels gives the second check. A method passes when both correlations stay below
# the threshold printed under {numref}`tbl-saliency-sanity`.

# %% mystnb={"figure": {"caption": "Cascading randomisation: rank correlation of each method's maps with the trained model's as layers are randomised from the output down.", "name": "fig-saliency-randomisation"}}
fig = plots.randomisation_curves(sal["randomisation"], sal["best"]["family"])
plt.show()
display(table(sal["sanity"], "Each method's rank correlation with the trained model's "
              "maps once every layer is randomised, and with a model trained on shuffled "
              "labels; a method passes when both stay low.", "tbl-saliency-sanity",
              digits=3))
display(Markdown(f"Pass: both rank correlations below {SANITY_MAX_CORRELATION}."))

# %% [markdown]
# ## A multi-branch model: one saliency map per input map
# The branch-fusion model of chapter 7 (when it was run) explains each map through its
# own branch; on the synthetic cohort the grey-matter and FA regions are scored against
# their own planted masks ({numref}`tbl-saliency-multi`).

# %%
display(Markdown(sal["multi_text"]))
display(table(sal["multi"], "The branch-fusion model's group saliency, map by map, "
              "scored against that map's planted regions.", "tbl-saliency-multi", digits=3,
              empty="no multi-branch model stored"))

# %% [markdown]
# ## Individual maps
# Held-out patients: their grey-matter map, the planted regions and the best method's
# saliency from the fold model that did not train on them.

# %%
figs = plots.subjects_maps(sal["subjects"], study.grid_mm, sal["subject_ids"])
plt.show()
