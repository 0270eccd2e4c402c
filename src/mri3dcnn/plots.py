"""Figures shared by the chapters: seaborn for tables of numbers, nilearn for brains.

Functions take computed results and return a matplotlib Figure; nothing here computes a
statistic the chapters report.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .maps import label as map_label
from .volumes import to_image

sns.set_theme(context="notebook", style="whitegrid")


def cohort_overview(participants: pd.DataFrame) -> plt.Figure:
    """Subjects per site and group, and the age distribution per group."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    sns.countplot(data=participants, x="site", hue="group", ax=axes[0])
    axes[0].set_title("Subjects per site")
    if "age" in participants:
        sns.histplot(data=participants, x="age", hue="group", element="step", ax=axes[1])
        axes[1].set_title("Age")
    fig.tight_layout()
    return fig


def subject_maps(volumes: dict[str, np.ndarray], grid_mm: float, title: str,
                 cut=(0, 14, 8)) -> plt.Figure:
    """One subject's maps, one row each, at the same cut."""
    from nilearn import plotting

    fig, axes = plt.subplots(len(volumes), 1, figsize=(9, 2.3 * len(volumes)))
    axes = np.atleast_1d(axes)
    for ax, (m, vol) in zip(axes, volumes.items(), strict=True):
        plotting.plot_img(to_image(vol, grid_mm), cut_coords=cut, axes=ax, cmap="gray",
                          title=f"{title}: {map_label(m)}", colorbar=True,
                          black_bg=True, draw_cross=False)
    return fig


def planted_regions(masks: dict, background: np.ndarray, grid_mm: float) -> plt.Figure:
    """The ground-truth regions over the mean grey-matter map."""
    from nilearn import plotting

    labels = np.zeros(background.shape, np.int16)
    for k, img in enumerate(masks.values(), start=1):
        labels[np.asarray(img.dataobj) > 0] = k
    fig = plt.figure(figsize=(10, 3.2))
    plotting.plot_roi(to_image(labels, grid_mm), bg_img=to_image(background, grid_mm),
                      cut_coords=(0, 14, 6), figure=fig, cmap="tab10", alpha=0.8,
                      title="Planted regions", draw_cross=False, black_bg=True)
    return fig


def stat_map(tmap: np.ndarray, background: np.ndarray, grid_mm: float, title: str,
             threshold: float = 3.0) -> plt.Figure:
    """A statistic map thresholded over a background, with glass-brain projections."""
    from nilearn import plotting

    fig, axes = plt.subplots(2, 1, figsize=(10, 6))
    plotting.plot_stat_map(to_image(tmap, grid_mm), bg_img=to_image(background, grid_mm),
                           threshold=threshold, cut_coords=(0, 14, 6), axes=axes[0],
                           title=title, draw_cross=False)
    plotting.plot_glass_brain(to_image(tmap, grid_mm), threshold=threshold, axes=axes[1],
                              plot_abs=False, colorbar=True)
    return fig


def qc_overview(qc: pd.DataFrame, participants: pd.DataFrame) -> plt.Figure:
    """Mean value and correlation to the cohort mean per subject, by site and map."""
    d = qc.merge(participants[["participant_id", "site", "group"]], on="participant_id")
    maps = list(d["map"].unique())
    fig, axes = plt.subplots(2, len(maps), figsize=(3.2 * len(maps), 6), squeeze=False)
    for j, m in enumerate(maps):
        sub = d[d["map"] == m]
        sns.boxplot(data=sub, x="site", y="mean", hue="group", ax=axes[0, j])
        axes[0, j].set_title(f"{map_label(m)}: mean in brain")
        sns.stripplot(data=sub, x="site", y="corr_to_mean", hue="outlier", ax=axes[1, j],
                      palette={False: "tab:blue", True: "tab:red"}, size=3)
        axes[1, j].set_title("correlation to cohort mean")
        for ax in axes[:, j]:
            if ax.get_legend() is not None and j < len(maps) - 1:
                ax.get_legend().remove()
    fig.tight_layout()
    return fig


def learning_curves(histories: pd.DataFrame) -> plt.Figure:
    """Training and validation loss per epoch: one panel per model and map set, one line
    per fold."""
    d = histories.copy()
    d["panel"] = d["model"] + " [" + d["maps"] + "]" if "model" in d else "model"
    d["run"] = d.get("repeat", 0).astype(str) + "-" + d["fold"].astype(str)
    long = d.melt(id_vars=["panel", "run", "epoch"], value_vars=["loss", "val_loss"],
                  var_name="curve", value_name="binary cross-entropy")
    g = sns.relplot(data=long, x="epoch", y="binary cross-entropy", hue="curve", units="run",
                    estimator=None, col="panel", col_wrap=min(3, long["panel"].nunique()),
                    kind="line", alpha=0.7, height=3, aspect=1.3)
    g.set_titles("{col_name}")
    return g.figure


