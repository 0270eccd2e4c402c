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
# # 10. Summary: every model side by side
#
# Every number here is computed from the predictions stored by the earlier chapters; this
# chapter trains nothing, and rendering it again changes nothing. Cross-validation
# predictions are pooled over folds (each subject predicted by a model that did not train on
# it; with repeated CV its scores are averaged, so each subject counts once), with 95 %
# intervals from the corrected repeated-CV t-test on the fold scores. On the independent
# site the fold models' scores are averaged per subject (the majority vote is kept beside
# it) and intervals are percentile bootstraps over subjects. Each table names its test.

# %% tags=["parameters"]
profile = "quick"  # tiny | quick | full, or a mapping: extends: NAME plus settings
cohort_dir = None  # BIDS-derivatives cohort; None: the profile's synthetic one
results_dir = None  # results store; None: results/<profile>/ in the project
metric = "balanced_accuracy"  # metric of the forest plot of every model (evaluation.METRICS)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.bookpages import claim_rows
from mri3dcnn.study import Study
from mri3dcnn.tables import table

study = Study.open(profile, cohort_dir, results_dir)
summary = study.summary_chapter()
display(Markdown(summary["counts"]))

# %% [markdown]
# ## All models: cross-validation and the independent site
# {numref}`tbl-summary-models` gives accuracy, balanced accuracy and AUC with their
# intervals; {numref}`fig-summary-models` draws the same numbers against the oracle.

# %%
display(table(plots.ci_table(summary["summary"]), "Every model pooled over folds (`cv`: "
              "corrected repeated-CV t-test) and on the independent site (fold models' "
              "mean score, subject bootstrap), with 95 % intervals.", "tbl-summary-models"))
display(Markdown("Exported with sensitivity, specificity and every interval: "
                 f"`{summary['export']}`"))

# %% mystnb={"figure": {"caption": "Every model side by side: the chosen metric pooled over folds and on the independent site, with 95 % intervals (corrected CV t-test; subject bootstrap on the independent site); the dashed line marks chance and the dotted line the oracle.", "name": "fig-summary-models"}}
fig = plots.model_forest(summary["summary"], metric, study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Fold models alone on the independent site, beside their vote
# Each fold's model scored alone on the independent site, beside the majority vote of all
# of them ({numref}`tbl-summary-vote`).

# %%
display(table(plots.fold_models_and_vote(summary["predictions"], summary["summary"]),
              "The fold models of each model alone on the independent site (mean, lowest "
              "and highest accuracy and AUC) beside the accuracy of their majority vote.",
              "tbl-summary-vote", empty="no independent site"))

# %% [markdown]
# ## Paired comparisons
# Every model against the best by cross-validated AUC, on the independent site's
# subjects: DeLong's test of correlated AUCs, Holm-corrected for the number of
# comparisons. The best model is chosen on cross-validation, so the test set plays no part
# in choosing what is tested ({numref}`tbl-summary-delong`).

# %%
display(table(summary["comparisons"], "Each model against the best by cross-validated AUC "
              "on the independent site's subjects: difference in AUC, DeLong's z, its "
              "p-value and the Holm-corrected one.", "tbl-summary-delong", digits=3,
              drop=["set", "test"], empty="no independent site"))

# %% [markdown]
# (claims)=
# ## The study's claims, on this cohort
# Each claim of {cite:t}`hu2020` is tested on the stored predictions, with the best model
# of each kind chosen by cross-validated AUC and compared on the independent site
# (DeLong's test {cite:p}`delong1988`, Holm-corrected). The verdicts are computed; none is
# written by hand, and the landing page shows the same ones ({numref}`tbl-summary-claims`).

# %%
display(table(claim_rows(summary["claims"]), "The study's claims on this cohort: the "
              "computed verdict, the effect with its 95 % interval where the test gives one, "
              "the Holm-corrected p-value, the models compared and the test.",
              "tbl-summary-claims"))
display(Markdown(summary["best"]))

# %% tags=["remove-cell"]
from mri3dcnn.bookpages import glue_claims

glue_claims(summary["claims"], study)
