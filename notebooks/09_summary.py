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
profile = "quick"
cohort_dir = None
results_dir = None
metric = "balanced_accuracy"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.claims import best_model, headline_claims, ranking
from mri3dcnn.stats import compare_auc, label, per_fold_metrics, summarise
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
preds = study.predictions()
summary = summarise(preds)
display(Markdown(f"{summary.model.nunique()} models, {preds.hash.nunique()} stored fits, "
                 f"{preds.participant_id.nunique()} subjects."))

# %% [markdown]
# ## All models: cross-validation and the independent site

# %%
def with_ci(df, m):
    return df.apply(lambda r: f"{r[m]:.3f} [{r[m + '_low']:.3f}, {r[m + '_high']:.3f}]",
                    axis=1)


wide = []
for s, g in summary.groupby("set"):
    t = g.assign(label=label(g)).set_index("label")
    wide.append(pd.DataFrame({f"{m} ({s})": with_ci(t, m)
                              for m in ("accuracy", "balanced_accuracy", "auc")}))
table = pd.concat(wide, axis=1).sort_index()
display(table)
out = study.store.root / "summary.csv"
summary.to_csv(out, index=False)
display(Markdown(f"Exported with sensitivity, specificity and every interval: `{out}`"))

# %%
fig = plots.model_forest(summary, metric, study.oracle_accuracy)
plt.show()

# %% [markdown]
# ## Fold models alone on the independent site, beside their vote

# %%
folds = per_fold_metrics(preds[preds.set == "independent"])
single = (folds.assign(label=label(folds)).groupby("label")[["accuracy", "auc"]]
          .agg(["mean", "min", "max"]).round(3))
vote = summary[summary.set == "independent"].assign(label=label)
single[("vote", "accuracy")] = vote.set_index("label")["accuracy"].round(3)
display(single)

# %% [markdown]
# ## Paired comparisons
# Every model against the best by cross-validated AUC, on the independent site's
# subjects: DeLong's test of correlated AUCs, Holm-corrected for the number of
# comparisons. The best model is chosen on cross-validation, so the test set plays no part
# in choosing what is tested.

# %%
ranked = ranking(summary)["label"].tolist()
if (preds.set == "independent").any() and len(ranked) > 1:
    pairs = [(ranked[0], other) for other in ranked[1:]]
    display(compare_auc(preds, pairs, "independent").round(4))

# %% [markdown]
# ## The study's claims, on this cohort
# Each claim is tested on the stored predictions, with the best model of each kind chosen
# by cross-validated AUC and compared on the independent site. The verdicts are computed;
# none is written by hand.

# %%
claims = headline_claims(summary, preds)
display(claims.round(4))
if study.oracle_accuracy is not None:
    best = best_model(summary, "accuracy")
    display(Markdown(
        f"Best cross-validated accuracy: **{best.accuracy:.3f}** ({best.model}, "
        f"{best.maps}); the oracle reaches **{study.oracle_accuracy:.3f}** and no model can "
        f"exceed **{study.truth['ceiling_accuracy']:.3f}** on this cohort."
    ))