def fold_metrics(per_fold: pd.DataFrame, oracle: float | None = None,
                 metrics=("accuracy", "balanced_accuracy", "auc")) -> plt.Figure:
    """Metrics per fold as points (one panel per model and map set when there are
    several), with chance and the oracle as lines."""
    d = per_fold.copy()
    d["panel"] = d["model"] + " [" + d["maps"] + "]" if "model" in d else "model"
    long = d.melt(id_vars=["panel", "set"], value_vars=list(metrics), var_name="metric")
    g = sns.catplot(data=long, x="metric", y="value", hue="set", dodge=True, col="panel",
                    col_wrap=min(3, long["panel"].nunique()), kind="strip", size=7,
                    height=3.2, aspect=1.3)
    for ax in g.axes.flat:
        ax.axhline(0.5, color="grey", ls="--", label="chance")
        if oracle is not None:
            ax.axhline(oracle, color="tab:green", ls=":", label="oracle accuracy")
        ax.set_ylim(0, 1.02)
        ax.tick_params(axis="x", labelrotation=20)
    g.axes.flat[0].legend(loc="lower left", fontsize="small")
    g.set_titles("{col_name}")
    return g.figure


def model_forest(summary: pd.DataFrame, metric: str = "balanced_accuracy",
                 oracle: float | None = None) -> plt.Figure:
    """Every model's metric with its 95 % bootstrap CI, cross-validation and independent set."""
    d = summary.copy()
    d["label"] = d["model"] + " [" + d["maps"] + "]" + np.where(
        d["protocol"] == "published", " (published protocol)", "")
    d = d.sort_values(["set", metric])
    sets = list(d["set"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 0.45 * d["label"].nunique()
                                                    + 1.5), squeeze=False, sharey=True)
    order = d[d["set"] == sets[0]].sort_values(metric)["label"].tolist()
    order += [x for x in d["label"].unique() if x not in order]
    for ax, s in zip(axes[0], sets, strict=True):
        sub = d[d["set"] == s].set_index("label").reindex(order)
        y = np.arange(len(order))
        ax.errorbar(sub[metric], y, xerr=[sub[metric] - sub[f"{metric}_low"],
                                          sub[f"{metric}_high"] - sub[metric]],
                    fmt="o", capsize=3)
        ax.axvline(0.5, color="grey", ls="--")
        if oracle is not None:
            ax.axvline(oracle, color="tab:green", ls=":", label="oracle accuracy")
            ax.legend(loc="lower right")
        ax.set_yticks(y, order)
        ax.set_xlim(0.2, 1.0)
        ax.set_title(f"{metric.replace('_', ' ')}: {s}")
    fig.tight_layout()
    return fig


def protocol_comparison(per_fold: pd.DataFrame, difference: dict,
                        metric: str = "accuracy") -> plt.Figure:
    """Per-fold metric under each selection protocol, joined by fold, and the pooled
    difference with its paired bootstrap CI."""
    d = per_fold[per_fold["set"] == "cv"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), gridspec_kw={"width_ratios": [2, 1]})
    for _, g in d.groupby("fold"):
        g = g.set_index("protocol").reindex(["inner", "published"])
        axes[0].plot([0, 1], g[metric], "o-", color="tab:gray", alpha=0.7)
    axes[0].set_xticks([0, 1], ["epoch chosen on\ntraining subjects", "epoch chosen on\nthe test fold"])
    axes[0].set_ylabel(f"{metric} (each line one fold)")
    axes[0].set_xlim(-0.4, 1.4)
    err = [[difference["difference"] - difference["ci_low"]],
           [difference["ci_high"] - difference["difference"]]]
    axes[1].errorbar([0], [difference["difference"]], yerr=err, fmt="o", capsize=6,
                     color="tab:red")
    axes[1].axhline(0, color="grey", ls="--")
    axes[1].set_xticks([0], ["published - inner"])
    axes[1].set_ylabel(f"{metric} inflation (95 % CI)")
    fig.tight_layout()
    return fig


# --- chapter tables and figures ------------------------------------------------------------

#: a pooled summary on the page: sensitivity, specificity and each row's test are in the
#: exported CSV and named in the caption; the page keeps what a reader compares
SHOWN_METRICS = ("accuracy", "balanced_accuracy", "auc")


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The pooled summary as chapters show it (through `tables.table`): model, maps, set,
    subjects, the three metrics with their intervals and `p_chance`, by set then AUC."""
    cols = ["model", "maps", "set", "n",
            *(f"{m}{s}" for m in SHOWN_METRICS for s in ("", "_low", "_high")), "p_chance"]
    return (summary[[c for c in cols if c in summary.columns]]
            .sort_values(["set", "auc"], ascending=[True, False]).reset_index(drop=True))


def ci_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every model on both sets, one row each: the model as `model [maps]` (with the
    protocol when not ours), the set, subjects and the three metrics with intervals."""
    from .stats import label

    cols = ["label", "set", "n",
            *(f"{m}{s}" for m in SHOWN_METRICS for s in ("", "_low", "_high"))]
    return (summary.assign(label=label(summary))[cols]
            .sort_values(["set", "label"]).reset_index(drop=True)
            .rename(columns={"label": "model"}))


