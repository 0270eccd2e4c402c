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
profile = "quick"
cohort_dir = None
results_dir = None
methods = ["gradient", "smoothgrad", "integrated_gradients", "gradcam", "occlusion"]

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn import saliency as sal
from mri3dcnn.atlas import ATLAS_NAME, region_table
from mri3dcnn.models import FAMILIES
from mri3dcnn.study import Study
from mri3dcnn.synthetic import planted_masks

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
records = [r for r in study.records("3d_cnn")
           if r.key["protocol"] == "inner" and r.key["model"] in FAMILIES
           and r.key["maps"] == "gm"]
families = sorted({r.key["model"] for r in records})
if not families:  # chapter run on its own: train the simplest family first
    records = study.fit_cnn("sequential_2", ("gm",))
    families = ["sequential_2"]
arrays = study.arrays(["gm"])
truth = planted_masks(study.cohort.root).get("gm", {})
union = np.any(list(truth.values()), axis=0) if truth else None
display(Markdown(f"Families explained: {', '.join(families)} (grey matter); up to "
                 f"{prof.saliency_subjects} patients per fold "
                 f"({prof.occlusion_subjects} for occlusion); methods: {', '.join(methods)}."))

# %%
group = {}
for fam in families:
    recs = [r for r in records if r.key["model"] == fam]
    group[fam] = sal.group_maps(recs, arrays, study.ids, methods, study.mask,
                                max_subjects=prof.saliency_subjects,
                                occlusion_subjects=prof.occlusion_subjects,
                                save_dir=study.store.root / "saliency" / fam,
                                grid_mm=study.grid_mm)
display(Markdown(f"Group maps saved as NIfTI under `{study.store.root / 'saliency'}`."))

# %% [markdown]
# ## Localisation against the planted regions
# For each method and family: the AUC of saliency ranking brain voxels against the
# planted grey-matter regions (0.5 is chance), and the share of the top 1 % voxels that
# fall inside them (against the regions' own share of the brain).

# %% mystnb={"figure": {"caption": "Localisation of each saliency method and family against the planted regions: voxel AUC, share of the top 1 % voxels inside the regions, and share of planted regions among the five most salient atlas regions.", "name": "fig-saliency-localisation"}}
if union is not None:
    rows = []
    for fam, by_method in group.items():
        for meth, maps in by_method.items():
            top5 = sal.planted_in_top_regions(maps["gm"], truth, study.grid_mm, top=5)
            rows.append({"family": fam, "method": meth,
                         **sal.localization(maps["gm"], union, study.mask),
                         "planted_in_top5_regions": float(top5["in_top5"].mean())})
    loc = pd.DataFrame(rows)
    display(loc.round(3))
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.6 * len(families) + 2.5))
    for ax, col in zip(axes, ["auc", "top1pct_inside", "planted_in_top5_regions"],
                       strict=True):
        sns.heatmap(loc.pivot(index="family", columns="method", values=col), annot=True,
                    fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax)
        ax.set_title(col)
    fig.tight_layout()
    plt.show()
    best = loc.sort_values("auc", ascending=False).iloc[0]
    display(Markdown(
        f"Best localisation: **{best.method}** on **{best.family}**, AUC {best.auc:.3f}; "
        f"{100 * best.top1pct_inside:.0f} % of its top 1 % voxels lie in planted regions "
        f"that cover {100 * best.chance_share:.0f} % of the brain."
    ))
else:
    best = pd.Series({"family": families[0], "method": methods[0]})

# %% [markdown]
# ## The best map, its regions and the planted ones
# {numref}`fig-saliency-best` shows the best-localised method's group map; below it, the
# same map in three dimensions.

# %% mystnb={"figure": {"caption": "The best-localised group saliency map, scaled to its maximum: slices (top) and glass brain (bottom).", "name": "fig-saliency-best"}}
best_map = group[best.family][best.method]["gm"]
mean_gm = np.asarray(arrays["gm"]).mean(axis=0)
fig = plots.stat_map(best_map / best_map.max(), mean_gm, study.grid_mm,
                     f"{best.method}, {best.family}: group saliency (scaled)", threshold=0.3)
plt.show()
display(region_table(best_map, study.grid_mm, top=10).round(4))
display(Markdown(f"Atlas: {ATLAS_NAME}."))
if truth:
    display(sal.planted_in_top_regions(best_map, truth, study.grid_mm, top=5))

# %% [markdown]
# The group map in three dimensions: click to move through the brain.

# %%
from mri3dcnn.views import interactive_map

