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
# # 7. Multimodal fusion, and what selecting on the test fold costs
#
# The follow-up study feeds several maps to one network, one branch per map, joined before
# the head. Is that better than one map, and better than simpler ways to combine maps? On
# the best family of chapters 4-6 (by cross-validated AUC on grey matter), on the same
# folds:
#
# - **single map**: one model per map;
# - **branch fusion** (the original design): one branch per map, flattened and joined;
# - **channel fusion**: the maps stacked as channels of one branch;
# - **late fusion**: the single-map models' probabilities averaged.
#
# Then the selection flaw of the published notebooks, measured: the same family and folds,
# with the epoch kept by its accuracy on the held-out fold itself.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
family = None  # default: the best family on grey matter in chapters 4-6
maps = None  # default: the profile's fusion maps

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.claims import best_model, ranking
from mri3dcnn.models import FAMILIES
from mri3dcnn.results import predictions_of
from mri3dcnn.stats import SUMMARY_COLUMNS, paired_difference, per_fold_metrics, summarise
from mri3dcnn.study import Study
from mri3dcnn.training import late_fusion

study = Study.open(profile, cohort_dir, results_dir)
maps = list(maps or study.profile.fusion_maps)
stored = study.predictions("3d_cnn")
candidates = stored[(stored.maps == "gm") & (stored.protocol == "inner")
                    & stored.model.isin(list(FAMILIES))]
if family is None and len(candidates):
    ranked = ranking(summarise(candidates, n_boot=200))
    display(ranked[["model", "n", "accuracy", "balanced_accuracy", "auc"]].round(3))
    family = ranked.iloc[0]["model"]
family = family or "sequential_2"
display(Markdown(f"Family compared here: **{family}** (maps: {', '.join(maps)})."))

# %%
single = {m: study.fit_cnn(family, (m,)) for m in maps}
branch = study.fit_cnn(family, maps, fusion="branch")
channel = study.fit_cnn(family, maps, fusion="channel")
late = late_fusion(study.store, "3d_cnn", single, family, study.context)
records = [r for recs in single.values() for r in recs] + branch + channel + late
preds = predictions_of(records)
summary = summarise(preds)
display(summary[SUMMARY_COLUMNS].sort_values(["set", "auc"], ascending=[True, False])
        .round(3))
fig = plots.model_forest(summary, "balanced_accuracy", study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Paired comparisons on the same subjects
# Each fusion against the best single map (by cross-validated AUC), as the difference in
# balanced accuracy with a paired bootstrap 95 % interval.

# %%
best_map = best_model(summary[summary.maps.isin(maps)])["maps"]
ref = preds[(preds.model == family) & (preds.maps == best_map)]
rows = []
for label, recs in (("branch", branch), ("channel", channel), ("late", late)):
    d = paired_difference(predictions_of(recs), ref, "balanced_accuracy")
    rows.append({"fusion": label, "vs single map": best_map, **d})
display(pd.DataFrame(rows).round(3))

# %% [markdown]
# ## The published protocol: selecting the epoch on the test fold
# Same family, grey matter, same folds. The published notebooks trained on all training
# subjects and kept the epoch whose accuracy on the **held-out fold** was best; ours keeps
# the epoch with the lowest loss on a validation split of the training subjects.

# %%
inner = study.fit_cnn(family, ("gm",))
published = study.fit_cnn(family, ("gm",), protocol="published")
preds_in, preds_pub = predictions_of(inner), predictions_of(published)
inflation = paired_difference(preds_pub, preds_in, "accuracy")
folds = per_fold_metrics(pd.concat([preds_in, preds_pub]))
fig = plots.protocol_comparison(folds, inflation)
plt.show()
display(Markdown(
    f"Cross-validated accuracy reported by the published protocol minus the honest one: "
    f"**{inflation['difference']:+.3f}** (95 % CI {inflation['ci_low']:+.3f} to "
    f"{inflation['ci_high']:+.3f}, n = {inflation['n']} subjects)."
))
