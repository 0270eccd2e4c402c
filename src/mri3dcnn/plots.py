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
        d["protocol"] == "inner", "", " (" + d["protocol"] + " protocol)")
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


def protocol_comparison(curves: pd.DataFrame, by_fold: pd.DataFrame,
                        comparison: pd.DataFrame, metric: str = "accuracy") -> plt.Figure:
    """Top, one panel per fold: each repeat's traced run, its held-out `metric` after every
    epoch, with the epoch chosen on the inner validation loss (ring) and the one the
    test fold would choose (star) marked on the same curve (a star in a ring: the same
    epoch). Bottom: the three differences
    of `stats.selection_inflation`, each (repeat, fold) a grey dot, the mean with its
    interval in red."""
    from .stats import SELECTION_COMPARISONS

    folds = sorted(by_fold["fold"].unique())
    repeats = sorted(by_fold["repeat"].unique())
    colours = dict(zip(repeats, sns.color_palette("Greys_d" if len(repeats) > 1 else ["0.4"],
                                                  len(repeats)), strict=True))
    fig = plt.figure(figsize=(max(8.0, 2.4 * len(folds)), 6.5), layout="constrained")
    upper, lower = fig.subfigures(2, 1, height_ratios=[1.3, 1])
    top = np.atleast_1d(upper.subplots(1, len(folds), sharey=True))
    for ax, f in zip(top, folds, strict=True):
        for r in repeats:
            c = curves[(curves["repeat"] == r) & (curves["fold"] == f)].sort_values("epoch")
            row = by_fold[(by_fold["repeat"] == r) & (by_fold["fold"] == f)].iloc[0]
            ax.plot(c["epoch"], c[metric], "-", color=colours[r], lw=1, alpha=0.8,
                    label=f"held-out {metric}" if r == repeats[0] else None)
            ax.plot(row["epoch_val"], row["val_chosen"], "o", color="tab:blue", ms=12,
                    mfc="none", mew=2,
                    label="epoch of lowest validation loss" if r == repeats[0] else None)
            ax.plot(row["epoch_test"], row["test_chosen"], "*", color="tab:red", ms=10,
                    label="epoch best on the test fold" if r == repeats[0] else None)
        ax.set_title(f"fold {f}" + (f" ({len(repeats)} repeats)" if len(repeats) > 1 else ""))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    top[0].set_ylabel(f"held-out {metric}")
    upper.legend(*top[0].get_legend_handles_labels(), loc="outside lower center", ncols=3,
                 fontsize="small")
    ax = lower.subplots()
    y = np.arange(len(comparison))[::-1]
    cols = {name: (a, b) for name, a, b in SELECTION_COMPARISONS}
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(by_fold))
    for yi, (_, row) in zip(y, comparison.iterrows(), strict=True):
        a, b = cols[row["comparison"]]
        ax.plot(by_fold[a] - by_fold[b], yi + jitter, "o", color="0.6", ms=4, alpha=0.7)
        ax.errorbar([row["difference"]], [yi],
                    xerr=[[row["difference"] - row["ci_low"]],
                          [row["ci_high"] - row["difference"]]],
                    fmt="D", color="tab:red", capsize=5, ms=7)
    ax.axvline(0, color="grey", ls="--")
    ax.set_yticks(y, comparison["comparison"])
    ax.set_xlabel(f"{metric} difference (each grey dot one repeat and fold; 95 % CI)")
    return fig


# --- chapter tables and figures ------------------------------------------------------------

