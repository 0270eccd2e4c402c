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
# published notebooks, measured and taken apart: the same family and folds, with the epoch kept by its
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
# The published notebooks differ from ours in two ways at once: they trained on all
# training subjects, every epoch, and kept the epoch whose accuracy on the **held-out
# fold** was best; ours trains on 80 % of them and keeps the epoch with the lowest loss on
# the other 20 %. Comparing the two fits alone would mix the selection with the extra
# training data. So the same family, on grey matter and the same folds, is trained a third
# way: a *traced* fit on exactly our 80 % (same seed, same split), run for every epoch,
# with the held-out fold predicted after each one. Within that one run the honest epoch
# (lowest validation loss) and the epoch the test fold would pick can both be read, and
# the published protocol's gain falls into two parts:
#
# - **selection on the test fold**: the test-chosen epoch minus the honest one, same run;
# - **100 % vs 80 % of training subjects**: the published fit minus the traced run's
#   test-chosen epoch (both chose on the test fold);
# - their sum, the **total**: published minus honest.
#
# The epoch is chosen once per repeat and fold, so that fit is the unit of every interval
# ({numref}`fig-fusion-protocol`).

# %% mystnb={"figure": {"caption": "Top: each fold's traced run, its held-out accuracy after every epoch (one line per repeat), with the epoch of lowest validation loss (ring) and the epoch best on the held-out fold (star) of that same run; a star in a ring is one epoch chosen both ways. Bottom: the published protocol's gain taken apart, each grey dot one repeat and fold, the mean with its 95 % interval (corrected repeated-CV t over repeats and folds); the dashed line marks no difference.", "name": "fig-fusion-protocol"}}
protocol = study.protocol_chapter(family)
fig = plots.protocol_comparison(protocol["curves"], protocol["per_fold"],
                                protocol["comparison"])
plt.show()
display(Markdown(protocol["text"]))

# %% [markdown]
# Per repeat and fold: the epochs chosen and the held-out accuracy at each, beside the
# published fit's ({numref}`tbl-fusion-protocol-folds`); then the three differences with
# the test behind each interval ({numref}`tbl-fusion-protocol-parts`).

# %%
display(table(protocol["per_fold"], "Each traced run: the epoch of lowest validation loss "
              "(`epoch_val`) and the epoch best on the held-out fold (`epoch_test`), the "
              "held-out accuracy at each, and the published fit's.",
              "tbl-fusion-protocol-folds", digits=3))
display(table(protocol["comparison"], "The published protocol's gain in held-out accuracy, "
              "taken apart; each interval and p-value from the test its row names.",
              "tbl-fusion-protocol-parts", digits=3, ci_of="difference"))
