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
# The family is the first of {numref}`tbl-fusion-ranking`; {numref}`tbl-fusion-summary`
# and {numref}`fig-fusion-models` set the four side by side. Then the selection flaw of the
# published notebooks, measured: the same family and folds, with the epoch kept by its
# accuracy on the held-out fold itself.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
family = None  # CNN family fused; None: the best on grey matter in chapters 4-6
maps = None  # maps fused; None: the profile's fusion maps

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
family, ranking = study.best_cnn_family(family)
display(table(ranking, "The plain families of chapters 4-6 on grey matter, ranked by "
              "cross-validated AUC (bootstrap of 200), best first.", "tbl-fusion-ranking",
              empty="no family stored"))
display(Markdown(f"Family compared here: **{family}** (maps: "
                 f"{', '.join(maps or study.profile.fusion_maps)})."))

# %% mystnb={"figure": {"caption": "Balanced accuracy of single-map and fused models, with 95 % intervals (corrected CV t-test; subject bootstrap on the independent site); the dashed line marks chance and the dotted line the oracle.", "name": "fig-fusion-models"}}
fusion = study.fusion_chapter(family, maps)
display(table(plots.summary_table(fusion["summary"]), "Single-map and fused models "
              "pooled over folds (`cv`: corrected repeated-CV t-test) and on the independent "
              "site (subject bootstrap), with 95 % intervals.", "tbl-fusion-summary"))
fig = plots.model_forest(fusion["summary"], "balanced_accuracy", study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Paired comparisons on the same subjects
# Each fusion against the best single map (by cross-validated AUC), as the difference in
# balanced accuracy with a 95 % interval: the corrected repeated-CV t-test on paired fold
# scores for cross-validation, a paired bootstrap over subjects on the independent site
# ({numref}`tbl-fusion-paired`).

# %%
display(table(fusion["paired"], "Each fusion minus the best single map in balanced "
              "accuracy on the same subjects and folds, with the 95 % interval and p-value of "
              "the corrected repeated-CV t-test on paired fold scores.", "tbl-fusion-paired",
              digits=3, drop=["test"]))

# %% [markdown]
# ## The published protocol: selecting the epoch on the test fold
# Same family, grey matter, same folds. The published notebooks trained on all training
# subjects and kept the epoch whose accuracy on the **held-out fold** was best; ours keeps
# the epoch with the lowest loss on a validation split of the training subjects
# ({numref}`fig-fusion-protocol`).

# %% mystnb={"figure": {"caption": "Held-out accuracy with the epoch chosen on the held-out fold (the published protocol) beside the epoch chosen on training subjects only.", "name": "fig-fusion-protocol"}}
protocol = study.protocol_chapter(family)
fig = plots.protocol_comparison(protocol["per_fold"], protocol["inflation"])
plt.show()
display(Markdown(protocol["text"]))
