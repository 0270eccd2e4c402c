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
# # 4. A 3D CNN from scratch: Sequential_2 on grey matter
#
# The study's simplest family: two blocks of a 3x3x3 convolution (32 filters) and 3x3x3
# max-pooling, then Dense(128), Dropout(0.5) and a two-unit sigmoid output, trained with
# Adadelta (learning rate 1.0, as Keras 2 defaulted to) on binary cross-entropy.
#
# One thing differs from the published notebooks, on purpose: the epoch kept is chosen on a
# validation split of the **training subjects only**. The original kept the epoch with the
# best accuracy on the held-out fold itself, which selects the model on its test data.

# %% tags=["parameters"]
profile = "quick"
cohort_dir = None
results_dir = None
model = "sequential_2"
maps = ["gm"]

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from mri3dcnn import plots
from mri3dcnn.evaluation import per_fold_metrics, summarise
from mri3dcnn.models import build
from mri3dcnn.study import Study
from mri3dcnn.training import FitSpec, run_cv

study = Study.open(profile, cohort_dir, results_dir)
prof = study.profile
spec = FitSpec(model=model, maps=tuple(maps), epochs=prof.epochs, batch_size=prof.batch_size,
               patience=prof.patience, seed=prof.seeds[0], augment=prof.augment)
arrays = study.arrays(maps)
net = build(model, maps, arrays[maps[0]].shape[1:])
display(Markdown(
    f"`{model}` on {', '.join(maps)}: {net.count_params():,} parameters on a "
    f"{'x'.join(map(str, arrays[maps[0]].shape[1:]))} grid; up to {spec.epochs} epochs, "
    f"batch {spec.batch_size}, early stopping after {spec.patience} epochs without a better "
    f"validation loss; augmentation {'on' if spec.augment else 'off'}."
))

# %%
records = run_cv(study.store, "04_sequential", spec, arrays, study.ids, study.y, study.plan,
                 study.context, study.grid_mm)

# %% [markdown]
# ## Learning curves

# %%
hist = pd.concat([r.history.assign(fold=r.key["fold"]) for r in records], ignore_index=True)
fig = plots.learning_curves(hist)
plt.show()
display(pd.DataFrame([{"fold": r.key["fold"], "best epoch": r.info["best_epoch"],
                       "epochs run": r.info["epochs_run"],
                       "train s": round(r.info["timings"]["fit_s"], 1),
                       "samples/s": round(r.info["timings"]["samples_per_s"], 1)}
                      for r in records]))

# %% [markdown]
# ## Per fold, against the oracle

# %%
preds = study.store.predictions("04_sequential")
preds = preds[(preds.model == model) & (preds.maps == "+".join(maps))]
folds = per_fold_metrics(preds)
display(folds.round(3))
fig = plots.fold_metrics(folds, study.oracle_accuracy)
plt.title(f"{model} on {'+'.join(maps)}")
plt.show()

# %%
summary = summarise(preds)
display(summary[["model", "set", "n", "accuracy", "accuracy_low", "accuracy_high",
                 "balanced_accuracy", "auc", "auc_low", "auc_high"]].round(3))
