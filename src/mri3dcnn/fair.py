"""A fair chance for 3D CNNs: the faithful families, modern nets and recipes, pretraining
and the linear baselines on the same folds, and what the comparison concludes.

Nothing here trains a model another chapter already stored: the faithful families are
the CNN chapters' records (one result chapter), the linear SVM and the Decoder chapter 2's.
The comparison separates three levers, each as a paired difference on the same subjects:
*recipe* (an original family trained the modern way minus the same family as published),
*architecture* (a modern net minus that original family, both trained the modern way) and
*pretraining* (a pretrained modern net minus the same net from scratch).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .results import Record, predictions_of
from .stats import paired_difference, summarise

#: the linear models of chapter 2 the CNNs are held against (grey-matter voxels)
LINEAR_FAMILIES = ("svm_linear", "nilearn_decoder")
#: how close the best modern CNN must come to the best linear model, in accuracy
WITHIN = 0.03
#: the columns of the paired comparisons table
PAIRED_COLUMNS = ["comparison", "lever", "a", "b", "difference", "ci_low", "ci_high",
                  "p_value", "n", "test"]


@dataclass(frozen=True)
class Groups:
    """The records of each side, by display name (`Record.name`)."""

    linear: dict[str, list[Record]]
    faithful: dict[str, list[Record]]
    modern: dict[str, list[Record]]

    def all(self) -> list[Record]:
        return [r for side in (self.linear, self.faithful, self.modern)
                for recs in side.values() for r in recs]


def _best(summary: pd.DataFrame, names) -> str | None:
    """The name with the highest cross-validated accuracy among `names` (AUC breaks ties)."""
    cv = summary[(summary.set == "cv") & summary.model.isin(list(names))]
    if cv.empty:
        return None
    return cv.sort_values(["accuracy", "auc"], ascending=False).iloc[0]["model"]


def paired_comparisons(groups: Groups, summary: pd.DataFrame,
                       levers: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Accuracy differences on the same subjects and folds, by the test `stats` uses for
    cross-validation (the corrected repeated-CV t-test).

    The best modern CNN against the best linear model and the best faithful family, then
    each lever `(lever, a, b)`: `a` minus `b`.
    """
    preds = {name: predictions_of(recs) for side in (groups.linear, groups.faithful,
                                                     groups.modern)
             for name, recs in side.items()}
    best_modern = _best(summary, groups.modern)
    pairs = [("best modern CNN vs best linear", "verdict", best_modern,
              _best(summary, groups.linear)),
             ("best modern CNN vs best faithful CNN", "verdict", best_modern,
              _best(summary, groups.faithful))]
    pairs += [(f"{lever}: {a} vs {b}", lever, a, b) for lever, a, b in levers]
    rows = [{"comparison": c, "lever": lever, "a": a, "b": b,
             **paired_difference(preds[a], preds[b], "accuracy")}
            for c, lever, a, b in pairs if a in preds and b in preds]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def verdict(summary: pd.DataFrame, paired: pd.DataFrame, groups: Groups) -> str:
    """The chapter's conclusion, computed: is the best CNN trained the modern way within
    `WITHIN` of the best linear model's cross-validated accuracy or ahead, and what each
    lever moved."""
    cv = summary[summary.set == "cv"].set_index("model")
    best_cnn, best_lin = _best(summary, groups.modern), _best(summary, groups.linear)
    if best_cnn is None or best_lin is None:
        return ("No CNN trained the modern way or no linear model is stored on these "
                "folds, so the comparison cannot be made.")
    a, b = cv.loc[best_cnn, "accuracy"], cv.loc[best_lin, "accuracy"]
    gap = a - b
    lead = f"The best 3D CNN trained the modern way, **{best_cnn}** ({a:.3f}), is"
    if gap >= 0:
        head = (f"{lead} **ahead** of the best linear model, {best_lin} ({b:.3f}), by "
                f"{100 * gap:.1f} points of cross-validated accuracy.")
    elif gap >= -WITHIN:
        head = (f"{lead} **within {100 * WITHIN:.0f} points** of the best linear model, "
                f"{best_lin} ({b:.3f}): {100 * -gap:.1f} points behind.")
    else:
        head = (f"{lead} **not within {100 * WITHIN:.0f} points** of the best linear model, "
                f"{best_lin} ({b:.3f}): it is {100 * -gap:.1f} points behind.")
    lines = [head]
    for row in paired[paired.lever != "verdict"].itertuples():
        lines.append(f"{row.lever.capitalize()} moved accuracy by {100 * row.difference:+.1f} "
                     f"points ({row.a} minus {row.b}; 95 % CI {100 * row.ci_low:+.1f} to "
                     f"{100 * row.ci_high:+.1f}, p = {row.p_value:.3f}, {row.test}).")
    missing = sorted({"recipe", "architecture", "pretraining"} - set(paired.lever))
    if missing:
        lines.append(f"Not measured on this profile: {', '.join(missing)} (no model trained "
                     "for it; the `full` profile runs every lever).")
    return " ".join(lines)


def summarise_groups(groups: Groups) -> pd.DataFrame:
    """Pooled metrics with bootstrap CIs of every model in the comparison."""
    return summarise(predictions_of(groups.all()))


def cost_table(groups: Groups) -> pd.DataFrame:
    """Per CNN: parameters, training seconds per fold (pretraining and every ensemble
    member included), training samples per second and epochs run."""
    rows = []
    for side, recs_by_name in (("faithful", groups.faithful), ("modern", groups.modern)):
        for name, recs in recs_by_name.items():
            t = [r.info["timings"] for r in recs]
            rows.append({"model": name, "side": side, "parameters": recs[0].info["n_params"],
                         "members": len(recs[0].info.get("members", [None])),
                         "train s per fold": sum(x["fit_s"] + x.get("pretrain_s", 0.0)
                                                 for x in t) / len(t),
                         "samples/s": sum(x["samples_per_s"] for x in t) / len(t),
                         "epochs run": sum(r.info["epochs_run"] for r in recs) / len(recs)})
    return pd.DataFrame(rows).round(1)


def histories(groups: Groups) -> pd.DataFrame:
    """Training and validation loss of the modern fits, one line per fold and member."""
    frames = []
    for name, recs in groups.modern.items():
        for r in recs:
            h = r.history
            member = h["member"].astype(str) if "member" in h else "0"
            frames.append(h.assign(model=name, maps=r.maps_label, repeat=r.key["repeat"],
                                   fold=str(r.key["fold"]) + "." + member))
    return pd.concat(frames, ignore_index=True)
