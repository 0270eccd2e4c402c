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
# chapter trains nothing. Cross-validation predictions are pooled over folds; on the
# independent site, the fold models vote by majority, as in the study. Intervals are 95 %
# percentile bootstraps over subjects.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
metric = "balanced_accuracy"

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.evaluation import summarise
from mri3dcnn.study import Study

study = Study.open(profile, cohort_dir, results_dir)
preds = study.store.predictions()
context = study.fingerprint
keep = [r.info["hash"] for r in study.store.records()
        if r.key.get("config", {}).get("cohort") == context]
preds = preds[preds.hash.isin(keep)]
summary = summarise(preds)
display(Markdown(f"{summary.model.nunique()} models, {preds.hash.nunique()} stored fits, "
                 f"{preds.participant_id.nunique()} subjects."))

# %%
cols = ["chapter", "model", "maps", "protocol", "set", "n"]
for m in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc"):
    summary[m + " (95% CI)"] = summary.apply(
        lambda r, m=m: f"{r[m]:.3f} [{r[m + '_low']:.3f}, {r[m + '_high']:.3f}]", axis=1)
table = summary[cols + [c for c in summary.columns if c.endswith("(95% CI)")]]
display(table)
out = study.store.root / "summary.csv"
summary.to_csv(out, index=False)
display(Markdown(f"Exported: `{out}`"))

# %%
fig = plots.model_forest(summary, metric, study.oracle_accuracy)
plt.show()