interactive_map(best_map / best_map.max(), mean_gm, study.grid_mm, f"{best.method}")

# %% [markdown]
# ## Sanity checks
# A saliency method must depend on what the model learned {cite:p}`adebayo2018`.
# Cascading randomisation ({numref}`fig-saliency-randomisation`)
# shuffles the weights layer by layer from the output down and correlates (Spearman, on
# absolute values) each method's maps with the trained model's; a method whose maps stay
# the same passes no information about the model and fails. A model trained on shuffled
# labels gives the second check.

# %% mystnb={"figure": {"caption": "Cascading randomisation: rank correlation of each method's maps with the trained model's as layers are randomised from the output down.", "name": "fig-saliency-randomisation"}}
rec = next(r for r in records if r.key["model"] == best.family)
model, norm = sal.load_fit(rec)
p = rec.predictions
subjects = [study.ids.index(s) for s in p[(p.set == "cv") & (p.y_true == 1)].participant_id[:3]]
x = norm.transform({"gm": arrays["gm"]}, np.array(subjects))
cheap = [m for m in methods if m != "occlusion"]
rand = sal.randomisation_check(model, x, ["gm"], cheap, study.mask)
fig, ax = plt.subplots(figsize=(8, 3.5))
sns.lineplot(data=rand, x="layers_randomised", y="rank_correlation", hue="method",
             marker="o", ax=ax)
ax.axhline(0, color="grey", ls="--")
ax.set_title(f"Cascading randomisation, {best.family}")
plt.show()
final = rand[rand.layers_randomised == rand.layers_randomised.max()]
shuffled = study.fit_cnn(best.family, ("gm",), folds=[rec.key["fold"]], shuffle_labels=True)
m_shuf, n_shuf = sal.load_fit(shuffled[0])
x_shuf = n_shuf.transform({"gm": arrays["gm"]}, np.array(subjects))
checks = []
for meth in cheap:
    a = sal.compute(meth, model, x, ["gm"], study.mask)["gm"]
    b = sal.compute(meth, m_shuf, x_shuf, ["gm"], study.mask)["gm"]
    r_shuf = np.mean([sal.rank_correlation(a[i], b[i], study.mask) for i in range(len(a))])
    r_rand = float(final.loc[final.method == meth, "rank_correlation"].iloc[0])
    checks.append({"method": meth, "r vs all layers randomised": r_rand,
                   "r vs shuffled-label model": r_shuf,
                   "passes": bool(r_rand < 0.5 and r_shuf < 0.5)})
display(pd.DataFrame(checks).round(3))

# %% [markdown]
# ## A multi-branch model: one saliency map per input map
# The branch-fusion model of chapter 7 (when it was run) explains each map through its
# own branch; on the synthetic cohort the grey-matter and FA regions are scored against
# their own planted masks.

# %%
fused = [r for r in study.records("3d_cnn")
         if r.key["protocol"] == "inner" and r.key["model"] in FAMILIES and "+" in r.key["maps"]]
if fused:
    fused_family = fused[0].key["model"]
    fused = [r for r in fused if r.key["model"] == fused_family]
    fmaps = fused[0].key["maps"].split("+")
    multi = sal.group_maps(fused, study.arrays(fmaps), study.ids, cheap, study.mask,
                           max_subjects=prof.saliency_subjects,
                           save_dir=study.store.root / "saliency" / f"{fused_family}-branch",
                           grid_mm=study.grid_mm)
    masks_by_map = planted_masks(study.cohort.root)
    rows = [{"method": meth, "map": m,
             **sal.localization(v, np.any(list(masks_by_map[m].values()), axis=0), study.mask)}
            for meth, by_map in multi.items() for m, v in by_map.items() if m in masks_by_map]
    display(Markdown(f"{fused_family}, branch fusion of {', '.join(fmaps)}:"))
    display(pd.DataFrame(rows).round(3))
else:
    display(Markdown("No multi-branch model is stored: run chapter 7 first."))

# %% [markdown]
# ## Individual maps
# Three held-out patients: their grey-matter map, the planted regions and the best
# method's saliency from the fold model that did not train on them.

# %%
one = sal.compute(best.method, model, x, ["gm"], study.mask)["gm"]
for i, s in enumerate(subjects):
    fig = plots.subject_maps({"gm": np.asarray(arrays["gm"][s]),
                              "saliency": np.abs(one[i]) * study.mask,
                              **({"planted": union.astype("float32")} if truth else {})},
                             study.grid_mm, study.ids[s])
    plt.show()