#: a pooled summary on the page: sensitivity, specificity and each row's test are in the
#: exported CSV and named in the caption; the page keeps what a reader compares
SHOWN_METRICS = ("accuracy", "balanced_accuracy", "auc")


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The pooled summary as chapters show it (through `tables.table`): model, maps, set,
    subjects, the three metrics with their intervals and `p_chance`; where a model's whole
    pipeline was tested against permuted labels, `p_permutation` in the place of balanced
    accuracy (so that the table fits the page); by set then AUC."""
    metrics = SHOWN_METRICS
    permuted = "p_permutation" in summary.columns and summary["p_permutation"].notna().any()
    if permuted:  # room for the permutation p on the page: balanced accuracy stays in
        metrics = tuple(m for m in SHOWN_METRICS if m != "balanced_accuracy")  # the CSV
    cols = ["model", "maps", "set", "n",
            *(f"{m}{s}" for m in metrics for s in ("", "_low", "_high")), "p_chance"]
    if permuted:
        cols.append("p_permutation")
    return (summary[[c for c in cols if c in summary.columns]]
            .sort_values(["set", "auc"], ascending=[True, False]).reset_index(drop=True))


def permutation_nulls(tests: pd.DataFrame) -> plt.Figure:
    """Each model's permuted-label scores (the null distribution of its whole pipeline)
    with its observed score and p-value: `Study.permutation_tests`."""
    n = max(len(tests), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                             sharex=True)
    for ax, row in zip(axes.flat, tests.itertuples(), strict=False):
        ax.hist(row.null, bins=15, color="grey", alpha=0.7)
        ax.axvline(row.score, color="crimson", lw=2)
        ax.axvline(0.5, color="black", ls="--", lw=1)
        ax.set_title(f"{row.model} [{row.maps}]\np = {row.p_value:.3f}", fontsize=9)
        ax.tick_params(labelbottom=True)
    for ax in axes.flat[len(tests):]:
        ax.set_visible(False)
    fig.supxlabel("mean balanced accuracy over the CV folds")
    fig.tight_layout()
    return fig


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


# --- the simulation appendix -----------------------------------------------------------------

def sweep_accuracy(table: pd.DataFrame, set_name: str = "cv") -> plt.Figure:
    """Accuracy against cohort size, one panel per effect scale: one line per model with
    its 95 % interval (the table's own, from the test its `test` column names), the
    cell's oracle (dotted), the Bayes ceiling (dashed) and chance (grey)."""
    models = table[(table.kind != "reference") & (table.set == set_name)]
    refs = table[table.kind == "reference"]
    scales = sorted(table["scale"].unique())
    sizes = sorted(table["n_subjects"].unique())
    fig, axes = plt.subplots(1, len(scales), figsize=(3.6 * len(scales) + 1.5, 3.6),
                             sharey=True, squeeze=False)
    names = sorted(models["model"].unique())
    colours = dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))
    # models side by side at each size (a log axis: a factor, not a shift)
    dodge = {m: 1.04 ** (i - (len(names) - 1) / 2) for i, m in enumerate(names)}
    for ax, scale in zip(axes[0], scales, strict=True):
        for name, g in models[models.scale == scale].groupby("model"):
            g = g.sort_values("n_subjects")
            ax.errorbar(g["n_subjects"] * dodge[name], g["accuracy"],
                        yerr=[g["accuracy"] - g["accuracy_low"],
                              g["accuracy_high"] - g["accuracy"]],
                        fmt="o-", capsize=3, color=colours[name], label=name)
        for name, style, colour in (("oracle", ":", "tab:purple"),
                                    ("bayes_ceiling", "--", "black")):
            r = refs[(refs.scale == scale) & (refs.model == name)
                     & refs.set.isin([set_name, "population"])].sort_values("n_subjects")
            ax.plot(r["n_subjects"], r["accuracy"], style, color=colour, marker=".",
                    label="oracle" if name == "oracle" else "Bayes ceiling")
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("cohort size")
        ax.set_title(f"every d x {scale:g}")
    axes[0][0].set_ylabel(f"accuracy ({set_name})")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center right", fontsize="small")
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / (3.6 * len(scales) + 1.5), 1))
    return fig


def sweep_table(table: pd.DataFrame, set_name: str = "cv") -> pd.DataFrame:
    """One row per cell, one column per model: `accuracy [low, high]` on `set_name`, the
    oracle and the Bayes ceiling as plain numbers."""
    t = table[table.set.isin([set_name, "population"])]
    text = [f"{r.accuracy:.3f}" if r.kind == "reference" or not np.isfinite(r.accuracy_low)
            else f"{r.accuracy:.3f} [{r.accuracy_low:.3f}, {r.accuracy_high:.3f}]"
            for r in t.itertuples()]
    wide = (t.assign(text=text)
            .pivot(index=["scale", "n_subjects"], columns="model", values="text")
            .fillna("—"))
    refs = [m for m in ("oracle", "bayes_ceiling") if m in wide.columns]
    wide = wide[[c for c in wide.columns if c not in refs] + refs]
    wide.columns.name = None
    return wide.rename_axis(["d x", "n"])
