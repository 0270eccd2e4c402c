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
# # 9. Summary: every model side by side
#
# Every number here is computed from the predictions stored by the earlier chapters; this
# chapter trains nothing, and rendering it again changes nothing. Cross-validation
# predictions are pooled over folds (each subject predicted once, by a model that did not
# train on it). On the independent site, the fold models vote by majority, as in the study;
# the single fold models are shown beside the vote. Intervals are 95 % percentile
# bootstraps over subjects.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
metric = "balanced_accuracy"  # metric of the forest plot of every model (evaluation.METRICS)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
summary = study.summary_chapter()
display(Markdown(summary["counts"]))

# %% [markdown]
# ## All models: cross-validation and the independent site

# %%
display(plots.ci_table(summary["summary"]))
display(Markdown("Exported with sensitivity, specificity and every interval: "
                 f"`{summary['export']}`"))

# %%
fig = plots.model_forest(summary["summary"], metric, study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Fold models alone on the independent site, beside their vote

# %%
display(plots.fold_models_and_vote(summary["predictions"], summary["summary"]))

# %% [markdown]
# ## Paired comparisons
# Every model against the best by cross-validated AUC, on the independent site's
# subjects: DeLong's test of correlated AUCs, Holm-corrected for the number of
# comparisons. The best model is chosen on cross-validation, so the test set plays no part
# in choosing what is tested.

# %%
display(summary["comparisons"])

# %% [markdown]
# ## The study's claims, on this cohort
# Each claim is tested on the stored predictions, with the best model of each kind chosen
# by cross-validated AUC and compared on the independent site. The verdicts are computed;
# none is written by hand.

# %%
display(summary["claims"])
display(Markdown(summary["best"]))