def fold_models_and_vote(predictions: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """On the independent site: each model's fold models alone (mean, min, max) beside the
    majority vote the summary reports."""
    from .stats import label, per_fold_metrics

    folds = per_fold_metrics(predictions[predictions.set == "independent"])
    if folds.empty:
        return folds
    single = (folds.assign(label=label(folds)).groupby("label")[["accuracy", "auc"]]
              .agg(["mean", "min", "max"]))
    vote = summary[summary.set == "independent"].assign(label=label)
    single[("vote", "accuracy")] = vote.set_index("label")["accuracy"]
    return single


#: a fold's row on the page: which fit, on which subjects, and the metrics compared
FOLD_COLUMNS = ["model", "maps", "repeat", "fold", "set", "n", *SHOWN_METRICS]


def fold_table(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Metrics per fold as chapters show them (through `tables.table`)."""
    return per_fold[[c for c in FOLD_COLUMNS if c in per_fold.columns]].reset_index(drop=True)


def slice_grid(images: np.ndarray, n_per_axis: int) -> plt.Figure:
    """A backbone's input pictures (RGB, 0-255, before its own scaling), one row per axis."""
    fig, axes = plt.subplots(3, n_per_axis, figsize=(2.2 * n_per_axis, 6.6))
    for ax, img in zip(axes.flat, images, strict=True):
        ax.imshow(np.clip(img / 255.0, 0, 1))
        ax.axis("off")
    return fig


def localisation_heatmaps(loc: pd.DataFrame,
                          columns=("auc", "top1pct_inside", "planted_in_top5_regions")
                          ) -> plt.Figure | None:
    """Family x method heatmaps of the localisation scores; nothing without scores."""
    if loc.empty:
        return None
    fig, axes = plt.subplots(1, len(columns),
                             figsize=(17, 0.6 * loc["family"].nunique() + 2.5))
    for ax, col in zip(axes, columns, strict=True):
        sns.heatmap(loc.pivot(index="family", columns="method", values=col), annot=True,
                    fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax)
        ax.set_title(col)
    fig.tight_layout()
    return fig


def randomisation_curves(rand: pd.DataFrame, family: str) -> plt.Figure:
    """Rank correlation with the trained model's maps as layers are randomised."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.lineplot(data=rand, x="layers_randomised", y="rank_correlation", hue="method",
                 marker="o", ax=ax)
    ax.axhline(0, color="grey", ls="--")
    ax.set_title(f"Cascading randomisation, {family}")
    return fig


def subjects_maps(volumes: list[dict[str, np.ndarray]], grid_mm: float,
                  titles: list[str]) -> list[plt.Figure]:
    """`subject_maps` for several subjects, one figure each."""
    return [subject_maps(v, grid_mm, t) for v, t in zip(volumes, titles, strict=True)]


def show_cnn_results(res: dict, oracle: float | None, name: str) -> None:
    """What a CNN family chapter shows, in order: learning curves and each fit's kept
    epoch, metrics per fold against chance and the oracle, metrics pooled over folds with
    95 % intervals. `res` is `Study.cnn_chapter`'s result; the tables are labelled
    `tbl-{name}-fits`, `tbl-{name}-folds` and `tbl-{name}-summary` for the chapter's prose."""
    from IPython.display import Markdown, display

    from .tables import table

    display(Markdown("### Learning curves"))
    learning_curves(res["histories"])
    plt.show()
    display(table(res["fits"], "Each fit: the epoch kept (lowest validation loss on "
                  "training subjects), epochs run, training seconds and samples per second.",
                  f"tbl-{name}-fits", digits=1))
    display(Markdown("### Per fold, against chance and the oracle"))
    display(table(fold_table(res["per_fold"]), "Accuracy, balanced accuracy and AUC of each "
                  "fold's model on its held-out subjects (`cv`) and on the independent site.",
                  f"tbl-{name}-folds"))
    fold_metrics(res["per_fold"], oracle)
    plt.show()
    display(Markdown("### Pooled over folds, with 95 % confidence intervals"))
    display(table(summary_table(res["summary"]), "Metrics pooled over folds with 95 % "
                  "intervals: corrected repeated-CV t-test on the fold scores (`cv`, with "
                  "`p chance` for balanced accuracy above 0.5), subject bootstrap on the "
                  "independent site.", f"tbl-{name}-summary"))
    if oracle is not None:
        display(Markdown(f"Oracle accuracy on this cohort: **{oracle:.3f}**."))
